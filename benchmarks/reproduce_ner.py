"""Token-level uncertainty on NER (CoNLL-2003, WNUT-17): task F1 and how well each score flags errors.

    python benchmarks/reproduce_ner.py --datasets ../shared/datasets [--names conll2003,wnut17]
        [--model minilm|PATH] [--seeds 0 1 2] [--max-train N|all] [--epochs E] [--batch-size B]
        [--max-length L] [--threads T] [--device auto|cpu|cuda] [--work runs/ner]
        [--out benchmarks/results/ner_minilm] [--keep-models] [--aggregate-only]

One ``uehead.training.train(..., task="token-classification")`` run per dataset x seed (seed-major
order, so a first full table exists after one seed) into ``WORK/<dataset>/seed<k>/``, each trained
into a hidden temporary folder and renamed into place when complete: an interrupted run is redone,
a complete one is skipped (resumable). Cached runs must match the asked settings.

Metrics come from each run's ``scores/test.npz`` (one row per test word, sentence after sentence,
every score higher = more uncertain) and the test split's gold tags, through
:func:`uehead.evaluation.token_metrics.token_metrics`: entity F1 (seqeval), word-level ROC-AUC /
PRR over all words and over words inside a gold or predicted entity, sentence-level ROC-AUC with
max aggregation. ``OUT.json`` holds the settings, versions, per-run metrics and timings, and mean
+- std over seeds; ``OUT.md`` the tables. ``--aggregate-only`` rebuilds both from existing runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sr", "entropy", "md", "rmd", "adue", "alien")
#: (view key in the metrics, metric, column title)
VIEWS = (("word", "roc_auc", "word ROC-AUC"), ("word_in_entities", "roc_auc", "word ROC-AUC (in entities)"),
         ("sentence.max", "roc_auc", "sentence ROC-AUC (max)"), ("word", "prr", "word PRR"),
         ("sentence.max", "prr", "sentence PRR (max)"))
CHECKED = ("model", "max_train", "epochs", "max_length", "batch_size", "seed", "lr")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=Path, required=True, help="folder holding conll2003/ and wnut17/")
    p.add_argument("--names", default="conll2003,wnut17")
    p.add_argument("--model", default="minilm")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-train", default="3000", help="LoRA training sentences per run: N | all (default 3000)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="LoRA learning rate (default 2e-3; the paper's "
                   "classification runs use 5e-4, too slow for a randomly initialised token classifier in a short run)")
    p.add_argument("--max-length", type=int, default=128, help="window size in tokens (default 128)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared CPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "ner")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ner_minilm")
    p.add_argument("--keep-models", action="store_true", help="keep every run's merged model (seed 0's is always kept)")
    p.add_argument("--aggregate-only", action="store_true")
    p.add_argument("--bundles", action="store_true",
                   help="also export each dataset's seed-0 checkpoint with the CLI (uehead export, verify, evaluate) "
                   "and compare the torch-free runtime with PyTorch per word on the test split")
    return p


def _settings(a) -> dict:
    return {"model": a.model, "max_train": None if a.max_train == "all" else int(a.max_train), "epochs": a.epochs,
            "max_length": a.max_length, "batch_size": a.batch_size, "lr": a.lr}


def _complete(folder: Path) -> bool:
    from uehead.checkpoint import CheckpointError, read_scores, read_training

    try:
        return "f1" in read_training(folder) and bool(read_scores(folder, "test"))
    except CheckpointError:
        return False


def _train_one(a, name: str, seed: int, folder: Path) -> None:
    import torch

    from uehead.training import LoraSettings, train

    torch.set_num_threads(a.threads)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    s = _settings(a)
    t0 = time.perf_counter()
    train(a.model, str(a.datasets / name), tmp, task="token-classification", max_train=s["max_train"],
          epochs=a.epochs, max_length=a.max_length, batch_size=a.batch_size, seed=seed, device=a.device,
          progress=False, lora=LoraSettings(lr=a.lr))
    if seed != 0 and not a.keep_models:
        shutil.rmtree(tmp / "model", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    print(f"[ner] {name} seed {seed}: trained in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def _check_cached(folder: Path, expected: dict, seed: int) -> None:
    from uehead.checkpoint import read_training

    record = read_training(folder)
    record = {**record, "lr": record.get("lora", {}).get("lr")}
    want = {**expected, "seed": seed}
    diff = [f"{k}={record.get(k)!r} (asked {want[k]!r})" for k in CHECKED if record.get(k) != want[k]]
    if diff:
        raise SystemExit(f"{folder}: cached run differs: {', '.join(diff)}; use another --work or delete it")


def _run_metrics(a, name: str, folder: Path) -> dict:
    """token_metrics of one run's test scores, plus the run's record summary."""
    import numpy as np

    from uehead.checkpoint import read_scores, read_training
    from uehead.evaluation.token_metrics import token_metrics
    from uehead.token_datasets import load_token_dataset

    ds = load_token_dataset(a.datasets / name, splits=("test",))
    test = ds["test"]
    arrays = read_scores(folder, "test")
    counts = np.asarray([len(t) for t in test.tokens], np.int64)
    scores = {m: arrays[m] for m in METHODS if m in arrays}
    out = token_metrics(test.flat_tags(), arrays["predictions"], scores, counts, ds.tag_names)
    record = read_training(folder)
    out["training"] = {k: record.get(k) for k in ("seed", "f1", "accuracy", "bio_fixes", "n_words", "n_windows",
                                                  "unscored_words", "head_selection", "timings_s", "window_overlap")}
    return out


def _cell(runs: list[dict], path: str, metric: str, method: str):
    from uehead.evaluation.metrics import mean_std

    def get(r):
        node = r
        for key in path.split("."):
            node = node[key]
        return node[method][metric]

    return mean_std(get(r) for r in runs)


def aggregate(per_run: dict[str, list[dict]]) -> dict:
    from uehead.evaluation.metrics import mean_std

    out = {}
    for name, runs in per_run.items():
        out[name] = {"n_seeds": len(runs), "entity_f1": mean_std(r["entity"]["f1"] for r in runs),
                     "word_accuracy": mean_std(r["accuracy"] for r in runs),
                     "views": {f"{v}:{m}": {meth: _cell(runs, v, m, meth) for meth in METHODS}
                               for v, m, _ in VIEWS}}
    return out


def render_markdown(agg: dict, settings: dict) -> str:
    from uehead.evaluation.metrics import format_mean_std

    names = list(agg)
    lines = [f"Token-level uncertainty, MiniLM ({settings['model']}), x100, mean ± std over seeds; every score "
             "higher = more uncertain.", "",
             "| | " + " | ".join(f"{n} (n={agg[n]['n_seeds']})" for n in names) + " |",
             "|---|" + "---|" * len(names),
             "| entity F1 (seqeval) | " + " | ".join(format_mean_std(agg[n]["entity_f1"]) for n in names) + " |",
             "| word accuracy | " + " | ".join(format_mean_std(agg[n]["word_accuracy"]) for n in names) + " |", ""]
    for view, metric, title in VIEWS:
        key = f"{view}:{metric}"
        lines += [f"**{title}**", "", "| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for meth in METHODS:
            cells = []
            for n in names:
                ms = agg[n]["views"][key][meth]
                means = [agg[n]["views"][key][m].mean for m in METHODS if agg[n]["views"][key][m].count]
                best = max(means, default=None)
                text = format_mean_std(ms)
                cells.append(f"**{text}**" if ms.count and ms.mean == best else text)
            lines.append(f"| {meth} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"Budget: max_train={settings['max_train']} sentences, epochs={settings['epochs']}, batch "
                 f"{settings['batch_size']}, LoRA lr {settings['lr']:g}, windows of {settings['max_length']} tokens, "
                 "LoRA r=8 on q/k/v + the "
                 "token classifier, heads on the full validation split (word errors), test split for every number.")
    return "\n".join(lines) + "\n"


def bundle_markdown(bundles: dict) -> str:
    """The seed-0 bundles: the CLI path, the runtime against PyTorch per word, the head's overhead."""
    lines = ["", "**Seed-0 bundles** (`uehead export` -> `uehead verify` -> `uehead evaluate`, torch-free "
             "runtime):", "",
             "| dataset | test words compared | max abs diff vs PyTorch (probs / scores) | entity F1 runtime = "
             "checkpoint | head graph + kernels per batch of 32 | share of the rest |", "|---|---|---|---|---|---|"]
    for name, b in bundles.items():
        cmp = b["runtime_vs_pytorch"]
        diff = max(cmp["max_abs_diff"].values()) if cmp["max_abs_diff"] else float("nan")
        ev, ho = b["evaluate"], b["head_overhead"]
        lines.append(f"| {name} | {cmp['words']} | {diff:.1e} | {ev['entity_f1'] == ev['checkpoint_entity_f1']} "
                     f"({100 * ev['entity_f1']:.1f}) | {ho['head_plus_kernels_ms_per_batch']:.2f} ms | "
                     f"{ho['overhead_pct_of_rest']:.2f} % |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    from uehead import __version__
    from uehead.jsonio import to_jsonable, write_json_atomic

    names = [n for n in a.names.split(",") if n]
    settings = _settings(a)
    per_run: dict[str, list[dict]] = {n: [] for n in names}
    for seed in a.seeds:
        for name in names:
            folder = a.work / name / f"seed{seed}"
            if _complete(folder):
                _check_cached(folder, settings, seed)
            elif a.aggregate_only:
                continue
            else:
                _train_one(a, name, seed, folder)
            per_run[name].append(_run_metrics(a, name, folder))
            agg = aggregate({n: r for n, r in per_run.items() if r})
            doc = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "uehead": __version__,
                   "python": platform.python_version(), "settings": settings, "threads": a.threads,
                   "seeds": a.seeds, "aggregate": agg, "runs": per_run}
            write_json_atomic(a.out.with_suffix(".json"), to_jsonable(doc))
            a.out.with_suffix(".md").write_text(render_markdown(agg, settings), encoding="utf-8")
    if a.bundles:
        doc["bundles"] = {n: _bundle_check(a, n) for n in names if _complete(a.work / n / "seed0")}
        write_json_atomic(a.out.with_suffix(".json"), to_jsonable(doc))
        a.out.with_suffix(".md").write_text(render_markdown(agg, settings) + bundle_markdown(doc["bundles"]),
                                            encoding="utf-8")
    print(json.dumps({"wrote": [str(a.out.with_suffix(".json")), str(a.out.with_suffix(".md"))]}))
    return 0


def _cli(*args: str) -> float:
    """Run ``uehead ARGS`` in a child process (the user's path); its wall time in seconds."""
    import subprocess

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "uehead", *args], check=True, stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - t0, 1)


def _bundle_check(a, name: str) -> dict:
    """CKPT (seed 0) -> ``uehead export`` -> ``uehead verify`` -> runtime vs PyTorch per word ->
    ``uehead evaluate`` on the test split; what each step reported."""
    from uehead.export.token_validate import compare_runtime_to_pytorch_words
    from uehead.token_datasets import load_token_dataset

    ckpt, bundle = a.work / name / "seed0", a.work / name / "bundle_seed0"
    data = str(a.datasets / name)
    out = {"export_s": _cli("export", str(ckpt), str(bundle), "--data", data),
           "verify_s": _cli("verify", str(bundle))}
    test = load_token_dataset(data, splits=("test",))["test"]
    out["runtime_vs_pytorch"] = compare_runtime_to_pytorch_words(ckpt, bundle, test.tokens, raise_on_failure=False)
    evaluation = a.work / name / "evaluate_seed0.json"
    out["evaluate_s"] = _cli("evaluate", str(bundle), "--data", data, "--json", str(evaluation), "--no-plots")
    record = json.loads(evaluation.read_text())
    from uehead.checkpoint import read_training

    out["evaluate"] = {"entity_f1": record["entity"]["f1"], "word_accuracy": record["accuracy"],
                       "checkpoint_entity_f1": read_training(ckpt)["f1"]["test"]["f1"],
                       "word_roc_auc": {k: v["roc_auc"] for k, v in record["word"].items()}}
    manifest = json.loads((bundle / "manifest.json").read_text())
    out["export_validation_max_abs_diff"] = manifest["reports"]["validation"]["max_abs_diff"]
    out["head_overhead"] = head_overhead(bundle, test.tokens[:1024])
    return out


def head_overhead(bundle: Path, sentences: list[list[str]], batch_size: int = 32, repeats: int = 5) -> dict:
    """Per backbone batch of ``batch_size`` windows (one per sentence unless it is long): the whole
    word path (windows -> backbone -> gather -> head graph -> kernels) and the head graph + kernels
    alone on the same gathered features (medians over ``repeats``; threads as ``load`` sets them)."""
    import numpy as np

    from uehead import runtime
    from uehead.runtime.token_model import word_outputs

    model = runtime.load(bundle)
    head = model.manifest.head
    names = [head.task_logits_name] + [h.output_name for h in head.heads]
    windows = model.word_tokenizer.encode_words(sentences)

    def timed(fn) -> float:
        times = []
        for _ in range(repeats + 1):  # the first call warms the shapes
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times[1:]))

    def full():
        task, heads, _ = word_outputs(model, windows, batch_size, False)
        model.score_outputs(task, heads)

    _, _, z = word_outputs(model, windows, batch_size, True)

    def head_only():
        outs = model.head_session.run(names, {head.input_name: z})
        model.score_outputs(outs[0], dict(zip([h.kind for h in head.heads], outs[1:])))

    n_batches = -(-len(windows.ids) // batch_size)
    total, head_s = timed(full) / n_batches, timed(head_only) / n_batches
    return {"sentences": len(sentences), "windows": len(windows.ids), "words": int(windows.scored.sum()),
            "batch_size": batch_size, "batches": n_batches, "total_ms_per_batch": 1e3 * total,
            "head_plus_kernels_ms_per_batch": 1e3 * head_s,
            "overhead_pct_of_rest": 100.0 * head_s / max(total - head_s, 1e-12),
            "note": "head graph + kernels run once on all words of the call (blocks of BLOCK_ROWS words)"}


if __name__ == "__main__":
    raise SystemExit(main())
