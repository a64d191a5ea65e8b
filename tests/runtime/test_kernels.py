"""Score kernels against the numpy reference (hypothesis), hand-computed cases, bad input, and the
two implementations: the AOT module (numba.pycc, loaded without numba) and numba JIT (cache=True)
must give identical results. All caches live in pytest tmp folders (UEHEAD_CACHE_DIR)."""
from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from uehead import scores as score_ref
from uehead.runtime import _kernels_aot, kernels
from uehead.runtime.kernels import NonFiniteLogitsError

RUNTIME_DIR = Path(kernels.__file__).resolve().parent
ATOL = 1e-6
LAMS = (1.0, 10.0, 100.0, 1000.0)


def _numba_cache_files():
    d = RUNTIME_DIR / "__pycache__"
    return sorted(p.name for p in d.glob("_kernels_impl*.nb*")) if d.is_dir() else []


@pytest.fixture(scope="module")
def _built(tmp_path_factory):
    """A tmp cache holding the AOT module (built by the CLI in a child process) and numba's JIT cache
    (filled here while the child builds, to overlap the two compilations); restores the
    process-wide kernels afterwards and checks that nothing was written anywhere else."""
    d = tmp_path_factory.mktemp("uehead-cache")
    saved, home_cache = kernels._backend, Path.home() / ".cache" / "uehead"
    home_existed, pycache_before = home_cache.exists(), _numba_cache_files()
    build = subprocess.Popen([sys.executable, "-m", "uehead.runtime.kernels", "--build", "--cache-dir", str(d)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "UEHEAD_CACHE_DIR": str(d)})
    try:
        jit = kernels._reset_backend("jit", d)
        for dtype in (np.float32, np.float64):  # compile both signatures now
            _all_outputs(np.zeros((1, 3), dtype))
        out, err = build.communicate(timeout=900)
    finally:
        if build.poll() is None:
            build.kill()
            build.communicate()
    try:
        assert build.returncode == 0, err[-3000:]
        assert "built" in out
        aot = kernels._reset_backend("aot", d)
        yield d, {"aot": aot, "jit": jit}
    finally:
        kernels._backend = saved
    # nothing written outside the tmp cache: not numba's default cache next to the source, not ~/.cache
    assert _numba_cache_files() == pycache_before
    assert home_cache.exists() == home_existed


@pytest.fixture(scope="module")
def cache_dir(_built):
    return _built[0]


@pytest.fixture(scope="module")
def backends(_built):
    """{'aot': ..., 'jit': ...} loaded from the tmp cache."""
    return _built[1]


@pytest.fixture(params=["aot", "jit"])
def backend(request, backends):
    kernels._backend = backends[request.param]
    return request.param


def _all_outputs(x, lam=100.0):
    return (*kernels.task_outputs(x), kernels.adue_uncertainty(x, lam), kernels.alien_uncertainty(x))


def _reference_outputs(x, lam=100.0):
    return (*score_ref.task_outputs(x), score_ref.adue_uncertainty(x, lam), score_ref.alien_uncertainty(x))


def _assert_matches_reference(x, lam=100.0):
    names = ("probs", "softmax_response", "entropy", "normalized_entropy", "adue", "alien")
    for name, got, want in zip(names, _all_outputs(x, lam), _reference_outputs(x, lam)):
        assert got.dtype == np.float32, name
        assert got.shape == want.shape, name
        if got.size:
            err = float(np.max(np.abs(got.astype(np.float64) - want)))
            assert err <= ATOL, f"{name}: max abs error {err:.2e} for {x.dtype} {x.shape}, lam={lam}"


def _logits(seed, n, c, kind, scale, dtype):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.standard_normal((n, c)) * scale
    elif kind == "spiky":  # one dominant class per row, the rest far below
        x = rng.standard_normal((n, c))
        x[np.arange(n), rng.integers(0, c, n)] += scale
    elif kind == "ties":  # few distinct values: exact ties for the max
        x = rng.integers(-2, 3, (n, c)) * scale
    else:  # "offset": large common offset (max-shift must cancel it)
        x = rng.standard_normal((n, c)) + rng.choice([-1, 1], (n, 1)) * scale
    return np.clip(x, -1e4, 1e4).astype(dtype)


# -- property tests: any batch size (0 included), 2..1000 classes, |logit| up to 1e4 ---------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n=st.one_of(st.integers(0, 8), st.integers(0, 300)),
       c=st.one_of(st.integers(2, 6), st.integers(2, 1000)),
       kind=st.sampled_from(["normal", "spiky", "ties", "offset"]),
       scale=st.sampled_from([1e-3, 1.0, 30.0, 1e3, 1e4]), dtype=st.sampled_from([np.float32, np.float64]),
       lam=st.sampled_from(LAMS))
def test_kernels_match_the_reference(backend, seed, n, c, kind, scale, dtype, lam):
    _assert_matches_reference(_logits(seed, n, c, kind, scale, dtype), lam)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=hnp.arrays(st.sampled_from([np.float32, np.float64]),
                    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12).filter(lambda s: s[1] >= 2),
                    elements=st.floats(-1e4, 1e4, width=32)))
def test_kernels_match_the_reference_on_hypothesis_values(backend, x):
    _assert_matches_reference(x)


def test_many_blocks_and_extremes(backend):
    rng = np.random.default_rng(7)
    for c in (2, 3, 20, 1000, 5000):
        n = max(3, 30000 // c)  # several blocks of rows in the general path
        x = rng.standard_normal((n, c)).astype(np.float32) * 10
        x[::7] *= 1000.0
        x[::11, 0] = 1e4
        x[::13, -1] = -1e4
        _assert_matches_reference(x)


# -- hand-computed cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("c", [2, 3, 10, 1000])
def test_uniform_logits(backend, c):
    x = np.full((4, c), 3.25, np.float32)
    probs, sr, h, hn = kernels.task_outputs(x)
    np.testing.assert_allclose(probs, 1.0 / c, atol=1e-7)
    np.testing.assert_allclose(sr, 1.0 - 1.0 / c, atol=1e-6)
    np.testing.assert_allclose(h, math.log(c), atol=1e-6)
    np.testing.assert_allclose(hn, 1.0, atol=1e-6)
    np.testing.assert_allclose(kernels.alien_uncertainty(x), 1.0, atol=1e-6)
    for lam in (10.0, 100.0):
        want = 1.0 - (1.0 / c + math.log(c) / lam)  # SmoothMax of uniform p = 1/C + log(C)/lam
        np.testing.assert_allclose(kernels.adue_uncertainty(x, lam), want, atol=1e-6)


@pytest.mark.parametrize("c", [2, 5, 1000])
def test_one_hot_large_logit_is_certain(backend, c):
    x = np.zeros((3, c), np.float64)
    x[0, 0], x[1, c - 1], x[2, c // 2] = 1e4, 50.0, -1e4 + 100.0  # row 2: every other logit is 0 > -9900
    probs, sr, h, _ = kernels.task_outputs(x[:2])
    assert np.all(probs[0, 1:] == 0) and probs[0, 0] == 1.0
    np.testing.assert_allclose(sr, 0.0, atol=1e-6)
    np.testing.assert_allclose(h, 0.0, atol=1e-6)
    np.testing.assert_allclose(kernels.adue_uncertainty(x[:2]), 0.0, atol=1e-6)
    assert kernels.alien_uncertainty(x[:2]).max() <= 1e-6
    _assert_matches_reference(x)


@pytest.mark.parametrize("c", [2, 3])
def test_far_beyond_1e4_stays_finite(backend, c):
    """float64 logits ~1e300 (the reference itself returns NaN entropy there: 0 * -inf)."""
    x = np.zeros((2, c))
    x[0, 0], x[0, 1], x[1, 0], x[1, 1] = 1e300, -1e300, -1e300, 1e300
    probs, sr, h, hn = kernels.task_outputs(x)
    np.testing.assert_array_equal(probs[:, :2], [[1, 0], [0, 1]])
    for out in (sr, h, hn, kernels.adue_uncertainty(x), kernels.alien_uncertainty(x)):
        np.testing.assert_array_equal(out, 0.0)


def test_two_classes_closed_form(backend):
    d = np.array([0.0, 1.0, -2.5, 40.0, -700.0, 1e4])
    x = np.stack([np.zeros_like(d), d], axis=1).astype(np.float32)
    p1 = 1.0 / (1.0 + np.exp(-d))
    probs, sr, _, _ = kernels.task_outputs(x)
    np.testing.assert_allclose(probs[:, 1], p1, atol=1e-7)
    np.testing.assert_allclose(sr, 1.0 - np.maximum(p1, 1 - p1), atol=1e-7)


def test_empty_batch(backend):
    for c in (2, 7):
        probs, sr, h, hn = kernels.task_outputs(np.zeros((0, c), np.float32))
        assert probs.shape == (0, c) and sr.shape == h.shape == hn.shape == (0,)
        assert kernels.adue_uncertainty(np.zeros((0, c))).shape == (0,)
        assert kernels.alien_uncertainty(np.zeros((0, c))).shape == (0,)


def test_layouts_and_dtypes(backend):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 24)) * 5
    for x in (base[:, ::2], base.T[:, :30], base[::3], np.asfortranarray(base), base.astype(np.float16),
              (base * 10).astype(np.int64), base.astype(np.float32)[:, 1:]):
        _assert_matches_reference(x)
    buf = np.zeros(base.size * 4 + 1, np.uint8)  # misaligned float32 view
    mis = np.frombuffer(buf[1:].data, np.float32).reshape(base.shape)
    mis[...] = base
    assert not mis.flags.aligned
    _assert_matches_reference(mis)
    ro = base.astype(np.float32)
    ro.setflags(write=False)
    _assert_matches_reference(ro)
    assert not ro.flags.writeable  # the caller's array is not touched


# -- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("c", [2, 3, 20, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_logits_raise_naming_the_first_bad_row(backend, bad, c, dtype):
    n = max(10, 2 * kernels_rows_per_block(c) + 5)
    x = np.random.default_rng(c).standard_normal((n, c)).astype(dtype)
    row = n - 3  # past the first block(s)
    x[row, c - 1] = bad
    x[n - 1, 0] = bad
    for fn in (kernels.task_outputs, kernels.adue_uncertainty, kernels.alien_uncertainty):
        with pytest.raises(NonFiniteLogitsError, match=f"first at row {row}, class {c - 1}"):
            fn(x)
    with pytest.raises(ValueError):  # NonFiniteLogitsError is a ValueError
        kernels.task_outputs(x[row:row + 1])


def kernels_rows_per_block(c):
    from uehead.runtime._kernels_impl import BLOCK

    return max(1, BLOCK // c)


@pytest.mark.parametrize("x, err, match", [
    (np.zeros(5), ValueError, r"shape \[N, C\] with C >= 2"),
    (np.zeros((3, 1)), ValueError, "C >= 2"),
    (np.zeros((2, 3, 4)), ValueError, "shape"),
    (np.zeros((2, 3), complex), TypeError, "real-valued"),
    (np.array([["a", "b"]]), TypeError, "real-valued"),
])
def test_bad_shapes_and_dtypes(backend, x, err, match):
    with pytest.raises(err, match=match):
        kernels.task_outputs(x)
    with pytest.raises(err, match=match):
        kernels.adue_uncertainty(x)


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_lambda(backend, lam):
    with pytest.raises(ValueError, match="lambda"):
        kernels.adue_uncertainty(np.zeros((2, 3), np.float32), lam)


# -- the two implementations --------------------------------------------------------------------------

def test_aot_and_jit_give_identical_results(backends):
    rng = np.random.default_rng(11)
    for c in (2, 3, 20, 1000):
        for dtype in (np.float32, np.float64):
            x = (rng.standard_normal((max(5, 9000 // c), c)) * rng.choice([1, 30, 3000], (1, c))).astype(dtype)
            x = np.clip(x, -1e4, 1e4)
            results = {}
            for name, b in backends.items():
                kernels._backend = b
                results[name] = _all_outputs(x, 100.0) + (kernels.adue_uncertainty(x, 3.0),)
            for a, j in zip(results["aot"], results["jit"]):
                np.testing.assert_array_equal(a, j)


def test_backend_info_and_cache_locations(backends, cache_dir):
    kernels._backend = backends["aot"]
    info = kernels.backend_info()
    assert info["backend"] == "aot" and Path(info["path"]).is_file()
    assert Path(info["path"]).is_relative_to(cache_dir)
    assert (Path(info["path"]).parent / "build-info.json").is_file()
    kernels._backend = backends["jit"]
    assert kernels.backend_info()["backend"] == "jit"
    assert list((cache_dir / "numba").rglob("*.nbi")), "numba's JIT cache should live in the uehead cache"


def test_aot_module_runs_without_numba(cache_dir):
    code = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('numba', 'llvmlite'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import numpy as np
from uehead.runtime import kernels
kernels.warmup()
x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
p, sr, h, hn = kernels.task_outputs(x)
assert kernels.backend_info()['backend'] == 'aot'
assert abs(hn[1] - 1.0) < 1e-6 and abs(p[0].sum() - 1.0) < 1e-6
print('OK', sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))
"""
    env = {**os.environ, "UEHEAD_CACHE_DIR": str(cache_dir), "UEHEAD_KERNELS": "aot"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "OK []"


def test_failed_build_falls_back_to_jit_with_the_reason_logged(tmp_path, cache_dir, caplog):
    saved = kernels._backend
    shutil.copytree(cache_dir / "numba", tmp_path / "numba")  # numba's JIT cache: no recompilation
    path = _kernels_aot.module_path(tmp_path)
    path.parent.mkdir(parents=True)
    (path.parent / _kernels_aot.FAILED_MARKER).write_text("CompileError: no C compiler\n")
    try:
        with caplog.at_level(logging.WARNING, logger="uehead.runtime.kernels"):
            b = kernels._reset_backend("auto", tmp_path)
        assert b.name == "jit" and "no C compiler" in b.reason
        assert "using numba JIT" in caplog.text and "no C compiler" in caplog.text
        _assert_matches_reference(np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32))
        with pytest.raises(RuntimeError, match="UEHEAD_KERNELS=aot"):
            kernels._reset_backend("aot", tmp_path)
        with pytest.raises(_kernels_aot.AotUnavailable, match="not built"):
            _kernels_aot.ensure(tmp_path / "empty", allow_build=False)
    finally:
        kernels._backend = saved


def test_cli_reports_the_state(tmp_path, cache_dir):
    env = {**os.environ, "UEHEAD_CACHE_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "uehead.runtime.kernels"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and '"state": "not built"' in out.stdout, out.stderr
    out = subprocess.run(cmd + ["--cache-dir", str(cache_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and '"state": "built"' in out.stdout, out.stderr


def test_bad_mode_is_named(monkeypatch):
    monkeypatch.setenv("UEHEAD_KERNELS", "gpu")
    with pytest.raises(ValueError, match="UEHEAD_KERNELS"):
        kernels._mode()


def test_cache_key_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("UEHEAD_CACHE_DIR", str(tmp_path))
    assert _kernels_aot.cache_root() == tmp_path
    key = _kernels_aot.cache_key()
    assert key == _kernels_aot.cache_key() and len(key) == 20
    assert _kernels_aot.module_path().is_relative_to(tmp_path / "kernels")
    monkeypatch.delenv("UEHEAD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _kernels_aot.cache_root() == tmp_path / "xdg" / "uehead"


def test_build_lock_is_exclusive(tmp_path):
    with _kernels_aot._FileLock(tmp_path / ".lock", timeout=5):
        with pytest.raises(_kernels_aot.AotUnavailable, match="timed out"):
            with _kernels_aot._FileLock(tmp_path / ".lock", timeout=0.3):
                pass
    with _kernels_aot._FileLock(tmp_path / ".lock", timeout=0.3):  # released
        pass


@pytest.mark.parametrize("which", ["aot", "jit"])
def test_thread_safe(backends, which):
    kernels._backend = backends[which]
    rng = np.random.default_rng(5)
    inputs = [(rng.standard_normal((rng.integers(1, 600), c)) * 20).astype(np.float32)
              for c in (2, 3, 20, 300) for _ in range(3)]
    expected = [_all_outputs(x) for x in inputs]
    errors, barrier = [], threading.Barrier(4)

    def work(k):
        try:
            barrier.wait()
            for _ in range(5):
                for i in range(k, len(inputs) + k):
                    i %= len(inputs)
                    for got, want in zip(_all_outputs(inputs[i]), expected[i]):
                        np.testing.assert_array_equal(got, want)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
