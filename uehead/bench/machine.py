"""What a benchmark ran on: CPU, threads, versions and the load average (torch-free).

On a shared machine timings are only comparable with the load they ran under, so every result
records the load average at its start and end.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from uehead import __version__
from uehead._extras import installed_versions

__all__ = ["cpu_name", "loadavg", "machine_info", "timestamp"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()`` (may be empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def machine_info(threads: int) -> dict[str, Any]:
    versions = installed_versions(("onnxruntime", "numba", "tokenizers"))  # metadata only: no imports
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "platform": platform.platform(), "uehead": __version__,
            "onnxruntime": versions.get("onnxruntime"), "numba": versions.get("numba"),
            "tokenizers": versions.get("tokenizers"), "numpy": np.__version__,
            "loadavg_start": loadavg(), "started": timestamp()}
