"""The README's main job, end to end, on what pip installs (MiniLM + Rotten Tomatoes).

1. train    LoRA fine-tune MiniLM on Rotten Tomatoes, merge, fit AdUE + ALIEN heads and baselines
2. export   fp32 and int8 bundles (each validated against PyTorch during export)
3. verify   both bundles, torch-free (`uehead verify`: checksums + golden outputs)
4. evaluate both bundles on the test split through the torch-free runtime (`uehead evaluate`)
5. overhead per-batch CPU cost of head graph + kernels against the backbone (torch-free)

Steps 3-5 run as `uehead` subprocesses that never import torch. Everything lands in --out
(default: artifacts/). Re-running skips finished steps unless --force is given.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from uehead.checkpoint import is_checkpoint, read_training

ROOT = Path(__file__).resolve().parents[1]


def step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.perf_counter()


def uehead(*args: str) -> None:
    """Run a `uehead` verb in a subprocess (its own interpreter: the runtime verbs stay torch-free)."""
    cmd = [sys.executable, "-m", "uehead", *args]
    print("$ uehead " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "artifacts")
    p.add_argument("--max-train", type=int, default=None, help="cap LoRA training rows (default: all 6,826)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-length", type=int, default=64, help="Rotten Tomatoes sentences fit in 64 tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="redo every step")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = a.out.resolve()
    if a.force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, fp32, int8 = out / "ckpt-minilm-rt", out / "bundle-fp32", out / "bundle-int8"
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    t = step("1/5 train: LoRA MiniLM on Rotten Tomatoes, merge, AdUE + ALIEN heads, baselines")
    if not is_checkpoint(ckpt):
        from uehead.training import train

        train(model="minilm", data="rotten_tomatoes", out=ckpt, heads=("adue", "alien"),
              max_train=a.max_train, epochs=a.epochs, max_length=a.max_length, seed=a.seed, device="auto")
    else:
        print(f"(already trained: {ckpt})")
    times["train"] = time.perf_counter() - t

    t = step("2/5 export: fp32 and int8 bundles, validated against PyTorch")
    from uehead.export import export_bundle

    if not (fp32 / "manifest.json").is_file():
        export_bundle(ckpt, fp32)
    if not (int8 / "manifest.json").is_file():
        export_bundle(ckpt, int8, int8=True, data="rotten_tomatoes")
    times["export"] = time.perf_counter() - t

    t = step("3/5 verify (torch-free): checksums + golden outputs")
    for bundle in (fp32, int8):
        uehead("verify", str(bundle))
    times["verify"] = time.perf_counter() - t

    t = step("4/5 predict + evaluate on the test split through the torch-free runtime")
    for bundle in (fp32, int8):
        uehead("evaluate", str(bundle), "--data", "rotten_tomatoes", "--split", "test",
               "--json", str(out / f"eval-{bundle.name}.json"))
    times["evaluate"] = time.perf_counter() - t

    t = step("5/5 per-batch CPU overhead of the uncertainty head (torch-free)")
    overhead_json = out / "overhead.json"
    subprocess.run([sys.executable, "-c", (
        "import json, sys; from uehead.bench import head_overhead_report; "
        f"r = head_overhead_report({str(fp32)!r}); json.dump(r, open({str(overhead_json)!r}, 'w'), indent=2)")],
        check=True)
    times["overhead"] = time.perf_counter() - t

    total = time.perf_counter() - t_all
    print("\n=== summary")
    training = read_training(ckpt)
    print(f"checkpoint: {ckpt}\nbundles:    {fp32}\n            {int8}")
    print(f"test accuracy (PyTorch): {training['accuracy']['test']:.4f}")
    for name in ("bundle-fp32", "bundle-int8"):
        ev = json.loads((out / f"eval-{name}.json").read_text())
        print(f"[{name}] accuracy {ev['accuracy']:.4f}; ROC-AUC x100 (higher = better): " + ", ".join(
            f"{k} {100 * v['roc_auc']:.1f}" for k, v in ev["metrics"].items()))
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f"; total {total:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
