"""``uehead`` command line: one verb per stage, each a thin wrapper over a Python function.

    uehead train     -> uehead.training.train
    uehead export    -> uehead.export.export_bundle
    uehead verify    -> uehead.runtime.verify (torch-free)
    uehead predict   -> uehead.runtime.Model.predict_file (torch-free)
    uehead evaluate  -> uehead.evaluation.evaluate.evaluate_bundle (torch-free)
    uehead calibrate -> uehead.calibration.calibrate (torch-free)
    uehead bench     -> uehead.bench.run_bench

Heavy stages are imported only when their verb runs, so ``uehead verify`` works on a
runtime-only install. Errors a user can fix exit with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from uehead import __version__
from uehead.errors import UeheadError


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _cmd_train(a: argparse.Namespace) -> int:
    from uehead.training import train

    train(model=a.model, data=a.data, out=a.out, heads=a.heads, max_train=a.max_train, epochs=a.epochs,
          max_length=a.max_length, seed=a.seed, device=a.device, batch_size=a.batch_size)
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from uehead.export import export_bundle

    export_bundle(a.checkpoint, a.bundle, int8=a.int8, opset=a.opset, data=a.data, default_head=a.default_head)
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from uehead.runtime import verify

    report = verify(a.bundle)
    print(json.dumps(report, indent=2))
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    if a.engine == "ray":
        if a.resume:
            print("uehead predict: error: --resume works with --engine local only; a Ray job is re-run whole "
                  "(its output appears only when complete).", file=sys.stderr)
            return 2
        from uehead.runtime.ray_data import predict_file_ray

        predict_file_ray(a.bundle, a.input, a.output, text_column=a.text_column, id_column=a.id_column,
                         batch_size=a.batch_size, num_workers=a.num_workers, address=a.address,
                         threads=a.threads)
        return 0
    from uehead.runtime import load

    model = load(a.bundle, threads=a.threads)
    report = model.predict_file(a.input, a.output, text_column=a.text_column, id_column=a.id_column,
                                batch_size=a.batch_size, resume=a.resume)
    print(f"uehead predict: {report.rows} rows ({report.error_rows} error rows) -> {report.output} "
          f"in {report.seconds:.1f} s", file=sys.stderr)
    return 0


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma list of numbers, e.g. 0.05,0.1") from None


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from uehead.calibration import calibrate

    calibrate(a.bundle, a.data, out=a.out, split=a.split, score=a.score, risk=a.risk, delta=a.delta,
              coverage=a.coverage, method=a.method, class_conditional=a.class_conditional,
              text_column=a.text_column, label_column=a.label_column, batch_size=a.batch_size)
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from uehead.evaluation.evaluate import evaluate_bundle

    evaluate_bundle(a.bundle, a.data, split=a.split, json_out=a.json, plots=not a.no_plots,
                    max_rows=a.max_rows, text_column=a.text_column, label_column=a.label_column)
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    from uehead.bench import run_bench

    run_bench(a.bundle, json_out=a.json, checkpoint=a.checkpoint, repeats=a.repeats)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uehead", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"uehead {__version__}")
    sub = p.add_subparsers(dest="verb", required=True)

    t = sub.add_parser("train", help="LoRA fine-tune, merge, train uncertainty heads -> checkpoint")
    t.add_argument("--model", required=True, help="minilm | smollm2 | path to a local Hugging Face model folder")
    t.add_argument("--data", required=True, help="rotten_tomatoes | path to a dataset folder")
    t.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    t.add_argument("--heads", type=_csv, default=("adue", "alien"), help="comma list of adue,alien")
    t.add_argument("--max-train", type=int, default=None, help="cap on LoRA training rows")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--max-length", type=int, default=128)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("export", help="checkpoint -> validated ONNX bundle")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("bundle", type=Path)
    e.add_argument("--int8", action="store_true", help="dynamically quantise the backbone (per-channel int8)")
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--data", default=None, help="dataset to measure int8 deltas on (rotten_tomatoes | PATH)")
    e.add_argument("--default-head", default=None, help="adue | alien | sr: which score fills `uncertainty`")
    e.set_defaults(func=_cmd_export)

    v = sub.add_parser("verify", help="check a bundle's checksums and golden outputs (torch-free)")
    v.add_argument("bundle", type=Path)
    v.set_defaults(func=_cmd_verify)

    r = sub.add_parser("predict", help="batch prediction over a JSONL / CSV / Parquet file (torch-free)")
    r.add_argument("bundle", type=Path)
    r.add_argument("--input", required=True, type=Path)
    r.add_argument("--output", required=True, type=Path)
    r.add_argument("--text-column", default="text")
    r.add_argument("--id-column", default=None)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--resume", action="store_true")
    r.add_argument("--engine", default="local", choices=("local", "ray"))
    r.add_argument("--num-workers", type=int, default=None)
    r.add_argument("--address", default=None)
    r.set_defaults(func=_cmd_predict)

    ev = sub.add_parser("evaluate", help="uncertainty metrics of every score a bundle has (torch-free)")
    ev.add_argument("bundle", type=Path)
    ev.add_argument("--data", required=True,
                    help="rotten_tomatoes | dataset folder | labelled .jsonl/.csv/.parquet file")
    ev.add_argument("--text-column", default="text", help="text column of a labelled file (default: text)")
    ev.add_argument("--label-column", default="label",
                    help="label column of a labelled file, names or ids (default: label)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--json", required=True, type=Path)
    ev.add_argument("--max-rows", type=int, default=None)
    ev.add_argument("--no-plots", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser("calibrate", help="fit P(error), risk-controlled abstention and conformal sets on labelled "
                                         "rows -> a calibrated copy of the bundle (torch-free)")
    c.add_argument("bundle", type=Path)
    c.add_argument("--data", required=True,
                   help="rotten_tomatoes | dataset folder | .jsonl/.csv/.parquet file with text and label columns")
    c.add_argument("--split", default="valid", help="split of a dataset (never one the model was trained on)")
    c.add_argument("--out", required=True, type=Path, help="folder of the calibrated bundle to write (must not exist)")
    c.add_argument("--score", default=None, help="score to calibrate (default: the bundle's default kind)")
    c.add_argument("--risk", type=_floats, default=(0.05, 0.1), help="risk levels, the first is the default")
    c.add_argument("--delta", type=float, default=0.1, help="P(error rate among accepted > risk) allowed")
    c.add_argument("--coverage", type=_floats, default=(0.9, 0.95), help="coverage levels, the first is the default")
    c.add_argument("--method", default="lac", choices=("lac", "aps"))
    c.add_argument("--class-conditional", action="store_true", help="one conformal quantile per class (Mondrian)")
    c.add_argument("--text-column", default="text")
    c.add_argument("--label-column", default="label")
    c.add_argument("--batch-size", type=int, default=32)
    c.set_defaults(func=_cmd_calibrate)

    b = sub.add_parser("bench", help="per-stage CPU timings, overhead of the head, peers")
    b.add_argument("bundle", type=Path)
    b.add_argument("--json", required=True, type=Path)
    b.add_argument("--checkpoint", type=Path, default=None, help="checkpoint for the PyTorch / optimum peers")
    b.add_argument("--repeats", type=int, default=7)
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UeheadError, FileNotFoundError, FileExistsError, ImportError, ValueError) as exc:
        print(f"uehead {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
