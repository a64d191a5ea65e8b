"""Score a folder of Parquet files on a Ray cluster with uehead's callable class (Ray Data ``map_batches``).

    python examples/ray_map_batches.py BUNDLE INPUT_DIR OUTPUT_DIR [--address auto] [--workers 2] [--threads 1]

Each worker is a Ray actor that loads the bundle once (by path: the bundle must sit at the same
path on every node) and runs ONNX Runtime with ``--threads`` intra-op threads, the CPUs it reserves.
The output is a folder of Parquet files (Ray writes one per block) with the input's columns plus
the prediction columns of ``uehead predict`` for the same bundle (label, label_id, probs,
uncertainty, softmax_response, entropy, a column per score, p_error / accept / prediction_set on a
calibrated bundle, error). Unlike
``uehead predict --engine ray``, rows are not kept in file order across output files: carry an id
column. Tested by tests/runtime/test_ray_data.py.
"""
from __future__ import annotations

import argparse
import sys


def run(bundle: str, input_dir: str, output_dir: str, *, workers: int = 1, threads: int = 1,
        text_column: str = "text", batch_size: int = 256) -> None:
    import ray

    from uehead.runtime.batch_schema import columns_for_bundle
    from uehead.runtime.ray_data import BundlePredictor

    ds = ray.data.read_parquet(input_dir)
    taken = [c for c in columns_for_bundle(bundle).names if c in ds.columns()]
    if taken:  # a labelled file: keep the gold columns under other names
        ds = ds.rename_columns({c: f"gold_{c}" for c in taken})
    ds = ds.map_batches(
        BundlePredictor,
        fn_constructor_kwargs={"bundle": bundle, "text_column": text_column},  # threads: from num_cpus
        batch_size=batch_size,
        batch_format="pyarrow",
        num_cpus=threads,
        compute=ray.data.ActorPoolStrategy(size=workers),
    )
    ds.write_parquet(output_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("input_dir")
    p.add_argument("output_dir")
    p.add_argument("--address", default=None, help="auto | ray://HOST:10001 (default: a new local instance)")
    p.add_argument("--workers", type=int, default=1, help="actors, one model copy each (default: 1)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads and CPUs per actor (default: 1)")
    p.add_argument("--text-column", default="text", help="column holding the texts (default: text)")
    a = p.parse_args(argv)

    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=a.address, include_dashboard=False)
    try:
        run(a.bundle, a.input_dir, a.output_dir, workers=a.workers, threads=a.threads, text_column=a.text_column)
    finally:
        if started:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
