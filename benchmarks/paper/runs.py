"""The training runs of the reproduction: one checkpoint per dataset x seed, cached and resumable.

Each run trains into ``WORK/<dataset>/.seed<k>.tmp`` and is renamed to ``WORK/<dataset>/seed<k>``
once complete, so an interrupted run never looks complete. The checkpoint's files are read and
named through :mod:`uehead.checkpoint` only.
"""
from __future__ import annotations

import gc
import json
import platform
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from paper.config import CHECKED, RUN_META, SETTINGS_JSON, ReproError
from uehead.datasets import BUILTIN
from uehead.checkpoint import (SCORE_META, SCORES_DIR, TRAINING_JSON, CheckpointError, model_dir, read_scores,
                               read_training)

__all__ = ["is_complete", "model_arg", "run_folder", "train_all", "train_one"]


def model_arg(model: str) -> str:
    """Built-in names stay names; an existing local path is made absolute (recorded in training.json)."""
    return str(Path(model).resolve()) if Path(model).exists() else model


def run_folder(work: Path, name: str, seed: int) -> Path:
    return Path(work) / name / f"seed{seed}"


def data_arg(datasets: Path, name: str) -> str:
    """The ``data`` argument of train(): a built-in name (rotten_tomatoes) or DATASETS/<name>."""
    return name if name in BUILTIN else str(Path(datasets) / name)


def shared_lora_model(lora_from: Path, name: str, seed: int) -> Path:
    """The merged model of the run in ``lora_from`` with the same dataset and seed: another
    protocol's heads are then fitted on exactly that fine-tuned model (``finetune="none"``)."""
    folder = model_dir(run_folder(lora_from, name, seed))
    if not (folder / "config.json").is_file():
        raise ReproError(f"--lora-from {lora_from}: {folder} holds no merged model; train that run with "
                         "--keep-models first")
    return folder


def is_complete(folder: Path) -> bool:
    """A finished run: training.json (with accuracy) and readable test scores of at least one method."""
    try:
        record = read_training(folder)
        arrays = read_scores(folder, "test")
    except CheckpointError:
        return False
    return len(arrays) > len(SCORE_META) and "accuracy" in record


def _check_settings(folder: Path, expected: dict) -> None:
    record = read_training(folder)
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
    model, extra = model_arg(args.model), {}
    if getattr(args, "lora_from", None) is not None:
        model, extra = str(shared_lora_model(args.lora_from, name, seed)), {"finetune": "none"}
    if getattr(args, "warmup_ratio", None) is not None:
        from uehead.training.config import LoraSettings

        extra["lora"] = LoraSettings(warmup_ratio=args.warmup_ratio)
    train_fn(model, data_arg(datasets, name), tmp, max_train=args.max_train[name],
             epochs=args.epochs, max_length=args.max_length[name], seed=seed, device=args.device,
             batch_size=args.batch_size, ablations=True, progress=args.train_progress,
             protocol=getattr(args, "protocol", "uehead"), **extra)
    if not is_complete(tmp):
        raise ReproError(f"{tmp}: train() returned without writing {TRAINING_JSON} and {SCORES_DIR}/test.npz")
    if not args.keep_models:
        shutil.rmtree(model_dir(tmp), ignore_errors=True)
    meta = {"wall_s": round(time.perf_counter() - started, 3), "host": platform.node(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_kept": bool(args.keep_models), "protocol": getattr(args, "protocol", "uehead"),
            "lora_from": str(shared_lora_model(args.lora_from, name, seed)) if getattr(args, "lora_from", None)
            else None}
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


def log(work: Path, line: str) -> None:
    """A line to stderr (above the progress bar) and to WORK/reproduce.log."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
    with open(work / "reproduce.log", "a", encoding="utf-8") as f:
        f.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")


def _load_train():
    from uehead.training import train

    return train


def _pending(args) -> tuple[list[tuple[str, int]], int]:
    """(the runs still to train, the number of runs asked for); a cached run must match the request."""
    runs = [(name, seed) for seed in args.seeds for name in args.names]
    pending = []
    for name, seed in runs:
        folder = run_folder(args.work, name, seed)
        if is_complete(folder):
            model = (str(shared_lora_model(args.lora_from, name, seed)) if getattr(args, "lora_from", None)
                     else model_arg(args.model))
            _check_settings(folder, {"model": model, "max_train": args.max_train[name],
                                     "max_length": args.max_length[name], "epochs": args.epochs, "seed": seed})
        else:
            pending.append((name, seed))
    for name in sorted({n for n, _ in pending} - set(BUILTIN)):
        if not (args.datasets / name / "labels.json").is_file():
            raise ReproError(f"--datasets {args.datasets}: no dataset {name!r} there (expected "
                             f"{args.datasets / name}/{{train,valid,test}}.jsonl.gz + labels.json); pass the folder "
                             "holding the datasets (e.g. ../shared/datasets) or leave it out of --names")
    return pending, len(runs)


def _log_done(work: Path, step: str, folder: Path, meta: dict) -> None:
    record = read_training(folder)
    auc = record.get("roc_auc_test", {})
    aucs = " ".join(f"{m} {auc[m]:.3f}" for m in ("sr", "adue", "alien", "rmd") if isinstance(auc.get(m), float))
    log(work, f"{step}: {meta['wall_s']:.0f}s, accuracy {record['accuracy']['test']:.3f}, test ROC-AUC {aucs}")


def train_all(args, train_fn=None) -> list[str]:
    """Train every missing run (seed-major); return the failures (one line each)."""
    from tqdm import tqdm

    pending, n_runs = _pending(args)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / SETTINGS_JSON).write_text(json.dumps(requested(args), indent=2) + "\n", encoding="utf-8")
    log(args.work, f"reproduce_paper: {n_runs} runs, {n_runs - len(pending)} cached, "
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
            step = f"[{i}/{len(pending)}] {name} seed{seed}"
            try:
                meta = train_one(train_fn, args.datasets, name, seed, args, folder)
            except Exception as exc:  # noqa: BLE001 - keep going: the other runs are independent
                failures.append(f"{name} seed{seed}: {type(exc).__name__}: {exc}")
                log(args.work, f"{step} FAILED: {type(exc).__name__}: {exc}\n" + traceback.format_exc())
            else:
                _log_done(args.work, step, folder, meta)
            finally:
                _free_memory()
            bar.update(1)
    return failures


def requested(args) -> dict:
    """What this invocation asked for (WORK/reproduce_settings.json; the report quotes it)."""
    return {"command": args.command,
            "datasets": str(args.datasets) if args.datasets else None, "names": args.names,
            "model": args.model, "seeds": args.seeds, "max_train": args.max_train, "max_length": args.max_length,
            "epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
            "keep_models": bool(args.keep_models), "protocol": getattr(args, "protocol", "uehead"),
            "lora_from": str(args.lora_from) if getattr(args, "lora_from", None) else None,
            "warmup_ratio": getattr(args, "warmup_ratio", None)}
