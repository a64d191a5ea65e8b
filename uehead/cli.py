"""``uehead`` command line: one verb per stage, each a thin wrapper over a Python function.

    uehead train     -> uehead.training.train
    uehead export    -> uehead.export.export_bundle
    uehead verify    -> uehead.runtime.verify (torch-free)
    uehead predict   -> uehead.runtime.Model.predict_file (torch-free)
    uehead evaluate  -> uehead.evaluation.evaluate.evaluate_bundle (torch-free)
    uehead calibrate -> uehead.calibration.calibrate (torch-free)
    uehead bench     -> uehead.bench.run_bench
    uehead serve     -> uehead.serve.serve (torch-free, the [serve] extra)

Heavy stages are imported only when their verb runs, so ``uehead verify`` works on a
runtime-only install. Errors a user can fix exit with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from uehead import __version__
from uehead.cli_data import add_data_file_arguments, columns, data_options
from uehead.errors import UeheadError
from uehead.token_task import SEQUENCE_CLASSIFICATION, TASKS


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _cmd_train(a: argparse.Namespace) -> int:
    options = data_options(a, split_by_default=True)  # before torch is imported: a bad option fails fast
    from uehead.training import train

    train(model=a.model, data=a.data, out=a.out, heads=a.heads, max_train=a.max_train, epochs=a.epochs,
          max_length=a.max_length, seed=a.seed, device=a.device, batch_size=a.batch_size, task=a.task,
          finetune=a.finetune, protocol=a.protocol, data_options=options)
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from uehead.export import export_bundle

    export_bundle(a.checkpoint, a.bundle, int8=a.int8, opset=a.opset, data=a.data, default_head=a.default_head,
                  fusions=a.fusions, int8_method=a.int8_method, max_length=a.max_length,
                  full_last_layer=a.full_last_layer)
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from uehead.manifest_checksum import read_checksum_file
    from uehead.runtime import verify

    expected = a.expected_sha256
    if expected is not None and Path(expected).is_file():
        expected = read_checksum_file(expected)
    report = verify(a.bundle, expected_sha256=expected)
    print(json.dumps(report, indent=2))
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    if a.engine == "ray":
        if a.resume:
            print("uehead predict: error: --resume works with --engine local only; a Ray job is re-run whole "
                  "(its output appears only when complete).", file=sys.stderr)
            return 2
        from uehead.bundle import read_manifest
        from uehead.runtime.ray_data import predict_file_ray
        from uehead.token_task import is_token_task

        if is_token_task(read_manifest(a.bundle)):
            print("uehead predict: error: token-classification bundles run with --engine local (it keeps the input "
                  "order, error rows and --resume).", file=sys.stderr)
            return 2
        report = predict_file_ray(a.bundle, a.input, a.output, num_workers=a.num_workers, address=a.address,
                                  threads=a.threads, **_job_options(a))
    else:
        from uehead.runtime import load

        model = load(a.bundle, threads=a.threads)
        report = model.predict_file(a.input, a.output, resume=a.resume, **_job_options(a))
    print(f"uehead predict: {report.summary()}", file=sys.stderr)
    return 0


def _job_options(a: argparse.Namespace) -> dict:
    """The options both batch engines take."""
    return {"text_column": a.text_column, "id_column": a.id_column, "keep_columns": a.keep_columns,
            "keep_all_columns": a.keep_all_columns, "batch_size": a.batch_size, "scores": a.scores,
            "distances": a.distances, "risk": a.risk, "coverage": a.coverage}


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma list of numbers, e.g. 0.05,0.1") from None


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from uehead.calibration import calibrate

    options = data_options(a, split_by_default=False)
    calibrate(a.bundle, a.data, out=a.out, split=a.split, score=a.score, risk=a.risk, delta=a.delta,
              coverage=a.coverage, method=a.method, class_conditional=a.class_conditional,
              batch_size=a.batch_size, data_options=options, **columns(a))
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from uehead.evaluation.evaluate import evaluate_bundle

    options = data_options(a, split_by_default=False)
    evaluate_bundle(a.bundle, a.data, split=a.split, json_out=a.json, plots=not a.no_plots,
                    max_rows=a.max_rows, data_options=options, **columns(a))
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    from uehead.bench import run_bench

    run_bench(a.bundle, json_out=a.json, checkpoint=a.checkpoint, repeats=a.repeats)
    return 0


#: ``uehead serve`` options that map one-to-one onto ServeConfig fields: (field, type, help); the
#: help of a field whose default is None says what None means.
_SERVE_OPTIONS = (
    ("host", str, "address to listen on; loopback only by default"),
    ("port", int, "TCP port; 0 picks a free one"),
    ("max_batch_texts", int, "texts merged into one predict call at most"),
    ("max_wait_ms", float, "how long a request waits for others to join its batch"),
    ("threads", int, "ONNX Runtime threads of the backbone per worker (default: the physical cores / "
                     "(workers x inflight batches))"),
    ("workers", int, "server processes, each with its own model"),
    ("max_request_texts", int, "texts per request at most; more get 413"),
    ("max_queue_texts", int, "texts waiting at most; more get 503 with Retry-After"),
    ("max_body_bytes", int, "request body size at most; larger get 413"),
    ("max_connections", int, "open connections at most; more get 503 from uvicorn"),
    ("request_timeout_s", float, "a request not answered in time gets 504"),
    ("predict_batch_size", int, "texts per ONNX Runtime call within a batch"),
    ("inflight_batches", int, "batches predicted at once, one thread each"),
    ("model_name", str, "model name in the /v2/models/<name> paths (default: the bundle folder's name)"),
)


def _cmd_serve(a: argparse.Namespace) -> int:
    from uehead.serve import ServeConfig, serve

    fields = {name: getattr(a, name) for name, _, _ in _SERVE_OPTIONS}
    serve(a.bundle, ServeConfig(**fields, batching=not a.no_batching, access_log=a.access_log))
    return 0


def _add_serve_parser(sub) -> None:
    from uehead.serve.config import DEFAULTS

    s = sub.add_parser("serve", help="HTTP inference server with dynamic batching (torch-free, [serve] extra)")
    s.add_argument("bundle", type=Path, help="bundle folder to serve (`uehead export`, `uehead calibrate`)")
    for name, kind, text in _SERVE_OPTIONS:
        default = getattr(DEFAULTS, name)
        if default is not None:
            text += f" (default: {default:g})" if kind is float else f" (default: {default})"
        s.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=text)
    s.add_argument("--no-batching", action="store_true",
                   help="predict each request alone, for comparison (default: batching on)")
    s.add_argument("--access-log", action="store_true", help="log one line per request (default: off)")
    s.set_defaults(func=_cmd_serve)


def _stack_versions() -> str:
    """``uehead --version``: uehead, Python and the installed stack (package metadata only, no imports)."""
    import platform

    from uehead._extras import installed_versions

    names = ("numpy", "onnxruntime", "tokenizers", "numba", "pyarrow", "ray", "torch", "transformers", "peft",
             "optimum", "onnx", "starlette", "uvicorn")
    found = installed_versions(names)
    stack = ", ".join(f"{n} {v}" for n, v in found.items())
    return f"uehead {__version__}\nPython {platform.python_version()} ({platform.platform()})\n{stack}"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version of uehead and of its stack, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(_stack_versions())
        parser.exit()


def _add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="LoRA fine-tune, merge, train uncertainty heads -> checkpoint")
    t.add_argument("--model", required=True,
                   help="minilm | smollm2 | path to a local Hugging Face model folder (required)")
    t.add_argument("--data", required=True,
                   help="rotten_tomatoes | dataset folder | .csv/.jsonl/.jsonl.gz/.parquet data file of labelled "
                        "texts (label names are sorted into ids) (required)")
    t.add_argument("--out", required=True, type=Path, help="checkpoint folder to write (required)")
    t.add_argument("--heads", type=_csv, default=("adue", "alien"), metavar="A,B",
                   help="comma list of head kinds to train (default: adue,alien)")
    t.add_argument("--max-train", type=int, default=None,
                   help="cap on LoRA training rows (default: every training row)")
    t.add_argument("--epochs", type=int, default=None,
                   help="most LoRA epochs; the best validation epoch is kept (default: the protocol's, "
                        "uehead 3, authors 30)")
    t.add_argument("--max-length", type=int, default=128, help="tokens per text at most (default: 128)")
    t.add_argument("--batch-size", type=int, default=64, help="texts per training step (default: 64)")
    t.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to train; auto = cuda when available (default: auto)")
    t.add_argument("--task", default=SEQUENCE_CLASSIFICATION, choices=TASKS,
                   help="one label per text, or one BIO tag per word ({tokens, tags} rows; NER) "
                        f"(default: {SEQUENCE_CLASSIFICATION})")
    t.add_argument("--finetune", default="lora", choices=("lora", "none"),
                   help="lora: LoRA fine-tune --model, then merge; none: --model is an already fine-tuned "
                        "classifier folder; skip LoRA and fit only the heads (default: lora)")
    t.add_argument("--protocol", default="uehead", choices=("uehead", "authors"),
                   help="how heads are trained: uehead (fit/select on valid halves) or authors (the AdUE "
                        "authors' recipe: train-split features, early stopping on valid) (default: uehead)")
    add_data_file_arguments(t, splits="the file is split per class by --valid-fraction / --test-fraction, "
                                       "seeded by --split-seed")
    t.set_defaults(func=_cmd_train)


def _add_export_parser(sub) -> None:
    e = sub.add_parser("export", help="checkpoint -> validated ONNX bundle (progress on stderr)")
    e.add_argument("checkpoint", type=Path, help="checkpoint folder written by `uehead train`")
    e.add_argument("bundle", type=Path, help="bundle folder to write")
    e.add_argument("--int8", action="store_true",
                   help="dynamically quantise the backbone (per-channel int8) (flag; default: fp32)")
    e.add_argument("--int8-method", choices=("dynamic", "static"), default="dynamic",
                   help="with --int8: dynamic (activation scales per batch) | static (QDQ, scales calibrated on 200 "
                        "train texts of --data) (default: dynamic, the fastest measured)")
    e.add_argument("--fusions", action="store_true",
                   help="apply ONNX Runtime's transformer fusions (Attention, SkipLayerNormalization, ...) to the "
                        "backbone of encoder models (flag; default: off, measured slower on AVX-512 CPUs)")
    e.add_argument("--full-last-layer", action="store_true",
                   help="keep every row of the last encoder layer (flag; default: a backbone that pools the first "
                        "token computes only that row there, checked against the full graph)")
    e.add_argument("--max-length", type=int, default=None,
                   help="tokenizer max_length of the bundle, up to the backbone's positions (default: the "
                        "checkpoint's training max_length)")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset of the graphs (default: 17)")
    e.add_argument("--data", default=None,
                   help="dataset whose test split measures the int8 deltas, rotten_tomatoes | PATH (default: none, "
                        "deltas not measured)")
    e.add_argument("--default-head", default=None,
                   help="adue | alien | sr: which score fills `uncertainty` (default: adue when trained, else alien, "
                        "else sr)")
    e.set_defaults(func=_cmd_export)


def _add_verify_parser(sub) -> None:
    v = sub.add_parser("verify", help="check a bundle's checksums and golden outputs (torch-free)")
    v.add_argument("bundle", type=Path, help="bundle folder to check")
    v.add_argument("--expected-sha256", default=None, metavar="HEX|FILE",
                   help="the sha256 manifest.json must have, or a sha256sum-style file holding it "
                        "(default: not checked)")
    v.set_defaults(func=_cmd_verify)


def _add_predict_parser(sub) -> None:
    r = sub.add_parser("predict", help="batch prediction over a JSONL / CSV / Parquet file (torch-free)")
    r.add_argument("bundle", type=Path, help="bundle folder (`uehead export`, `uehead calibrate`)")
    r.add_argument("--input", required=True, type=Path,
                   help="input file; its format follows the suffix: .jsonl/.ndjson, .csv, .parquet/.pq (required)")
    r.add_argument("--output", required=True, type=Path,
                   help="output file, format by suffix as --input; written as OUTPUT.partial and renamed "
                        "when complete (required)")
    r.add_argument("--text-column", default="text", help="input column holding the texts (default: text)")
    r.add_argument("--id-column", default=None,
                   help="input column copied to the output as the id (default: 'id' when the input has it, "
                        "else row numbers in a 'row' column; '' = row numbers); ids may repeat (counted)")
    r.add_argument("--keep-columns", type=_csv, default=(), metavar="A,B",
                   help="input columns passed through to the output (one named like an output column "
                        "gets an 'input_' prefix) (default: none)")
    r.add_argument("--keep-all-columns", action="store_true",
                   help="pass every input column but the text through (JSONL: the first row's keys) "
                        "(flag; default: off)")
    r.add_argument("--scores", type=_csv, default=None, metavar="A,B",
                   help="score columns to write: sr, entropy, the bundle's heads (adue, alien), md, rmd "
                        "(default: every score the bundle has; md/rmd with --distances)")
    r.add_argument("--distances", action="store_true",
                   help="add the md and rmd columns (the bundle needs baselines) (flag; default: off)")
    r.add_argument("--risk", type=float, default=None,
                   help="calibrated bundle: the stored risk level that fills `accept` (default: the "
                        "calibration's default level)")
    r.add_argument("--coverage", type=float, default=None,
                   help="calibrated bundle: the stored coverage level that fills `prediction_set` "
                        "(default: the calibration's default level)")
    r.add_argument("--batch-size", type=int, default=32, help="texts per ONNX Runtime call (default: 32)")
    r.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime threads (default: the physical cores; Ray: 1 per worker)")
    r.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same job (same input, bundle, options) from its "
                        "last recorded chunk: no row is repeated or skipped; a different job is refused "
                        "(flag; default: off; --engine local only)")
    r.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local = this process; ray = a pool of Ray actors, needs pip install 'uehead[ray]' "
                        "and the bundle at the same path on every node (default: local)")
    r.add_argument("--num-workers", type=int, default=None,
                   help="Ray actors, one model copy each (default: as many as the cluster's CPUs allow)")
    r.add_argument("--address", default=None,
                   help="Ray cluster: auto | ray://HOST:10001 (default: RAY_ADDRESS, else a new local instance)")
    r.set_defaults(func=_cmd_predict)


def _add_evaluate_parser(sub) -> None:
    ev = sub.add_parser("evaluate", help="uncertainty metrics of every score a bundle has (torch-free)")
    ev.add_argument("bundle", type=Path, help="bundle folder to evaluate")
    ev.add_argument("--data", required=True,
                    help="rotten_tomatoes | dataset folder | labelled .jsonl/.csv/.parquet file, labels as "
                         "names or ids (required)")
    ev.add_argument("--split", default="test",
                    help="split of a dataset; of a data file when a split option below is given (default: test)")
    add_data_file_arguments(ev, splits="without a split option every row of a data file is scored; give the "
                                        "training's split options to score only its --split rows")
    ev.add_argument("--json", required=True, type=Path, help="metrics JSON to write; plots go next to it (required)")
    ev.add_argument("--max-rows", type=int, default=None, help="score only the first N rows (default: all)")
    ev.add_argument("--no-plots", action="store_true", help="skip the PNG plots (flag; default: plots drawn)")
    ev.set_defaults(func=_cmd_evaluate)


def _add_calibrate_parser(sub) -> None:
    c = sub.add_parser("calibrate", help="fit P(error), risk-controlled abstention and conformal sets on labelled "
                                         "rows -> a calibrated copy of the bundle (torch-free)")
    c.add_argument("bundle", type=Path, help="bundle folder to calibrate (never changed in place)")
    c.add_argument("--data", required=True,
                   help="rotten_tomatoes | dataset folder | .jsonl/.csv/.parquet file with text and label "
                        "columns, labels as names or ids (required)")
    c.add_argument("--split", default="valid",
                   help="split of a dataset, or of a data file when a split option below is given; never one the "
                        "model was trained on (default: valid)")
    c.add_argument("--out", required=True, type=Path,
                   help="folder of the calibrated bundle to write, must not exist (required)")
    c.add_argument("--score", default=None, help="score to calibrate (default: the bundle's default kind)")
    c.add_argument("--risk", type=_floats, default=(0.05, 0.1), metavar="R1,R2",
                   help="risk levels, the first is the default (default: 0.05,0.1)")
    c.add_argument("--delta", type=float, default=0.1,
                   help="P(error rate among accepted > risk) allowed (default: 0.1)")
    c.add_argument("--coverage", type=_floats, default=(0.9, 0.95), metavar="C1,C2",
                   help="coverage levels, the first is the default (default: 0.9,0.95)")
    c.add_argument("--method", default="lac", choices=("lac", "aps"),
                   help="conformal score of the prediction sets (default: lac)")
    c.add_argument("--class-conditional", action="store_true",
                   help="one conformal quantile per class, Mondrian (flag; default: one for all classes)")
    add_data_file_arguments(c, splits="without a split option every row of a data file is used; give the "
                                       "training's split options to use only its --split rows")
    c.add_argument("--batch-size", type=int, default=32, help="texts per ONNX Runtime call (default: 32)")
    c.set_defaults(func=_cmd_calibrate)


def _add_bench_parser(sub) -> None:
    b = sub.add_parser("bench", help="per-stage CPU timings, overhead of the head, peers (progress on stderr)")
    b.add_argument("bundle", type=Path, help="bundle folder to measure")
    b.add_argument("--json", required=True, type=Path, help="results JSON to write (required)")
    b.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint for the PyTorch / optimum peers (default: none, peers skipped)")
    b.add_argument("--repeats", type=int, default=7, help="timed repeats per cell, the median is kept (default: 7)")
    b.set_defaults(func=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uehead", description=__doc__.splitlines()[0])
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="verb", required=True)
    for add in (_add_train_parser, _add_export_parser, _add_verify_parser, _add_predict_parser,
                _add_evaluate_parser, _add_calibrate_parser, _add_bench_parser):
        add(sub)
    _add_serve_parser(sub)
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
