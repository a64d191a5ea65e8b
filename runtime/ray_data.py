"""Distributed batch prediction on Ray Data (``pip install 'uehead[ray]'``).

Two entry points:

* :class:`BundlePredictor`, a callable class for ``ray.data.Dataset.map_batches``: each actor loads
  the bundle once, by path, in ``__init__`` (only strings cross process boundaries), sizes ONNX
  Runtime's intra-op threads from the CPUs Ray gave the actor, and adds the prediction columns of
  the single-process job (:mod:`uehead.runtime.batch_schema`: ``label``, ``label_id``, ``probs``,
  ``uncertainty``, ``softmax_response``, ``entropy``, a column per score, the decisions of a
  calibrated bundle, ``error``) to pandas or pyarrow batches::

      ds = ray.data.read_parquet("/shared/reviews/")
      ds = ds.map_batches(BundlePredictor, fn_constructor_kwargs={"bundle": "/shared/bundle"},
                          batch_size=256, batch_format="pyarrow", num_cpus=2,
                          compute=ray.data.ActorPoolStrategy(size=8))

* :func:`predict_file_ray` (``uehead predict ... --engine ray``): one JSONL / CSV / Parquet file read
  through Ray Data (a datasource wrapping the batch job's own readers, see
  :mod:`uehead.runtime._ray_source`), predicted by a pool of such actors, written by the driver as
  ONE output file with the contract of :func:`uehead.runtime.batch.predict_file`: exactly the input's
  rows in the input's order, the same id / prediction / error columns, atomic (``<output>.partial``
  renamed at the end), through the local job's own loop (:mod:`uehead.runtime.batch_job`). Order is
  explicit: every row carries its row number, the dataset runs with ``preserve_order``, and the
  driver checks the numbers arrive as 0, 1, 2, ... There is no resume: a failed run leaves no output
  and is re-run whole.

Ray, pandas and pyarrow are imported lazily; without them an ImportError names the extra to install.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from uehead.runtime.batch_job import BatchJob, BatchReport, IdCounter, check_job, run_job
from uehead.runtime.batch_schema import columns_for_bundle, columns_for_model, predict_columns, prediction_arrow_schema
from uehead.runtime.batch_sinks import BufferedSink
from uehead.runtime.model import BLOCK_ROWS

__all__ = ["BundlePredictor", "actor_threads", "predict_file_ray", "require_ray"]

INSTALL_HINT = "pip install 'uehead[ray]' (pin the tested stack with: -c constraints.txt)"
#: The driver hands rows to the output file in pieces of at least this many.
WRITE_ROWS = 8192


def require_ray():
    """Import ``ray`` and ``ray.data`` (plus pandas, pyarrow) or raise ImportError naming the extra."""
    try:
        import pandas  # noqa: F401  (Ray Data's pandas batches)
        import pyarrow  # noqa: F401
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(f"the Ray engine needs ray[data], pandas and pyarrow ({exc.name} is not installed). "
                          f"Install them with: {INSTALL_HINT}") from exc
    return ray


def actor_threads() -> int | None:
    """Intra-op threads for a model built in this process: the CPUs Ray assigned to this actor or
    task (rounded down, at least 1); 1 in a Ray actor given no CPU; None outside Ray (the runtime's
    default, the machine's physical cores)."""
    try:
        import ray
    except ImportError:
        return None
    if not ray.is_initialized():
        return None
    ctx = ray.get_runtime_context()
    cpus = ctx.get_assigned_resources().get("CPU")
    if cpus:
        return max(1, int(cpus))
    return 1 if ctx.get_actor_id() is not None else None


class BundlePredictor:
    """Callable class for ``Dataset.map_batches``: adds the prediction columns to each batch.

    Args:
        bundle: path of the bundle folder as the workers see it (shared storage, or the same path
            on every node). Loaded once per actor.
        text_column: the column holding the texts. A batch without it gets an error on every row.
        batch_size: texts per ONNX Runtime call (Ray's batch, ``map_batches(batch_size=)``, may be larger).
        threads: ONNX Runtime intra-op threads; None = the actor's CPU allotment (``num_cpus`` of
            ``map_batches``): Ray's ``OMP_NUM_THREADS`` does not reach ONNX Runtime.
        keep_columns: input columns to return (None = all). Absent ones come back as nulls.
        empty_is_missing: count empty strings as missing texts (how the batch job reads CSV cells).
        error_column: a column of errors found upstream (null = none); rows with one are not
            predicted and keep that message in ``error``.
        scores, distances, risk, coverage: which score and decision columns
            (:func:`~uehead.runtime.batch_schema.select_columns`; default: every score the bundle
            has, and the default decision levels of a calibrated bundle).

    Returns batches of the input's type (pandas DataFrame or pyarrow Table; numpy dict batches come
    back as pyarrow) with ``self.columns.names`` (:class:`~uehead.runtime.batch_schema.OutputColumns`)
    appended. Rows whose text is missing, null or not a string keep their place with null predictions
    and a message in ``error``.
    """

    def __init__(self, bundle: str | os.PathLike, *, text_column: str = "text", batch_size: int = 32,
                 threads: int | None = None, keep_columns: list[str] | None = None,
                 empty_is_missing: bool = False, error_column: str | None = None,
                 scores: list[str] | None = None, distances: bool = False, risk: float | None = None,
                 coverage: float | None = None):
        from uehead.runtime import load

        self.threads = threads if threads is not None else actor_threads()
        if self.threads is not None:
            # tokenizers encodes batches on a rayon pool sized to all the node's cores unless told.
            os.environ.setdefault("RAYON_NUM_THREADS", str(self.threads))
        self.model = load(bundle, threads=self.threads)
        self.columns = columns_for_model(self.model, scores=None if scores is None else tuple(scores),
                                         distances=distances, risk=risk, coverage=coverage)
        self.text_column, self.batch_size = text_column, batch_size
        self.keep_columns = None if keep_columns is None else list(keep_columns)
        self.empty_is_missing, self.error_column = empty_is_missing, error_column

    def __call__(self, batch):
        import pandas as pd
        import pyarrow as pa

        if isinstance(batch, dict):  # numpy batches
            batch = pa.table({k: list(v) if getattr(v, "ndim", 1) > 1 else v for k, v in batch.items()})
        if isinstance(batch, pd.DataFrame):
            names, n = list(batch.columns), len(batch)
            values = lambda c: [None if v is pd.NA else v for v in batch[c].tolist()]  # nullable dtypes' NA
        elif isinstance(batch, pa.Table):
            names, n = batch.column_names, batch.num_rows
            values = lambda c: batch.column(c).to_pylist()
        else:
            raise TypeError(f"BundlePredictor takes pandas or pyarrow batches, got {type(batch).__name__}; "
                            "pass batch_format='pyarrow' (or 'pandas') to map_batches.")
        keep = names if self.keep_columns is None else self.keep_columns
        added = self.columns.names
        clash = [c for c in added if c in keep]
        if clash:
            raise ValueError(f"the input already has column(s) {clash}, which the predictions would overwrite; "
                             f"rename or drop them first, e.g. ds.rename_columns({{{clash[0]!r}: 'gold_{clash[0]}'}}).")
        texts = values(self.text_column) if self.text_column in names else [None] * n
        if self.empty_is_missing:
            texts = [None if t == "" else t for t in texts]
        upstream = values(self.error_column) if self.error_column is not None and self.error_column in names else None
        cols = predict_columns(self.model, texts, [None] * n, text_column=self.text_column,
                               batch_size=self.batch_size, upstream_errors=upstream, columns=self.columns)
        schema = prediction_arrow_schema(columns=self.columns)
        new = {name: pa.array(cols[name], type=schema.field(name).type) for name in added}
        if isinstance(batch, pd.DataFrame):
            out = pd.DataFrame({c: batch[c] if c in names else None for c in keep}, index=batch.index)
            for name, arr in new.items():  # Arrow-backed columns keep nulls and types (label_id stays int)
                out[name] = pd.arrays.ArrowExtensionArray(arr)
            return out
        arrays = [batch.column(c) if c in names else pa.nulls(n) for c in keep] + list(new.values())
        return pa.Table.from_arrays(arrays, names=[*keep, *added])


def _start(ray, address: str | None, cpus_needed: int | None) -> bool:
    """Connect to Ray unless already connected; True when this call started (and must stop) it."""
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    if address is None and not os.environ.get("RAY_ADDRESS") and cpus_needed is not None:
        # A new local instance: at least the CPUs the requested workers reserve (logical CPUs;
        # asking for more than the machine has oversubscribes it, which the user asked for).
        kwargs["num_cpus"] = max(os.cpu_count() or 1, cpus_needed)
    ray.init(address=address, **kwargs)
    return True


def predict_file_ray(bundle: str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike, *,
                     text_column: str = "text", id_column: str | None = None, keep_columns: Iterable[str] = (),
                     keep_all_columns: bool = False, batch_size: int = 32, num_workers: int | None = None,
                     address: str | None = None, threads: int | None = None,
                     progress: bool | Callable[[int], object] = True, chunk_rows: int = BLOCK_ROWS,
                     scores: Iterable[str] | None = None, distances: bool = False, risk: float | None = None,
                     coverage: float | None = None) -> BatchReport:
    """Predict every row of ``input`` on Ray Data into ONE ``output`` file (format by suffix).

    Same rows, order, columns (``id_column``, ``keep_columns``, ``keep_all_columns``, ``scores``,
    ``distances``, ``risk`` and ``coverage`` included), error rows and duplicate-id count as
    :func:`uehead.runtime.batch.predict_file`.

    Args:
        bundle: bundle folder, at the same path on every node that runs a worker.
        num_workers: actors, one model copy each; None = as many as the cluster's CPUs allow at
            ``threads`` CPUs each.
        address: None = the Ray instance this process is connected to, else the one ``RAY_ADDRESS``
            names, else a new local instance; ``"auto"`` = the cluster running on this machine
            (``ray start --head``); ``"ray://host:10001"`` = a remote cluster through Ray Client.
        threads: ONNX Runtime intra-op threads per worker, also the CPUs each reserves (default 1).
        progress: True = a progress bar on stderr (rows/s, ETA); a callable is called with the rows
            written so far each time a block arrives (for monitoring); False = silent.
        chunk_rows: rows per Ray block and per worker call (about: Ray cuts blocks by bytes). The
            default, the runtime's block, is big enough that Ray's per-block cost is small next to
            the model's, small enough that a few thousand rows keep several workers busy.

    The input is read on the driver's node (the Ray Client server's for ``ray://``); the workers get
    its rows through Ray's object store. The driver writes the output. A Ray instance this call
    started is shut down before it returns.
    """
    bundle = Path(bundle).resolve()
    # A bad bundle or column option fails here, not later inside every actor; the actors build the
    # same columns from the same bundle and options.
    scores = None if scores is None else tuple(scores)
    columns = columns_for_bundle(bundle, scores=scores, distances=distances, risk=risk, coverage=coverage)
    options = {"scores": scores, "distances": distances, "risk": risk, "coverage": coverage}
    job = check_job(input, output, text_column=text_column, id_column=id_column, batch_size=batch_size,
                    chunk_rows=chunk_rows, keep_columns=keep_columns, keep_all_columns=keep_all_columns,
                    columns=columns)
    for name, value in (("num_workers", num_workers), ("threads", threads)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name}={value!r}; pass a positive integer (or leave it out).")
    # A missing column or unreadable first rows fail here with the batch job's own messages.
    first = job.read()
    next(first, None)
    first.close()
    ray = require_ray()

    cpus_per_worker = threads or 1
    started = _start(ray, address, None if num_workers is None else num_workers * cpus_per_worker)
    try:
        workers = _pool_size(ray, num_workers, cpus_per_worker)
        ds = _dataset(ray, job, bundle, workers=workers, cpus_per_worker=cpus_per_worker, options=options)
        ids = IdCounter() if job.id_column else None
        pieces = _predicted_blocks(ds, job, ids)
        return run_job(job, BufferedSink(job.sink(), WRITE_ROWS), pieces, progress=progress,
                       desc=f"{job.input.name} (ray x{workers})", ids=ids)
    finally:
        if started:
            ray.shutdown()


def _pool_size(ray, num_workers: int | None, cpus_per_worker: int) -> int:
    """The actors to start: ``num_workers``, or as many as the cluster's CPUs hold (warns on too many)."""
    cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
    workers = num_workers or max(1, cluster_cpus // cpus_per_worker)
    if workers * cpus_per_worker > cluster_cpus:
        print(f"uehead: {workers} workers x {cpus_per_worker} CPUs exceed the cluster's {cluster_cpus} CPUs; "
              "workers start as an autoscaler adds nodes (on a fixed cluster, lower --num-workers).",
              file=sys.stderr)
    return workers


def _dataset(ray, job: BatchJob, bundle: Path, *, workers: int, cpus_per_worker: int, options: dict):
    """read (one streaming task on the driver's node) -> a pool of ``workers`` BundlePredictor actors."""
    from uehead.runtime._ray_source import ERROR, ID, ROW, TEXT, FileRowsDatasource, kept_column, read_blocks

    # Ray cuts blocks by bytes: aim at the size of the first chunk's block, so a block holds about
    # chunk_rows rows and each worker call gets one block.
    head = read_blocks(str(job.input), job.input_format, job.text_column, job.id_column, job.chunk_rows,
                       job.keep_columns)
    first = next(head, None)
    head.close()
    # The read reserves no CPU: it is light next to inference, and a read waiting for a CPU held by
    # the workers would stall the pipeline.
    source = FileRowsDatasource(job.input.resolve(), job.input_format, text_column=job.text_column,
                                id_column=job.id_column, chunk_rows=job.chunk_rows, keep_columns=job.keep_columns)
    passed = [ROW] + ([ID] if job.id_column else []) + [kept_column(i) for i in range(len(job.keep_columns))]
    ds = ray.data.read_datasource(source, num_cpus=0, override_num_blocks=1)
    ds = ds.map_batches(
        BundlePredictor, batch_size=None, batch_format="pyarrow", num_cpus=cpus_per_worker,
        compute=ray.data.ActorPoolStrategy(size=workers),
        fn_constructor_kwargs={"bundle": str(bundle), "text_column": TEXT, "batch_size": job.batch_size,
                               "threads": cpus_per_worker, "error_column": ERROR,
                               "keep_columns": passed, **options})
    ds.context.execution_options.preserve_order = True  # blocks leave in input order
    ds.context.enable_progress_bars = False
    ds.context.target_max_block_size = first.nbytes if first is not None and first.nbytes else 1 << 20
    return ds


def _predicted_blocks(ds, job: BatchJob, ids: IdCounter | None):
    """The output columns of each predicted block of the dataset, in order (checked); their ids
    counted into ``ids`` (None: row numbers)."""
    rows = 0
    with _quiet_ray_data():
        # No prefetch: Ray's executor runs ahead anyway, and a prefetching iterator holds each block
        # back until the next one arrives.
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            cols = _block_columns(block, rows, job)
            if ids is not None:
                ids.add(cols[job.id_name])
            yield cols
            rows += block.num_rows


def _block_columns(block, start: int, job: BatchJob) -> dict[str, list]:
    """The output columns of one predicted block that must hold rows ``start, start + 1, ...``.

    Anything else (a lost, repeated or reordered block) raises before the output is complete, so no
    wrong file appears. Without an id column the ids are the row numbers; JSON Lines values arrive
    JSON-encoded (see :mod:`uehead.runtime._ray_source`).
    """
    from uehead.runtime._ray_source import ID, ROW, kept_column

    numbers = block.column(ROW).to_pylist()
    if numbers != list(range(start, start + len(numbers))):
        raise RuntimeError(f"Ray returned rows {numbers[:3]}... where rows {start}... were due: the output "
                           "would not match the input's order, so it was not written.")

    def values(name: str) -> list:
        got = block.column(name).to_pylist()
        return [json.loads(v) for v in got] if job.input_format == "jsonl" else got

    cols = {job.id_name: values(ID) if job.id_column else numbers}
    cols.update({name: values(kept_column(i)) for i, name in enumerate(job.kept)})
    return {**cols, **{name: block.column(name).to_pylist() for name in job.columns.names}}


@contextlib.contextmanager
def _quiet_ray_data():
    """Ray Data without its per-run INFO lines (plan, start, finish) and two notes that do not apply:
    its progress bars are off (uehead shows its own), and one read task cannot feed several workers
    (that task streams many blocks). Its other warnings and errors still show."""
    from ray.util.debug import log_once

    log_once("ray_data_progress_manager_disabled")
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)
