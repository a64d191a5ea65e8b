"""Reproduce the AdUE paper's Table 1 (misclassification detection, ROC-AUC x100) with uehead.

    python benchmarks/reproduce_paper.py --datasets ../shared/datasets [--names sst2,cola,sst5,newsgroups20,toxigen]
        [--model minilm|PATH] [--seeds 0 1 2] [--max-train N|name=N,...] [--max-length L|name=L,...]
        [--epochs E] [--device auto|cpu|cuda] [--work runs/paper] [--out benchmarks/results/paper_minilm]
        [--keep-models] [--aggregate-only]

One ``uehead.training.train(..., ablations=True)`` run per dataset x seed (seed-major order, so a
first full table exists after one seed) into ``WORK/<dataset>/seed<k>/``. Every run is cached: a
folder holding a complete ``training.json`` + ``scores/test.npz`` is skipped, anything else is
redone (each run trains into ``WORK/<dataset>/.seed<k>.tmp`` and is renamed into place at the
end, so an interrupted run never looks complete). Cached runs must have been trained with the
same model / caps / seed, else the script stops and says so. Without ``--keep-models`` the
merged model folder of each run is deleted once its scores are written (scores, heads, baseline
statistics and ``training.json`` are kept).

The tables are computed here, from the per-run test scores (``scores/test.npz``, every score
higher = more uncertain), with :mod:`uehead.evaluation.metrics`: per dataset and method ROC-AUC, PRR and
AURC (x100, mean +- sample std over seeds), ECE / Brier for the probability scores, task
accuracy. ``OUT.json`` holds everything (caps, versions, per-run metrics and timings);
``OUT.md`` has the paper's Table 1 layout, the caps used, and the paper's RoBERTa reference rows.
``--aggregate-only`` rebuilds both from existing run folders (e.g. trained on another machine)
without training; it needs neither torch nor the datasets. The helpers live in ``benchmarks/paper/``
(settings, option parsing, runs, aggregation, Markdown).

The full reproduction (5 datasets x 3 seeds, all training rows; meant for a GPU)::

    HF_HUB_OFFLINE=1 python benchmarks/reproduce_paper.py --datasets ../shared/datasets --device cuda

On a small CPU machine cap the LoRA training rows (and record it): ``--max-train 2000``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper.aggregate import aggregate, collect, find_seeds, unique  # noqa: E402
from paper.args import max_train_cap, per_dataset, positive_int, slug  # noqa: E402
from paper.config import (DATASETS, DEFAULT_NAMES, DEFAULT_SEEDS, FALLBACK_MAX_LENGTH,  # noqa: E402
                          PAPER_ROBERTA, SETTINGS_JSON, ReproError)
from paper.markdown import render_markdown  # noqa: E402
from paper.runs import is_complete, train_all  # noqa: E402, F401  (is_complete: part of the script's API)

from uehead import __version__  # noqa: E402
from uehead.evaluation import metrics as M  # noqa: E402
from uehead.jsonio import to_jsonable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=Path, help="folder holding <name>/{train,valid,test}.jsonl.gz + labels.json "
                   "(e.g. ../shared/datasets); not needed with --aggregate-only")
    p.add_argument("--names", default=",".join(DEFAULT_NAMES), help="comma-separated dataset folder names")
    p.add_argument("--model", default="minilm", help="minilm | smollm2 | path to a local Hugging Face model folder")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="training seeds (default 0 1 2; with --aggregate-only: every seed folder found)")
    p.add_argument("--max-train", default=None,
                   help="cap on LoRA training rows: N | all | name=N,... (default: all rows)")
    p.add_argument("--max-length", default=None, help="token truncation: L | name=L,... (default: "
                   + ", ".join(f"{n} {d[1]}" for n, d in DATASETS.items()) + f", others {FALLBACK_MAX_LENGTH})")
    p.add_argument("--epochs", type=int, default=3, help="LoRA fine-tuning epochs (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="LoRA training batch size (default 64, the paper's)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "paper", help="run folders (default runs/paper)")
    p.add_argument("--out", type=Path, default=None,
                   help="output stem: writes OUT.json and OUT.md (default benchmarks/results/paper_<model>)")
    p.add_argument("--keep-models", action="store_true", help="keep each run's merged model folder (large)")
    p.add_argument("--aggregate-only", action="store_true", help="only rebuild the tables from existing runs")
    p.add_argument("--protocol", default="uehead", choices=("uehead", "authors"),
                   help="how the heads are trained (train()'s protocol; default uehead)")
    p.add_argument("--lora-from", type=Path, default=None,
                   help="reuse the merged models of another --work folder's runs (trained with --keep-models): "
                        "fit only the heads on them (finetune none), so two protocols share one LoRA run "
                        "(default: LoRA fine-tune here)")
    p.add_argument("--warmup-ratio", type=float, default=None,
                   help="LoRA warm-up share of the steps (default: the protocol's: uehead 0.1, authors 5/30)")
    p.add_argument("--train-progress", action="store_true", help="also show train()'s own progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    args.command = " ".join(["python", "benchmarks/reproduce_paper.py"] + list(sys.argv[1:] if argv is None else argv))
    args.names = list(dict.fromkeys(n.strip() for n in args.names.split(",") if n.strip()))
    if not args.names:
        p.error("--names: give at least one dataset name")
    if args.epochs < 1 or args.batch_size < 1:
        p.error("--epochs and --batch-size must be >= 1")
    if not args.aggregate_only and args.datasets is None:
        p.error("--datasets DIR is required (the folder of the five datasets, e.g. ../shared/datasets); "
                "or pass --aggregate-only to rebuild the tables from existing runs")
    if args.seeds is not None:
        args.seeds = list(dict.fromkeys(args.seeds))
    elif not args.aggregate_only:
        args.seeds = list(DEFAULT_SEEDS)
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / f"paper_{slug(args.model)}"
    if args.out.suffix in (".json", ".md"):
        args.out = args.out.with_suffix("")
    try:
        args.max_train = per_dataset(args.max_train, args.names, lambda n: None, max_train_cap, "--max-train")
        args.max_length = per_dataset(args.max_length, args.names,
                                      lambda n: DATASETS.get(n, (n, FALLBACK_MAX_LENGTH))[1],
                                      positive_int, "--max-length")
    except ReproError as exc:
        p.error(str(exc))
    return args


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_report(args, failures=()) -> dict:
    """The JSON document of every complete run in WORK (its Markdown under ``"markdown"``)."""
    seeds = args.seeds if args.seeds is not None else find_seeds(args.work, args.names)
    runs, missing = collect(args.work, args.names, seeds)
    if not runs:
        raise ReproError(f"--work {args.work}: no complete runs for {', '.join(args.names)} "
                         f"(seeds {seeds or 'none found'}); train first (drop --aggregate-only) or point --work "
                         "at the folder holding <dataset>/seed<k>/")
    agg = aggregate(runs)
    settings_path = args.work / SETTINGS_JSON
    requested = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else None
    first = next(iter(runs.values()))[0]
    versions = {"uehead": __version__, "python": platform.python_version(), "numpy": np.__version__}
    versions.update({k: v for k, v in (first.get("versions") or {}).items() if k != "python"})
    result = {
        "title": "AdUE paper Table 1 (misclassification detection) reproduced with uehead",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": (requested or {}).get("command"),
        "aggregated_by": args.command,
        "settings": {"model": unique([a["model"] for a in agg.values()]), "seeds": seeds,
                     "datasets": {n: a["caps"] for n, a in agg.items()},
                     "device": unique([a["device"] for a in agg.values()]),
                     "work": str(args.work), "requested": requested},
        "versions": versions,
        "metric_notes": {"scale": "tables are x100; JSON values are raw (0-1)",
                         "std": "sample std over seeds (ddof=1)", "directions": M.DIRECTIONS,
                         "scores": "higher = more uncertain"},
        "missing_runs": missing, "failed_runs": list(failures),
        "paper_reference_roberta_roc_auc_x100": PAPER_ROBERTA,
        "datasets": {n: {**a, "runs": runs[n]} for n, a in agg.items()},
    }
    result["markdown"] = render_markdown(result, agg)
    return result


def main(argv=None, train_fn=None) -> int:
    args = parse_args(argv)
    try:
        failures = [] if args.aggregate_only else train_all(args, train_fn)
        result = build_report(args, failures)
    except ReproError as exc:
        print(f"reproduce_paper: error: {exc}", file=sys.stderr)
        return 2
    md = result.pop("markdown")
    json_path, md_path = (args.out.parent / f"{args.out.name}{ext}" for ext in (".json", ".md"))
    _atomic_write(json_path, json.dumps(to_jsonable(result), indent=2, allow_nan=False) + "\n")
    _atomic_write(md_path, md)
    print(f"reproduce_paper: wrote {json_path} and {md_path}"
          + (f"; {len(result['missing_runs'])} runs missing" if result["missing_runs"] else ""), file=sys.stderr)
    if failures:
        print("reproduce_paper: failed runs (see WORK/reproduce.log):\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
