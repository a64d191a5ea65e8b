"""The README's main job, end to end, on what pip installs (MiniLM + Rotten Tomatoes).

1. train    LoRA fine-tune MiniLM on Rotten Tomatoes, merge, fit AdUE + ALIEN heads and baselines
2. export   fp32 and int8 bundles (each validated against PyTorch during export)
3. verify   both bundles, torch-free (`uehead verify`: checksums + golden outputs)
4. evaluate both bundles on the test split through the torch-free runtime (`uehead evaluate`)
5. calibrate the fp32 bundle on the validation split (P(error), abstention at 5 % / 10 % risk,
            conformal sets at 90 % / 95 % coverage) and evaluate the calibrated bundle on the test split
6. overhead per-batch CPU cost of head graph + kernels against the backbone (torch-free)

Steps 3-6 run as `uehead` subprocesses that never import torch. Everything lands in --out
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


def print_decisions(calibrated: Path, eval_json: Path) -> None:
    """The decision layer's summary: accepted fraction per score and risk level on the calibration
    rows, mean set size per coverage level, and how the calibrated decisions did on the test split."""
    report = json.loads((calibrated / "calibration.json").read_text())["report"]
    print(f"[calibration] fitted on the validation split ({report['n_rows']} rows, delta {report['delta']:g}); "
          f"accepted fraction at each risk level (its own certified threshold; none = not certified):")
    for name, levels in report["risk"].items():
        cells = ", ".join(f"risk {lv['risk']:g}: " + (f"{lv['accepted_fraction']:.1%}" if lv["threshold"] is not None
                                                       else "none") for lv in levels)
        print(f"  {name:8s} {cells}")
    for sets in report["sets"]:
        print(f"  sets at coverage {sets['coverage']:g}: mean size {sets['mean_set_size']:.3f} "
              f"(label in set {sets['empirical_coverage']:.1%}, cross-fitted)")
    dec = json.loads(eval_json.read_text())["decisions"]
    for r in dec["risk_levels"]:
        risk = "-" if r["selective_risk"] is None else f"{r['selective_risk']:.4f}"
        print(f"[test, {dec['score']}] risk {r['risk']:g}: accepted {r['accepted_fraction']:.1%}, "
              f"error rate among accepted {risk}")
    for c in dec["coverage_levels"]:
        print(f"[test] coverage {c['coverage']:g}: label in set {c['empirical_coverage']:.1%}, "
              f"mean set size {c['mean_set_size']:.3f}")


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

    t = step("1/6 train: LoRA MiniLM on Rotten Tomatoes, merge, AdUE + ALIEN heads, baselines")
    if not is_checkpoint(ckpt):
        from uehead.training import train

        train(model="minilm", data="rotten_tomatoes", out=ckpt, heads=("adue", "alien"),
              max_train=a.max_train, epochs=a.epochs, max_length=a.max_length, seed=a.seed, device="auto")
    else:
        print(f"(already trained: {ckpt})")
    times["train"] = time.perf_counter() - t

    t = step("2/6 export: fp32 and int8 bundles, validated against PyTorch")
    from uehead.export import export_bundle

    if not (fp32 / "manifest.json").is_file():
        export_bundle(ckpt, fp32)
    if not (int8 / "manifest.json").is_file():
        export_bundle(ckpt, int8, int8=True, data="rotten_tomatoes")
    times["export"] = time.perf_counter() - t

    t = step("3/6 verify (torch-free): checksums + golden outputs")
    for bundle in (fp32, int8):
        uehead("verify", str(bundle))
    times["verify"] = time.perf_counter() - t

    t = step("4/6 predict + evaluate on the test split through the torch-free runtime")
    for bundle in (fp32, int8):
        uehead("evaluate", str(bundle), "--data", "rotten_tomatoes", "--split", "test",
               "--json", str(out / f"eval-{bundle.name}.json"))
    times["evaluate"] = time.perf_counter() - t

    t = step("5/6 calibrate on the validation split (torch-free), evaluate the calibrated bundle on test")
    calibrated = out / "bundle-fp32-calibrated"
    if not (calibrated / "manifest.json").is_file():
        uehead("calibrate", str(fp32), "--data", "rotten_tomatoes", "--split", "valid", "--out", str(calibrated),
               "--risk", "0.05,0.1", "--delta", "0.1", "--coverage", "0.9,0.95")
    uehead("evaluate", str(calibrated), "--data", "rotten_tomatoes", "--split", "test",
           "--json", str(out / "eval-bundle-fp32-calibrated.json"))
    times["calibrate"] = time.perf_counter() - t

    t = step("6/6 per-batch CPU overhead of the uncertainty head (torch-free)")
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
    print_decisions(calibrated, out / "eval-bundle-fp32-calibrated.json")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f"; total {total:.0f}")
    print(f"main job wall time: {total:.0f} s ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
