"""The one place that builds ONNX Runtime sessions (fastembed style: a few explicit knobs).

Every session of the runtime (backbone, head) is built by :func:`make_session`. It never
registers custom-op libraries: a bundle can only use operators ONNX Runtime ships with.
"""
from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

__all__ = ["make_session", "default_threads", "GRAPH_OPTIMIZATION_LEVELS"]

#: Names accepted by ``graph_optimization`` and the ONNX Runtime level each one means.
GRAPH_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}


def default_threads() -> int:
    """Intra-op threads by default: the physical cores this process may use.

    The CPUs of the affinity mask (containers, ``taskset``), counted as physical cores through
    Linux sysfs topology (hyper-threads share a core), capped by a cgroup v2 CPU quota
    (``cpu.max``); ``os.cpu_count()`` where that information is missing. At least 1.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    count = _physical_cores(cpus) or len(cpus) or os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, quota)
    return max(1, int(count))


def _physical_cores(cpus: list[int]) -> int | None:
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            return None
    return len(cores) or None


def _cgroup_cpu_quota() -> int | None:
    """ceil(quota / period) from /sys/fs/cgroup/cpu.max, or None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None  # no cgroup v2, or "max" (unlimited)


def make_session(
    path: str | os.PathLike,
    *,
    threads: int | None = None,
    inter_op_threads: int = 1,
    graph_optimization: str = "all",
    providers: list | tuple | None = None,
    execution_mode: str = "sequential",
) -> ort.InferenceSession:
    """Build an ``onnxruntime.InferenceSession`` for the ONNX file at ``path``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads; ``None`` means :func:`default_threads` (physical cores).
        inter_op_threads: threads across independent graph nodes (only used by "parallel").
        graph_optimization: one of ``"disable" | "basic" | "extended" | "all"``.
        providers: ONNX Runtime execution providers (names or ``(name, options)`` tuples);
            ``None`` means ``["CPUExecutionProvider"]``.
        execution_mode: ``"sequential"`` or ``"parallel"``.

    Raises:
        ValueError: a knob has a value ONNX Runtime does not know (the message lists the valid ones).
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX file not found; pass the path of an existing .onnx file.")
    if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
        raise ValueError(f"graph_optimization={graph_optimization!r}; use one of {sorted(GRAPH_OPTIMIZATION_LEVELS)}.")
    if execution_mode not in _EXECUTION_MODES:
        raise ValueError(f"execution_mode={execution_mode!r}; use one of {sorted(_EXECUTION_MODES)}.")
    if threads is None:
        threads = default_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads={threads!r}; pass a positive int or None (physical cores).")
    if not isinstance(inter_op_threads, int) or isinstance(inter_op_threads, bool) or inter_op_threads < 1:
        raise ValueError(f"inter_op_threads={inter_op_threads!r}; pass a positive int.")
    if providers is None:
        providers = ["CPUExecutionProvider"]
    available = set(ort.get_available_providers())
    for p in providers:
        name = p[0] if isinstance(p, (tuple, list)) else p
        if name not in available:
            raise ValueError(f"execution provider {name!r} is not available in this onnxruntime build; "
                             f"available: {sorted(available)}.")

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = GRAPH_OPTIMIZATION_LEVELS[graph_optimization]
    options.execution_mode = _EXECUTION_MODES[execution_mode]
    options.log_severity_level = 3  # errors only: ORT's warnings are noise for users
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
