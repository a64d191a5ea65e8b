"""Settings of the paper reproduction: datasets, methods, the paper's reference rows, file names."""
from __future__ import annotations

#: dataset folder name -> (column title in the paper's Table 1, default max_length in tokens).
#: Lengths measured with the MiniLM tokenizer on the valid splits: SST-2/CoLA/SST-5/ToxiGen never
#: exceed 64 tokens (max 62); 20 Newsgroups has a median of ~350, so 256 truncates (recorded).
DATASETS = {"cola": ("CoLA", 64), "newsgroups20": ("20NG", 256), "sst2": ("SST-2", 64),
            "sst5": ("SST-5", 64), "toxigen": ("ToxiGen", 64), "rotten_tomatoes": ("RT", 64)}
DEFAULT_NAMES = ("sst2", "cola", "sst5", "newsgroups20", "toxigen")
DEFAULT_SEEDS = (0, 1, 2)
FALLBACK_MAX_LENGTH = 128
MAIN_METHODS = (("sr", "SR"), ("entropy", "Entropy"), ("md", "MD"), ("md_l2", "MD L2"), ("rmd", "RMD"),
                ("rmd_l2", "RMD L2"), ("rde", "RDE"), ("rde_l2", "RDE L2"), ("adue", "AdUE"), ("alien", "ALIEN"))
#: The paper's Table 2 ablations, with the full AdUE as the reference row of the block.
ABLATION_METHODS = (("adue", "AdUE (full loss, classifier init)"), ("adue_bce", "Loss: BCE"),
                    ("adue_bce_l2sp", "Loss: BCE+L2SP"), ("adue_bce_reg", "Loss: BCE+reg"),
                    ("adue_rand_cls", "Full loss + rand cls"), ("adue_rand_linear", "Full loss + random linear"))
#: AdUE paper (arXiv:2505.15443) Table 1, RoBERTa-base, ROC-AUC x100, mean and std of 5 runs
#: (as quoted in the design's METHOD.md). Reference only; never mixed with measured numbers.
PAPER_ROBERTA = {
    "sr": {"cola": (75.1, 2.5), "newsgroups20": (84.8, 0.2), "sst2": (80.8, 2.0), "sst5": (60.9, 1.8),
           "toxigen": (74.3, 0.6)},
    "adue": {"cola": (75.4, 3.0), "newsgroups20": (86.0, 0.3), "sst2": (80.8, 2.0), "sst5": (62.1, 1.5),
             "toxigen": (74.6, 1.0)},
    "rmd": {"cola": (73.7, 0.6), "newsgroups20": (79.5, 0.4), "sst2": (82.8, 2.2), "sst5": (55.6, 1.9),
            "toxigen": (65.1, 9.2)},
}
#: Files this script writes besides the checkpoint train() writes (its layout is uehead.checkpoint's):
RUN_META = "reproduce_run.json"   # in each run folder, beside training.json: wall time, host
SETTINGS_JSON = "reproduce_settings.json"  # WORK/: what the last training invocation asked for
#: training.json settings a cached run must share with the request to be reused.
CHECKED = ("model", "max_train", "max_length", "epochs", "seed")


class ReproError(RuntimeError):
    """A bad input or an inconsistent work folder; the message names it and the fix."""

