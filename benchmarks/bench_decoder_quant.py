"""Quantised decoder backbones (e.g. SmolLM2) side by side: speed and quality vs fp32 in one run.

    python benchmarks/bench_decoder_quant.py --fp32 BUNDLE_FP32 --work DIR [--threads 1]

From the fp32 bundle's backbone.onnx it writes (under --work, reused when present) these variants:

* ``int8``      - all weight MatMuls int8 dynamic per-channel (``uehead export --int8`` today);
* ``int8+fp32@T`` - int8, the layers above tolerance T kept fp32 (once per --tolerance T);
* ``int8+smooth@T`` - int8, the layers above T smoothed (SmoothQuant, folded into the
  MatMul that produces their input) when that brings them under it, else fp32;
* ``int4``      - 4-bit weight-only ``MatMulNBits`` everywhere (block --block-size, accuracy_level 4);
* ``mixed@T``   - per layer int8 | int8_smooth | int4 | fp32 from the measured sensitivity
  (:func:`uehead.export.quantize_layers.quantize_mixed`).

Sensitivity is measured on --calibration-rows Rotten Tomatoes TRAIN sentences; quality on the test
split: every batch of --batch-size test texts (grouped by length, as the runtime batches) goes
through fp32 and every variant in turn (the order rotates each batch, so background load hits all
alike); timing is the sum of backbone run times. Accuracy and ROC-AUC deltas (x100, variant - fp32,
every uncertainty score higher = more uncertain) come from ``uehead.export.quantize.dataset_deltas``.
Gate: accuracy and the AdUE ROC-AUC within 1 point of fp32. Prints a table, writes --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from uehead.bundle import load_manifest
from uehead.datasets import load_dataset
from uehead.export import quantize, quantize_layers as ql
from uehead.runtime.session import make_session
from uehead.runtime.tokenize import TextTokenizer
from uehead.scores import head_params

RESULTS = Path(__file__).resolve().parent / "results"
GATE_POINTS = 1.0


class _Replay:
    """A pipeline that returns recorded outputs batch by batch, so ``dataset_deltas`` scores the
    outputs of the interleaved pass without running the graphs again (its ``run_texts`` batches in
    the same order as :func:`ql.calibration_feeds`)."""

    def __init__(self, outputs: list[dict[str, np.ndarray]]):
        self.outputs, self.i = outputs, 0

    def __call__(self, batch):
        out = self.outputs[self.i]
        if len(out["features"]) != len(batch["input_ids"]):
            raise RuntimeError("replayed batch does not match; the batching order changed")
        self.i += 1
        return out


def _plans(sens, a) -> dict[str, dict[str, str]]:
    """Variant name -> layer choices; the tolerance-driven variants once per --tolerance."""
    plans = {"int4": ql.choose_layers(sens, tolerance=float("inf"), candidates=("int4",))}
    for t in a.tolerance:
        plans[f"int8+fp32@{t:g}"] = ql.choose_layers(sens, tolerance=t, candidates=("int8", "fp32"))
        plans[f"int8+smooth@{t:g}"] = ql.choose_layers(sens, tolerance=t, candidates=("int8", "int8_smooth", "fp32"))
        plans[f"mixed@{t:g}"] = ql.choose_layers(sens, tolerance=t, candidates=ql.CANDIDATES)
    unique: dict[str, dict[str, str]] = {}
    for name, choices in plans.items():  # e.g. mixed@T picks no 4-bit layer: the same graph as int8+smooth@T
        same = next((k for k, v in unique.items() if v == choices), None)
        if same is None:
            unique[name] = choices
        else:
            print(f"{name}: the same layer choices as {same}; not measured twice")
    return unique


def _write_variants(fp32: Path, work: Path, sens, a) -> dict[str, dict]:
    work.mkdir(parents=True, exist_ok=True)
    plans = _plans(sens, a)
    info = {}
    path = work / "int8.onnx"
    t0 = time.perf_counter()
    if not path.exists():
        quantize.quantize_backbone(fp32, path)
    info["int8"] = {"path": path, "counts": {c: len(sens) if c == "int8" else 0 for c in ql.CANDIDATES},
                    "seconds": time.perf_counter() - t0}
    for name, choices in plans.items():
        path = work / f"{name.replace('+', '_').replace('@', '_')}.onnx"
        t0 = time.perf_counter()
        if not path.exists() or a.rewrite:
            ql.write_mixed(fp32, path, choices, block_size=a.block_size, accuracy_level=a.accuracy_level,
                           sensitivity=sens)
        info[name] = {"path": path, "counts": {c: sum(v == c for v in choices.values()) for c in ql.CANDIDATES},
                      "seconds": time.perf_counter() - t0,
                      "fp32_layers": sorted(k for k, v in choices.items() if v == "fp32"),
                      "int4_layers": sorted(k for k, v in choices.items() if v == "int4") if name != "int4" else None,
                      "smoothed_layers": sorted(k for k, v in choices.items() if v == "int8_smooth")}
    return info


def run(a) -> dict:
    load_before = os.getloadavg()
    m = load_manifest(a.fp32)
    tok = TextTokenizer(a.fp32 / m.tokenizer.file, m.tokenizer)
    fp32 = a.fp32 / m.backbone.file
    heads = {h.kind: head_params(h.kind, h) for h in m.head.heads}
    data = load_dataset("rotten_tomatoes", splits=("train", "test"))
    feeds = ql.calibration_feeds(tok, data["train"].texts, batch_size=a.batch_size, count=a.calibration_rows)
    sens_file = a.work / "sensitivity.json"
    t0 = time.perf_counter()
    if sens_file.exists() and not a.rewrite:
        sens = json.loads(sens_file.read_text())
    else:
        sens = ql.measure_sensitivity(fp32, feeds, block_size=a.block_size, smooth_alpha=a.smooth_alpha,
                                      threads=a.threads)
        a.work.mkdir(parents=True, exist_ok=True)
        sens_file.write_text(json.dumps(sens))
    sens_seconds = time.perf_counter() - t0
    variants = _write_variants(fp32, a.work, sens, a)

    test = data["test"]
    texts, labels = list(test.texts)[: a.rows or None], np.asarray(test.labels)[: a.rows or None]
    batches = ql.calibration_feeds(tok, texts, batch_size=a.batch_size)
    paths = {"fp32": fp32, **{k: v["path"] for k, v in variants.items()}}
    sessions = {k: make_session(p, threads=a.threads) for k, p in paths.items()}
    head = make_session(a.fp32 / m.head.file, threads=1)
    names = [o.name for o in head.get_outputs()]
    for s in sessions.values():  # warm-up
        s.run(["features"], _feed(s, batches[0]))
    outputs = {k: [] for k in sessions}
    times = {k: 0.0 for k in sessions}
    order = list(sessions)
    for i, batch in enumerate(batches):
        for k in order[i % len(order):] + order[: i % len(order)]:
            s = sessions[k]
            t0 = time.perf_counter()
            (z,) = s.run(["features"], _feed(s, batch))
            times[k] += time.perf_counter() - t0
            outputs[k].append({"features": z, **dict(zip(names, head.run(None, {m.head.input_name: z})))})
    result_variants = {}
    for k in variants:
        deltas = quantize.dataset_deltas(_Replay(outputs["fp32"]), _Replay(outputs[k]), tok, texts, labels, heads,
                                         batch_size=a.batch_size)
        adue = deltas["roc_auc"].get("adue")
        gate = (abs(deltas["accuracy"]["delta"]) <= GATE_POINTS and adue is not None
                and abs(adue["delta"]) <= GATE_POINTS)
        info = variants[k]
        result_variants[k] = {
            "file_mb": info["path"].stat().st_size / 2**20, "speedup": times["fp32"] / times[k],
            "backbone_seconds": times[k], "counts": info["counts"], "passes_gate": bool(gate),
            "fp32_layers": info.get("fp32_layers"), "int4_layers": info.get("int4_layers"),
            "smoothed_layers": info.get("smoothed_layers"),
            "write_seconds": info["seconds"], "deltas": deltas}
    return {
        "machine": {"cpu": _cpu(), "cpu_count": os.cpu_count(), "threads": a.threads,
                    "python": platform.python_version(), "onnxruntime": __import__("onnxruntime").__version__,
                    "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]]},
        "bundle": str(a.fp32), "model": m.reports.get("training", {}).get("model"),
        "settings": {"batch_size": a.batch_size, "test_rows": len(texts), "batches": len(batches),
                     "calibration_rows": int(sum(len(f["input_ids"]) for f in feeds)), "calibration_split": "train",
                     "tolerances": list(a.tolerance), "block_size": a.block_size,
                     "accuracy_level": a.accuracy_level,
                     "smooth_alpha": a.smooth_alpha,
                     "mean_padded_length": float(np.mean([b["input_ids"].shape[1] for b in batches]))},
        "sensitivity_seconds": sens_seconds,
        "fp32": {"file_mb": fp32.stat().st_size / 2**20, "backbone_seconds": times["fp32"]},
        "variants": result_variants,
        "sensitivity": [{"name": l["name"], "error": l["error"], "input_outlier_ratio": l["input_outlier_ratio"]}
                        for l in sens],
    }


def _feed(session, batch):
    return {i.name: np.ascontiguousarray(batch[i.name], dtype=np.int64) for i in session.get_inputs()}


def _cpu() -> str:
    from uehead.bench.machine import cpu_name

    return cpu_name() or "unknown"


def print_table(r: dict) -> None:
    s = r["settings"]
    print(f"{r['model']} backbone, {s['test_rows']} Rotten Tomatoes test texts in batches of {s['batch_size']} "
          f"(mean padded length {s['mean_padded_length']:.1f}), {r['machine']['threads']} thread(s), "
          f"variants alternated per batch, load average {r['machine']['loadavg_1min_before_after'][0]:.1f} -> "
          f"{r['machine']['loadavg_1min_before_after'][1]:.1f}; sensitivity on {s['calibration_rows']} train rows, "
          f"tolerances {s['tolerances']}")
    print(f"{'variant':<18}{'MB':>7}{'x smaller':>10}{'speed-up':>9}{'acc d':>8}{'adue d':>8}{'alien d':>8}{'sr d':>7}"
          f"{'flips':>6}  {'int8/sm/int4/fp32':<18}gate")
    fp32_mb = r["fp32"]["file_mb"]
    print(f"{'fp32':<18}{fp32_mb:>7.0f}{1:>10.2f}{1:>9.2f}")
    for k, v in r["variants"].items():
        d = v["deltas"]
        auc = {n: d["roc_auc"].get(n, {}).get("delta", float("nan")) for n in ("adue", "alien", "sr")}
        c = v["counts"]
        print(f"{k:<18}{v['file_mb']:>7.0f}{fp32_mb / v['file_mb']:>10.2f}{v['speedup']:>9.2f}"
              f"{d['accuracy']['delta']:>+8.2f}{auc['adue']:>+8.2f}{auc['alien']:>+8.2f}{auc['sr']:>+7.2f}"
              f"{d['label_flips']:>6}  {c['int8']}/{c['int8_smooth']}/{c['int4']}/{c['fp32']:<9}"
              f"{'pass' if v['passes_gate'] else 'FAIL'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp32", required=True, type=Path, help="fp32 bundle of a decoder (uehead export CKPT OUT)")
    p.add_argument("--work", required=True, type=Path, help="folder for the variant graphs and sensitivity.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rows", type=int, default=0, help="test rows (0: all)")
    p.add_argument("--calibration-rows", type=int, default=ql.CALIBRATION_ROWS)
    p.add_argument("--tolerance", type=lambda v: tuple(float(x) for x in v.split(",")),
                   default=(ql.DEFAULT_TOLERANCE,), help="comma list: one set of tolerance-driven variants each")
    p.add_argument("--block-size", type=int, default=ql.DEFAULT_BLOCK_SIZE)
    p.add_argument("--accuracy-level", type=int, default=ql.DEFAULT_ACCURACY_LEVEL)
    p.add_argument("--smooth-alpha", type=float, default=ql.DEFAULT_SMOOTH_ALPHA)
    p.add_argument("--rewrite", action="store_true", help="re-measure and rewrite the variants under --work")
    p.add_argument("--out", type=Path, default=RESULTS / "decoder_quant.json")
    a = p.parse_args(argv)
    r = run(a)
    print_table(r)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    r_json = json.loads(json.dumps(r, default=str))
    a.out.write_text(json.dumps({"benchmark": "decoder_quant", **r_json}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
