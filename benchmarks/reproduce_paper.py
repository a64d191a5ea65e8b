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
without training; it needs neither torch nor the datasets.

The full reproduction (5 datasets x 3 seeds, all training rows; meant for a GPU)::

    HF_HUB_OFFLINE=1 python benchmarks/reproduce_paper.py --datasets ../shared/datasets --device cuda

On a small CPU machine cap the LoRA training rows (and record it): ``--max-train 2000``.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from uehead import __version__
from uehead.evaluation import metrics as M

ROOT = Path(__file__).resolve().parents[1]
#: dataset folder name -> (column title in the paper's Table 1, default max_length in tokens).
#: Lengths measured with the MiniLM tokenizer on the valid splits: SST-2/CoLA/SST-5/ToxiGen never
#: exceed 64 tokens (max 62); 20 Newsgroups has a median of ~350, so 256 truncates (recorded).
DATASETS = {"cola": ("CoLA", 64), "newsgroups20": ("20NG", 256), "sst2": ("SST-2", 64),
            "sst5": ("SST-5", 64), "toxigen": ("ToxiGen", 64)}
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
TRAINING_JSON, TEST_SCORES, MODEL_DIR = "training.json", Path("scores") / "test.npz", "model"
RUN_META = "reproduce_run.json"   # written by this script beside training.json: wall time, host
SETTINGS_JSON = "reproduce_settings.json"  # WORK/: what the last training invocation asked for
CHECKED = ("model", "max_train", "max_length", "epochs", "seed")
SCORE_META = ("labels", "predictions", "errors")


class ReproError(RuntimeError):
    """A bad input or an inconsistent work folder; the message names it and the fix."""


# ------------------------------------------------------------------------------- arguments
def _per_dataset(value: str | None, names, default, cast, flag: str) -> dict:
    """``"N"`` (every dataset) or ``"name=N,name=N"`` (others keep ``default(name)``)."""
    out = {n: default(n) for n in names}
    if value is None:
        return out
    value = value.strip()
    if "=" not in value:
        return {n: cast(value, flag) for n in names}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, v = part.partition("=")
        if name.strip() not in out:
            raise ReproError(f"{flag} {value!r}: {name.strip()!r} is not one of --names ({', '.join(names)})")
        out[name.strip()] = cast(v.strip(), flag)
    return out


def _positive_int(v: str, flag: str) -> int:
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise ReproError(f"{flag} {v!r}: expected a positive integer")
    return n


def _max_train(v: str, flag: str) -> int | None:
    return None if v.lower() in ("all", "none") else _positive_int(v, flag)


def parse_args(argv=None) -> argparse.Namespace:
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
    p.add_argument("--train-progress", action="store_true", help="also show train()'s own progress bars")
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
        args.out = ROOT / "benchmarks" / "results" / f"paper_{_slug(args.model)}"
    if args.out.suffix in (".json", ".md"):
        args.out = args.out.with_suffix("")
    try:
        args.max_train = _per_dataset(args.max_train, args.names, lambda n: None, _max_train, "--max-train")
        args.max_length = _per_dataset(args.max_length, args.names,
                                       lambda n: DATASETS.get(n, (n, FALLBACK_MAX_LENGTH))[1],
                                       _positive_int, "--max-length")
    except ReproError as exc:
        p.error(str(exc))
    return args


def _slug(model: str) -> str:
    name = Path(model).name if os.sep in model or Path(model).exists() else model
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def _model_arg(model: str) -> str:
    """Built-in names stay names; an existing local path is made absolute (recorded in training.json)."""
    return str(Path(model).resolve()) if Path(model).exists() else model


# ------------------------------------------------------------------------------ run folders
def run_folder(work: Path, name: str, seed: int) -> Path:
    return Path(work) / name / f"seed{seed}"


def is_complete(folder: Path) -> bool:
    """A finished run: training.json (with accuracy) and a readable scores/test.npz."""
    try:
        record = json.loads((folder / TRAINING_JSON).read_text(encoding="utf-8"))
        with np.load(folder / TEST_SCORES, allow_pickle=False) as f:
            ok = all(k in f.files for k in SCORE_META) and len(f.files) > len(SCORE_META)
        return ok and isinstance(record, dict) and "accuracy" in record
    except (OSError, ValueError, KeyError, EOFError):
        return False


def _check_settings(folder: Path, expected: dict) -> None:
    record = json.loads((folder / TRAINING_JSON).read_text(encoding="utf-8"))
    diff = [f"{k}={record.get(k)!r} (asked: {expected[k]!r})" for k in CHECKED if record.get(k) != expected[k]]
    if diff:
        raise ReproError(f"{folder}: cached run was trained with {', '.join(diff)}. Use another --work folder, "
                         "delete that run folder to retrain it, or pass the same settings "
                         "(--aggregate-only tables whatever is there).")


def _clean_temp(folder: Path) -> None:
    """Remove leftovers of an interrupted run: our .seedK.tmp and train()'s hidden partial folders."""
    for stale in folder.parent.glob(f".*{folder.name}.tmp*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def train_one(train_fn, datasets: Path, name: str, seed: int, args, folder: Path) -> dict:
    """Train one run into a temp folder and rename it into place; return the run's sidecar record."""
    _clean_temp(folder)
    tmp = folder.parent / f".{folder.name}.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_fn(_model_arg(args.model), str(datasets / name), tmp, max_train=args.max_train[name],
             epochs=args.epochs, max_length=args.max_length[name], seed=seed, device=args.device,
             batch_size=args.batch_size, ablations=True, progress=args.train_progress)
    if not is_complete(tmp):
        raise ReproError(f"{tmp}: train() returned without writing {TRAINING_JSON} and {TEST_SCORES}")
    if not args.keep_models:
        shutil.rmtree(tmp / MODEL_DIR, ignore_errors=True)
    meta = {"wall_s": round(time.perf_counter() - started, 3), "host": platform.node(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_kept": bool(args.keep_models)}
    (tmp / RUN_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return meta


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _log(work: Path, line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
    with open(work / "reproduce.log", "a", encoding="utf-8") as f:
        f.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")


def _load_train():
    from uehead.training import train

    return train


def train_all(args, train_fn=None) -> list[str]:
    """Train every missing run (seed-major); return the failures (one line each)."""
    from tqdm import tqdm

    runs = [(name, seed) for seed in args.seeds for name in args.names]

    def expected(name, seed):
        return {"model": _model_arg(args.model), "max_train": args.max_train[name],
                "max_length": args.max_length[name], "epochs": args.epochs, "seed": seed}

    pending = []
    for name, seed in runs:
        folder = run_folder(args.work, name, seed)
        if is_complete(folder):
            _check_settings(folder, expected(name, seed))
        else:
            pending.append((name, seed))
    for name in sorted({n for n, _ in pending}):
        if not (args.datasets / name / "labels.json").is_file():
            raise ReproError(f"--datasets {args.datasets}: no dataset {name!r} there (expected "
                             f"{args.datasets / name}/{{train,valid,test}}.jsonl.gz + labels.json); pass the folder "
                             "holding the datasets (e.g. ../shared/datasets) or leave it out of --names")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / SETTINGS_JSON).write_text(json.dumps(_requested(args), indent=2) + "\n", encoding="utf-8")
    _log(args.work, f"reproduce_paper: {len(runs)} runs, {len(runs) - len(pending)} cached, "
                    f"{len(pending)} to train into {args.work}")
    if not pending:
        return []
    train_fn = train_fn or _load_train()
    failures = []
    bar = tqdm(total=len(pending), unit="run", desc="paper runs", file=sys.stderr, dynamic_ncols=True)
    with bar:
        for i, (name, seed) in enumerate(pending, 1):
            bar.set_postfix_str(f"{name} seed{seed}")
            folder = run_folder(args.work, name, seed)
            try:
                meta = train_one(train_fn, args.datasets, name, seed, args, folder)
            except Exception as exc:  # noqa: BLE001 - keep going: the other runs are independent
                failures.append(f"{name} seed{seed}: {type(exc).__name__}: {exc}")
                _log(args.work, f"[{i}/{len(pending)}] {name} seed{seed} FAILED: {type(exc).__name__}: {exc}\n"
                                + traceback.format_exc())
            else:
                record = json.loads((folder / TRAINING_JSON).read_text(encoding="utf-8"))
                auc = record.get("roc_auc_test", {})
                aucs = " ".join(f"{m} {auc[m]:.3f}" for m in ("sr", "adue", "alien", "rmd")
                                if isinstance(auc.get(m), float))
                _log(args.work, f"[{i}/{len(pending)}] {name} seed{seed}: {meta['wall_s']:.0f}s, accuracy "
                                f"{record['accuracy']['test']:.3f}, test ROC-AUC {aucs}")
            finally:
                _free_memory()
            bar.update(1)
    return failures


def _requested(args) -> dict:
    return {"command": args.command,
            "datasets": str(args.datasets) if args.datasets else None, "names": args.names,
            "model": args.model, "seeds": args.seeds, "max_train": args.max_train, "max_length": args.max_length,
            "epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
            "keep_models": bool(args.keep_models)}


# ------------------------------------------------------------------------------ aggregation
def load_run(folder: Path) -> dict:
    """One run's record: settings from training.json, test metrics recomputed from its scores."""
    record = json.loads((folder / TRAINING_JSON).read_text(encoding="utf-8"))
    with np.load(folder / TEST_SCORES, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    scores = {k: v for k, v in arrays.items() if k not in SCORE_META}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.UndefinedMetricWarning)
        summary = M.summarize(scores, arrays["errors"])
    meta_path = folder / RUN_META
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    return {"seed": record.get("seed"), "folder": str(folder), "model": record.get("model"),
            "max_train": record.get("max_train"), "max_length": record.get("max_length"),
            "epochs": record.get("epochs"), "batch_size": record.get("batch_size"), "device": record.get("device"),
            "n_rows": record.get("n_rows"), "n_errors_test": int(np.asarray(arrays["errors"]).sum()),
            "accuracy": M.accuracy(arrays["labels"], arrays["predictions"]),
            "accuracy_valid": (record.get("accuracy") or {}).get("valid"),
            "metrics": summary, "timings_s": record.get("timings_s"), "wall_s": meta.get("wall_s"),
            "host": meta.get("host"), "head_selection": record.get("head_selection"),
            "versions": record.get("versions"), "uehead_version": record.get("uehead_version")}


def _find_seeds(work: Path, names) -> list[int]:
    seeds = set()
    for name in names:
        for d in (Path(work) / name).glob("seed*"):
            if d.name[4:].isdigit() and is_complete(d):
                seeds.add(int(d.name[4:]))
    return sorted(seeds)


def collect(work: Path, names, seeds) -> tuple[dict[str, list[dict]], list[str]]:
    """Complete runs per dataset (in seed order) and the missing ``name seedK`` runs."""
    runs, missing = {}, []
    for name in names:
        for seed in seeds:
            folder = run_folder(work, name, seed)
            if is_complete(folder):
                runs.setdefault(name, []).append(load_run(folder))
            else:
                missing.append(f"{name} seed{seed}")
    return runs, missing


def _unique(values):
    vals = list(dict.fromkeys(json.dumps(v, sort_keys=True) for v in values))
    return json.loads(vals[0]) if len(vals) == 1 else [json.loads(v) for v in vals]


def aggregate(runs: dict[str, list[dict]]) -> dict:
    """Per dataset: mean +- std over seeds of every metric of every method, accuracy, caps, timings."""
    out = {}
    for name, rs in runs.items():
        agg = M.aggregate([r["metrics"] for r in rs])
        paired = {}
        for m in ("adue", "alien"):  # paired over seeds: (method - SR) ROC-AUC per run
            diffs = [r["metrics"][m]["roc_auc"] - r["metrics"]["sr"]["roc_auc"] for r in rs
                     if m in r["metrics"] and "sr" in r["metrics"]]
            if diffs:
                paired[f"{m}_minus_sr"] = M.mean_std(diffs)
        out[name] = {
            "title": DATASETS.get(name, (name,))[0], "n_runs": len(rs), "seeds": [r["seed"] for r in rs],
            "caps": {k: _unique([r[k] for r in rs]) for k in ("max_train", "max_length", "epochs", "batch_size")},
            "model": _unique([r["model"] for r in rs]), "device": _unique([r["device"] for r in rs]),
            "n_rows": _unique([r["n_rows"] for r in rs]),
            "accuracy": M.mean_std(r["accuracy"] for r in rs),
            "metrics": agg, "roc_auc_paired": paired,
            "train_time_s": M.mean_std((r["timings_s"] or {}).get("total", math.nan) for r in rs),
        }
    return out


def _columns(names) -> list[str]:
    known = [n for n in DATASETS if n in names]  # the paper's column order
    return known + [n for n in names if n not in DATASETS]


# ------------------------------------------------------------------------------- markdown
def _fmt(ms: M.MeanStd | None, scale: float = 100.0) -> str:
    return "–" if ms is None else M.format_mean_std(ms, scale=scale, digits=1)


def _ranks(values: list[float], higher: bool) -> list[float]:
    """1 = best; ties share their average rank; NaN gets NaN."""
    out = [math.nan] * len(values)
    ok = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    for v, i in ok:
        better = sum(1 for w, _ in ok if (w > v if higher else w < v))
        same = sum(1 for w, _ in ok if w == v)
        out[i] = better + (same + 1) / 2
    return out


def _block(agg: dict, cols: list[str], methods, metric: str, higher: bool) -> list[list[str]]:
    """Rows of one block; the best mean per column (at the displayed precision) in bold; mean rank."""
    cells = {m: [agg[c]["metrics"].get(m, {}).get(metric) for c in cols] for m, _ in methods}
    shown = {m: [round(ms.mean * 100, 1) if ms is not None and ms.count else math.nan for ms in row]
             for m, row in cells.items()}
    present = [(m, label) for m, label in methods if any(not math.isnan(v) for v in shown[m])]
    if not present:
        return []
    rank_cols = [_ranks([shown[m][j] for m, _ in present], higher) for j in range(len(cols))]
    rows = []
    for i, (m, label) in enumerate(present):
        row = [label]
        for j in range(len(cols)):
            text = _fmt(cells[m][j])
            best = [shown[k][j] for k, _ in present if not math.isnan(shown[k][j])]
            if best and shown[m][j] == (max(best) if higher else min(best)) and len(present) > 1:
                text = f"**{text}**"
            row.append(text)
        r = [rank_cols[j][i] for j in range(len(cols)) if not math.isnan(rank_cols[j][i])]
        row.append(f"{sum(r) / len(r):.1f}" if r else "–")
        rows.append(row)
    return rows


def _table(agg: dict, cols: list[str], metric: str, blocks, accuracy_row: bool = False) -> str:
    higher = M.DIRECTIONS[metric] == "higher"
    head = ["Method"] + [agg[c]["title"] for c in cols] + ["Rank ↓"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":--"] + ["--:"] * (len(head) - 1)) + "|"]
    for k, (title, methods) in enumerate(blocks):
        rows = _block(agg, cols, methods, metric, higher)
        if rows and title:
            lines.append("| " + " | ".join([f"*{title}*"] + [""] * (len(head) - 1)) + " |")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    if accuracy_row:
        lines.append("| " + " | ".join(["Accuracy (task, %)"] + [_fmt(agg[c]["accuracy"]) for c in cols] + [""])
                     + " |")
    return "\n".join(lines)


def _caps_line(agg: dict, cols: list[str], seeds) -> str:
    def per(key, fmt=str):
        vals = {agg[c]["title"]: agg[c]["caps"][key] for c in cols}
        if len({json.dumps(v) for v in vals.values()}) == 1:
            return fmt(next(iter(vals.values())))
        return ", ".join(f"{t} {fmt(v)}" for t, v in vals.items())

    train_rows = ", ".join(f"{agg[c]['title']} {_rows(agg[c]['n_rows'], 'train')}" for c in cols)
    test_rows = ", ".join(f"{agg[c]['title']} {_rows(agg[c]['n_rows'], 'test')}" for c in cols)
    models = ", ".join(dict.fromkeys(_display_model(agg[c]["model"]) for c in cols))
    devices = ", ".join(dict.fromkeys(str(agg[c]["device"]) for c in cols))
    return (f"**Caps used:** backbone `{models}`; LoRA epochs {per('epochs')}; batch {per('batch_size')}; "
            f"max_train {per('max_train', _all)} (LoRA training rows: {train_rows}); max_length "
            f"{per('max_length')} tokens; seeds {', '.join(map(str, seeds))}; device {devices}; heads fitted and "
            f"selected on the valid split; metrics on the full test split ({test_rows} rows).")


def _display_model(model) -> str:
    """A built-in name as is; a local path by its folder name."""
    return Path(model).name if isinstance(model, str) and os.sep in model else str(model)


def _all(v) -> str:
    return "all" if v is None else str(v)


def _rows(n_rows, split: str) -> str:
    if isinstance(n_rows, dict):
        return f"{n_rows.get(split, '?'):,}" if isinstance(n_rows.get(split), int) else "?"
    return "varies"


def _reference(agg: dict, cols: list[str]) -> str:
    ref_cols = [c for c in cols if c in DATASETS]
    if not ref_cols:
        return ""
    titles = [agg[c]["title"] for c in ref_cols]
    lines = ["### Paper reference (NOT measured here)", "",
             ("AdUE paper (arXiv:2505.15443) Table 1, **RoBERTa-base** (125M), ROC-AUC x100, mean ± std of 5 runs, "
              "as quoted in the design's METHOD.md. Different backbone and full data, so compare the ordering "
              "of methods, not the absolute values."), "",
             "| Method (paper, RoBERTa-base) | " + " | ".join(titles) + " |",
             "|:--|" + "|".join(["--:"] * len(titles)) + "|"]
    for m, label in (("sr", "SR"), ("adue", "AdUE"), ("rmd", "RMD")):
        lines.append(f"| {label} (paper) | " + " | ".join(f"{PAPER_ROBERTA[m][c][0]:.1f} ± {PAPER_ROBERTA[m][c][1]:.1f}"
                                                          for c in ref_cols) + " |")
    lines += ["", "Gain over SR in ROC-AUC x100 (ours: mean ± std of the per-seed paired difference):", "",
              "| Difference | " + " | ".join(titles) + " |", "|:--|" + "|".join(["--:"] * len(titles)) + "|"]
    for m, label in (("adue", "AdUE − SR (ours)"), ("alien", "ALIEN − SR (ours)")):
        cells = [agg[c]["roc_auc_paired"].get(f"{m}_minus_sr") for c in ref_cols]
        lines.append(f"| {label} | " + " | ".join(
            "–" if ms is None or not ms.count else f"{ms.mean * 100:+.1f} ± {ms.std * 100:.1f}" for ms in cells) + " |")
    lines.append("| AdUE − SR (paper, RoBERTa) | " + " | ".join(
        f"{PAPER_ROBERTA['adue'][c][0] - PAPER_ROBERTA['sr'][c][0]:+.1f}" for c in ref_cols) + " |")
    return "\n".join(lines)


def render_markdown(result: dict, agg: dict) -> str:
    cols = _columns(list(agg))
    seeds = result["settings"]["seeds"]
    n_seeds = max(a["n_runs"] for a in agg.values())
    main = [("", MAIN_METHODS), ("Ablations (paper Table 2): AdUE variants", ABLATION_METHODS)]
    parts = [f"# AdUE paper Table 1 reproduced with uehead (`{_display_model(result['settings']['model'])}`)", "",
             f"Misclassification detection on the test split: **ROC-AUC x100**, mean ± std over {n_seeds} "
             + ("seeds " if n_seeds > 1 else "seed (a single run: std shown as 0) ")
             + "(higher is better; every score is higher = more uncertain). Best per column in **bold**, "
             "separately in each block; Rank = mean rank over the columns within the block. "
             "\"(n=k/m)\" marks cells where some runs were undefined.", "",
             _table(agg, cols, "roc_auc", main, accuracy_row=True), "", _caps_line(agg, cols, seeds), ""]
    if result["missing_runs"]:
        parts += [f"**Missing runs (not in the means):** {', '.join(result['missing_runs'])}.", ""]
    parts += [_reference(agg, cols), ""]
    parts += ["### PRR x100 (higher is better)", "", _table(agg, cols, "prr", main), "",
              "### AURC x100 (lower is better)", "", _table(agg, cols, "aurc", main), "",
              "### Calibration of the predicted error probability (probability scores only; lower is better)", "",
              "ECE x100 (15 equal-width bins):", "", _table(agg, cols, "ece", [("", MAIN_METHODS)]), "",
              "Brier x100:", "", _table(agg, cols, "brier", [("", MAIN_METHODS)]), ""]
    timing = ", ".join(f"{agg[c]['title']} {_fmt(agg[c]['train_time_s'], 1.0)} s" for c in cols)
    v = result["versions"]
    parts += [f"Training time per run (train() total): {timing}. Versions: uehead {v.get('uehead')}, "
              + ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "peft", "scikit-learn") if k in v)
              + ". Everything (per-run metrics, timings, selected head hyperparameters) is in the JSON beside "
              "this file.", ""]
    if result.get("command"):
        parts += [f"Command: `{result['command']}`", ""]
    return "\n".join(parts)


def _jsonable(obj):
    if isinstance(obj, M.MeanStd):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_report(args, failures=()) -> dict:
    seeds = args.seeds if args.seeds is not None else _find_seeds(args.work, args.names)
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
        "settings": {"model": _unique([a["model"] for a in agg.values()]), "seeds": seeds,
                     "datasets": {n: a["caps"] for n, a in agg.items()},
                     "device": _unique([a["device"] for a in agg.values()]),
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
    _atomic_write(json_path, json.dumps(_jsonable(result), indent=2, allow_nan=False) + "\n")
    _atomic_write(md_path, md)
    print(f"reproduce_paper: wrote {json_path} and {md_path}"
          + (f"; {len(result['missing_runs'])} runs missing" if result["missing_runs"] else ""), file=sys.stderr)
    if failures:
        print("reproduce_paper: failed runs (see WORK/reproduce.log):\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
