"""Ahead-of-time build of the score kernels: a small extension module that needs only numpy.

Why: ``import numba`` plus loading JIT-cached kernels is a large share of a fresh process's start
time and memory (``benchmarks/bench_coldstart_kernels.py`` measures it). ``numba.pycc`` compiles
the very same functions (``_kernels_impl.py``) into a plain CPython extension once; importing it
afterwards never imports numba or llvmlite.

Where: ``<cache>/kernels/aot-<key>/_uehead_kernels_aot<EXT_SUFFIX>`` with ``<cache>`` =
``$UEHEAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/uehead``, else ``~/.cache/uehead``. The key
hashes the kernel source, the numba/llvmlite/numpy versions, the Python ABI, the platform and
the CPU (the code is compiled for the host CPU, so a cache shared between different machines
gets one build per CPU model instead of crashing on missing instructions).

How: built once, by ``python -m uehead.runtime.kernels --build`` or automatically in a child
process the first time the kernels are used; the build holds a lock file so concurrent
processes wait for one build, writes into a temporary folder and renames the finished file into
place (a crash never leaves a half-written module). A failed build leaves ``build-failed.txt``
with the reason; later processes then use the JIT path without retrying, until an explicit
``python -m uehead.runtime.kernels --build`` succeeds. Needs a C compiler, the Python headers
and setuptools; ``numba.pycc`` is pending deprecation since numba 0.57 but still shipped and
working in 0.68 (it warns NumbaPendingDeprecationWarning; numba has announced no removal date).

This module imports only the standard library at import time (numba only inside ``build``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import sysconfig
import time
from pathlib import Path

# argparse, json, platform, shutil, subprocess, tempfile: imported where used (cold start).

MODULE_NAME = "_uehead_kernels_aot"
#: Exported symbols: ``<entry>_<f4|f8>``; argument order as in ``_kernels_impl``.
SIGNATURES = {
    "task": "i8({x}[:, ::1], f4[:, ::1], f4[::1], f4[::1], f4[::1])",
    "adue": "i8({x}[:, ::1], f8, f4[::1])",
    "alien": "i8({x}[:, ::1], f4[::1])",
    "linear_head": "i8({x}[:, ::1], f4[:, ::1], f4[::1], i8[::1], i8, i4[::1], f8[::1], f4[:, ::1], i8[::1], "
                   "f4[:, ::1])",
}
DTYPES = ("f4", "f8")
#: Head-kind codes of the fused ``linear_head`` kernel's ``kinds`` argument (here, not in the numba
#: source, so that the runtime can name them without importing numba).
KIND_ADUE = 0
KIND_ALIEN = 1
FAILED_MARKER = "build-failed.txt"
_HERE = Path(__file__).resolve().parent
_SOURCES = (_HERE / "_kernels_impl.py", _HERE / "_kernels_math.py", Path(__file__).resolve())


class AotUnavailable(RuntimeError):
    """The AOT module is not built and cannot be built or loaded here (the reason is the message)."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The per-user uehead cache folder (see the module docstring)."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("UEHEAD_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "uehead"


def _dist_versions(*names: str) -> list[str]:
    """Installed ``name-version.dist-info`` of each distribution, found on sys.path without importing
    anything (importlib.metadata is slow to import; find_spec can run import hooks). "missing" if absent."""
    found = {}
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            low = item.lower()
            if low.endswith((".dist-info", ".egg-info")):
                dist = low.split("-", 1)[0]
                if dist in names and dist not in found:
                    found[dist] = item
        if len(found) == len(names):
            break
    return [found.get(n, "missing") for n in names]


def _cpu_id() -> str:
    """What identifies the instruction set of this CPU (first processor block of /proc/cpuinfo)."""
    if sys.platform.startswith("linux"):
        keep = (b"vendor_id", b"cpu family", b"model", b"model name", b"flags", b"features",
                b"cpu implementer", b"cpu architecture", b"cpu variant", b"cpu part", b"isa")
        try:
            found = []
            with open("/proc/cpuinfo", "rb") as fh:
                for line in fh:
                    if not line.strip():
                        if found:
                            break
                        continue
                    if line.split(b":", 1)[0].strip().lower() in keep:
                        found.append(line.strip())
            if found:
                return hashlib.sha256(b"\n".join(found)).hexdigest()[:16]
        except OSError:
            pass
    return "generic"


def _target_cpu() -> str:
    """LLVM CPU for the build: the host where the CPU is identifiable (Linux), else generic."""
    return "host" if _cpu_id() != "generic" else ""


def cache_key() -> str:
    """Hex key of everything the compiled module depends on."""
    import numpy

    h = hashlib.sha256()
    for src in _SOURCES:
        h.update(src.read_bytes())
    parts = [*_dist_versions("numba", "llvmlite"), numpy.__version__,
             sys.implementation.cache_tag, str(sysconfig.get_config_var("EXT_SUFFIX")),
             sysconfig.get_platform(), _cpu_id()]
    h.update("\0".join(parts).encode())
    return h.hexdigest()[:20]


def module_path(cache_dir=None, key: str | None = None) -> Path:
    """Where the AOT module for this interpreter/CPU/source lives (whether built or not)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return cache_root(cache_dir) / "kernels" / f"aot-{key or cache_key()}" / (MODULE_NAME + suffix)


def load_module(path: Path):
    """Import the extension at ``path`` (not registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(MODULE_NAME, str(path))
    if spec is None or spec.loader is None:
        raise AotUnavailable(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [f"{e}_{d}" for e in SIGNATURES for d in DTYPES if not hasattr(module, f"{e}_{d}")]
    if missing:
        raise AotUnavailable(f"{path} lacks {missing}; rebuild with `python -m uehead.runtime.kernels --build --force`")
    return module


class _FileLock:
    """Exclusive inter-process lock on a file (fcntl; no-op where fcntl is missing: the final
    rename is atomic anyway, concurrent builders then only duplicate work)."""

    def __init__(self, path: Path, timeout: float):
        self.path, self.timeout, self._fh = path, timeout, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self._fh = open(self.path, "a+")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self._fh.close()
                    raise AotUnavailable(f"timed out after {self.timeout:.0f} s waiting for the build lock {self.path}")
                time.sleep(0.1)

    def __exit__(self, *exc):
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build(cache_dir=None, force: bool = False, lock_timeout: float = 900.0, verbose: bool = False) -> Path:
    """Compile the kernels with numba.pycc into the cache (no-op if already built, unless ``force``).

    Returns the module path. Raises AotUnavailable (and leaves ``build-failed.txt``) on failure.
    Imports numba: run it in a child process (``python -m uehead.runtime.kernels --build``) to
    keep numba out of a serving process.
    """
    import json
    import platform
    import shutil
    import tempfile

    key = cache_key()
    final = module_path(cache_dir, key)
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    with _FileLock(folder / ".lock", lock_timeout):
        if final.exists() and not force:
            return final
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
        try:
            out = _compile(tmp, verbose)
            load_module(out)  # the fresh module imports and has every symbol
            os.replace(out, final)
        except Exception as exc:  # (an interrupt is not recorded as a failed build)
            reason = f"{type(exc).__name__}: {exc}"
            _write_atomic(folder / FAILED_MARKER, reason + "\n")
            raise AotUnavailable(reason) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        (folder / FAILED_MARKER).unlink(missing_ok=True)
        import numba

        _write_atomic(folder / "build-info.json", json.dumps({
            "module": final.name, "key": key, "numba": numba.__version__, "target_cpu": _target_cpu() or "generic",
            "python": sys.version.split()[0], "platform": platform.platform(),
            "build_seconds": round(time.perf_counter() - t0, 2), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }, indent=2) + "\n")
    return final


def _compile(out_dir: Path, verbose: bool) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumbaPendingDeprecationWarning for numba.pycc
        from numba.pycc import CC
    from uehead.runtime import _kernels_impl as impl

    cc = CC(MODULE_NAME, source_module=impl)
    cc.output_dir = str(out_dir)
    cc.target_cpu = _target_cpu()
    cc.verbose = verbose
    for entry, sig in SIGNATURES.items():
        for dt in DTYPES:
            cc.export(f"{entry}_{dt}", sig.format(x=dt))(impl.ENTRY_POINTS[entry])
    if verbose:
        cc.compile()
    else:  # distutils prints compiler command lines on stdout
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            cc.compile()
    return out_dir / cc.output_file


def ensure(cache_dir=None, allow_build: bool = True, timeout: float = 900.0):
    """Load the AOT module, building it first in a child process if it is missing.

    Returns ``(module, path, built_now)``. Raises AotUnavailable with the reason when it cannot be
    had (no compiler, a recorded failed build, ``allow_build=False`` and not built, ...).
    """
    key = cache_key()
    path = module_path(cache_dir, key)
    if path.exists():
        return load_module(path), path, False
    marker = path.parent / FAILED_MARKER
    if marker.exists():
        raise AotUnavailable(f"an earlier AOT build failed ({marker.read_text().strip()[-300:]}); "
                             "fix it and run `python -m uehead.runtime.kernels --build`")
    if not allow_build:
        raise AotUnavailable(f"not built yet ({path}); run `python -m uehead.runtime.kernels --build`")
    import subprocess

    cmd = [sys.executable, "-m", "uehead.runtime._kernels_aot", "--build", "--cache-dir", str(cache_root(cache_dir))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AotUnavailable(f"could not run the AOT build ({exc})") from exc
    if proc.returncode != 0 or not path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise AotUnavailable(f"AOT build failed (exit {proc.returncode}): {tail[0]}")
    return load_module(path), path, True


def main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m uehead.runtime.kernels",
                                 description="Build or inspect the ahead-of-time compiled uehead score kernels.")
    ap.add_argument("--build", action="store_true", help="compile the kernels into the cache (once per machine)")
    ap.add_argument("--force", action="store_true", help="rebuild even if built (or if a build failed before)")
    ap.add_argument("--cache-dir", default=None, help="cache folder (default: $UEHEAD_CACHE_DIR or ~/.cache/uehead)")
    ap.add_argument("--verbose", action="store_true", help="show the compiler's output")
    args = ap.parse_args(argv)
    path = module_path(args.cache_dir)
    if args.build:
        try:
            path = build(args.cache_dir, force=args.force, verbose=args.verbose)
        except AotUnavailable as exc:
            print(f"AOT build failed: {exc}", file=sys.stderr)
            return 1
        print(f"built {path}")
        return 0
    state = "built" if path.exists() else ("build failed" if (path.parent / FAILED_MARKER).exists() else "not built")
    print(json.dumps({"module": str(path), "state": state, "target_cpu": _target_cpu() or "generic"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
