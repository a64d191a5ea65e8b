"""Numba source of the score kernels (imported only to JIT-compile them or to build the AOT module).

The serving path does not import this module when the ahead-of-time build is present (see
``_kernels_aot.py``): ``kernels.py`` then loads a small extension module compiled from exactly
these functions and numba is never imported. Definitions and directions (higher = more
uncertain) are those of :mod:`uehead.scores`; the kernels match it to 1e-6 for float32 input.

Design (why it is fast on CPU; ``benchmarks/bench_kernels.py`` compares it with numpy):
- Rows are processed in blocks of about ``BLOCK`` elements; the scratch buffers stay in L1/L2
  and are small enough for malloc to reuse (large per-call temporaries cost page faults).
- Row max uses ``llvm.maxnum`` so the reduction vectorises; the shifted logits of a block are
  then exponentiated in ONE flat loop (all rows at once, not C at a time) by ``_exp_nonpos``, a
  branch-free polynomial exp (Cody-Waite reduction, degree-8 Taylor, 2**n built from bits)
  that LLVM vectorises; libm's scalar exp is what makes a straightforward kernel slow.
  (The elementary math, the flags and the non-finite check live in ``_kernels_math.py``.)
- ``log`` of the per-row sums (``_log_ge1``) is vectorised the same way across rows.
- Softmax, entropy and sums are computed in float64 (exp relative error < 1e-9); only the
  SmoothMax exponentials, whose error is divided by lambda, are float32; outputs are float32.
- ``error_model='numpy'`` removes Python's per-division zero checks, which block vectorisation.
- Non-finite input is detected first, in a function compiled without fastmath; the fastmath
  code (``nnan``/``ninf``) only ever sees finite logits.

Entry points (same source for the JIT and the AOT paths; x is C-contiguous float32/float64
[N, C>=2], outputs are preallocated float32 arrays; each returns -1, or the first row holding
NaN/inf, in which case the outputs are unspecified):
    task_kernel(x, probs, sr, h, hn) -> int
    adue_kernel(x, lam, u) -> int
    alien_kernel(x, u) -> int
    linear_head_kernel(z, w, b, rows, c, kinds, lams, probs, ids, scores) -> int
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from uehead.runtime._kernels_aot import KIND_ADUE
from uehead.runtime._kernels_math import (FM_RED, S_MIN, _OPTS, _exp_nonpos, _exp_nonpos_f32, _first_nonfinite_row,
                                          _fmax, _log_ge1)

#: Elements per block of rows (float64 scratch: 32 KiB per buffer).
BLOCK = 4096

@njit(fastmath=FM_RED, **_OPTS)
def _shifted_exp(x, r0, r1, s, e):
    """For rows [r0, r1): s = x - rowmax (float64, flat), e = exp(s) (flat). So max_j e = 1."""
    c = x.shape[1]
    for ii in range(r1 - r0):  # indices stay provably >= 0 (no wraparound code, loops vectorise)
        i = r0 + ii
        m = x[i, 0]
        for j in range(1, c):
            m = _fmax(m, x[i, j])
        mf = np.float64(m)
        base = ii * c
        for j in range(c):  # clamped: exp(S_MIN) is 0, and e * s stays 0 (no 0 * inf) for |x| ~ 1e300
            s[base + j] = max(np.float64(x[i, j]) - mf, S_MIN)
    for k in range((r1 - r0) * c):  # one flat, vectorised pass over the whole block
        e[k] = _exp_nonpos(s[k])


@njit(fastmath=FM_RED, **_OPTS)
def _row_sums(e, rows, c, out):
    for i in range(rows):
        a = 0.0
        base = i * c
        for j in range(c):
            a += np.float64(e[base + j])
        out[i] = a


@njit(fastmath=FM_RED, **_OPTS)
def _block_rows(c):
    return max(1, BLOCK // c)


@njit(fastmath=FM_RED, **_OPTS)
def _task_impl(x, probs, sr, h, hn):
    n, c = x.shape
    rb = _block_rows(c)
    s = np.empty(rb * c)
    e = np.empty(rb * c)
    ssum = np.empty(rb)
    tsum = np.empty(rb)
    inv_logc = 1.0 / math.log(c)
    for r0 in range(0, n, rb):
        r1 = min(n, r0 + rb)
        bad = _first_nonfinite_row(x, r0, r1)
        if bad >= 0:
            return bad
        rows = r1 - r0
        _shifted_exp(x, r0, r1, s, e)
        for i in range(rows):  # S = sum e, T = sum e * s
            a = 0.0
            b = 0.0
            base = i * c
            for j in range(c):
                a += e[base + j]
                b += e[base + j] * s[base + j]
            ssum[i] = a
            tsum[i] = b
        for i in range(rows):  # vectorised across rows: H = log S - T / S, max p = 1 / S
            inv = 1.0 / ssum[i]
            ent = _log_ge1(ssum[i]) - tsum[i] * inv
            ssum[i] = inv
            sr[r0 + i] = 1.0 - inv
            h[r0 + i] = ent
            hn[r0 + i] = ent * inv_logc
        for i in range(rows):
            inv = ssum[i]
            base = i * c
            for j in range(c):
                probs[r0 + i, j] = e[base + j] * inv
    return -1


@njit(fastmath=FM_RED, **_OPTS)
def _alien_impl(x, u):
    n, c = x.shape
    rb = _block_rows(c)
    s = np.empty(rb * c)
    e = np.empty(rb * c)
    ssum = np.empty(rb)
    tsum = np.empty(rb)
    inv_logc = 1.0 / math.log(c)
    for r0 in range(0, n, rb):
        r1 = min(n, r0 + rb)
        bad = _first_nonfinite_row(x, r0, r1)
        if bad >= 0:
            return bad
        rows = r1 - r0
        _shifted_exp(x, r0, r1, s, e)
        for i in range(rows):
            a = 0.0
            b = 0.0
            base = i * c
            for j in range(c):
                a += e[base + j]
                b += e[base + j] * s[base + j]
            ssum[i] = a
            tsum[i] = b
        for i in range(rows):
            u[r0 + i] = (_log_ge1(ssum[i]) - tsum[i] / ssum[i]) * inv_logc
    return -1


@njit(fastmath=FM_RED, **_OPTS)
def _adue_impl(x, lam, u):
    n, c = x.shape
    rb = _block_rows(c)
    s = np.empty(rb * c)
    e = np.empty(rb * c)
    z = np.empty(rb * c, np.float32)
    inv = np.empty(rb)
    g = np.empty(rb)
    inv_lam = 1.0 / lam
    for r0 in range(0, n, rb):
        r1 = min(n, r0 + rb)
        bad = _first_nonfinite_row(x, r0, r1)
        if bad >= 0:
            return bad
        rows = r1 - r0
        _shifted_exp(x, r0, r1, s, e)
        _row_sums(e, rows, c, inv)
        for i in range(rows):
            inv[i] = 1.0 / inv[i]  # = max p
        # SmoothMax(p) = max p + log(sum exp(lam (p - max p))) / lam, and p - max p = (e - 1) / S <= 0
        for i in range(rows):
            scale = lam * inv[i]
            base = i * c
            for j in range(c):
                z[base + j] = np.float32((e[base + j] - 1.0) * scale)
        for k in range(rows * c):
            z[k] = _exp_nonpos_f32(z[k])
        _row_sums(z, rows, c, g)
        for i in range(rows):
            u[r0 + i] = 1.0 - inv[i] - _log_ge1(g[i]) * inv_lam
    return -1


# -- two classes (binary classifiers, the common case): vectorised across rows -----------------
# With C = 2 a row is (max, other) and only exp(-|x1 - x0|) is needed; per-row loops of length 2
# would not vectorise, so these loops run over rows (x viewed flat, stride 2).

@njit(fastmath=FM_RED, **_OPTS)
def _task_c2(x, probs, sr, h, hn):
    n = x.shape[0]
    bad = _first_nonfinite_row(x, 0, n)
    if bad >= 0:
        return bad
    xf = x.reshape(-1)
    pf = probs.reshape(-1)
    inv_log2 = 1.0 / math.log(2.0)
    for i in range(n):
        d = np.float64(xf[2 * i + 1]) - np.float64(xf[2 * i])
        ad = min(abs(d), -S_MIN)
        e = _exp_nonpos(-ad)
        tot = 1.0 + e
        inv = 1.0 / tot  # = max p
        lo = e * inv
        pf[2 * i] = lo if d > 0 else inv
        pf[2 * i + 1] = inv if d > 0 else lo
        ent = _log_ge1(tot) + ad * lo  # log S - sum p s, with s = (0, -|d|)
        sr[i] = 1.0 - inv
        h[i] = ent
        hn[i] = ent * inv_log2
    return -1


@njit(fastmath=FM_RED, **_OPTS)
def _alien_c2(x, u):
    n = x.shape[0]
    bad = _first_nonfinite_row(x, 0, n)
    if bad >= 0:
        return bad
    xf = x.reshape(-1)
    inv_log2 = 1.0 / math.log(2.0)
    for i in range(n):
        ad = min(abs(np.float64(xf[2 * i + 1]) - np.float64(xf[2 * i])), -S_MIN)
        e = _exp_nonpos(-ad)
        tot = 1.0 + e
        u[i] = (_log_ge1(tot) + ad * e / tot) * inv_log2
    return -1


@njit(fastmath=FM_RED, **_OPTS)
def _adue_c2(x, lam, u):
    n = x.shape[0]
    bad = _first_nonfinite_row(x, 0, n)
    if bad >= 0:
        return bad
    xf = x.reshape(-1)
    inv_lam = 1.0 / lam
    for i in range(n):
        ad = min(abs(np.float64(xf[2 * i + 1]) - np.float64(xf[2 * i])), -S_MIN)
        e = _exp_nonpos(-ad)
        inv = 1.0 / (1.0 + e)  # = max p; min p - max p = (e - 1) / S
        g = 1.0 + _exp_nonpos(lam * (e - 1.0) * inv)
        u[i] = 1.0 - inv - _log_ge1(g) * inv_lam
    return -1


# -- linear head + every score in one call (what a lone request pays after the backbone) ----------
# Dot products may reassociate (vectorised sums) but keep NaN/inf semantics: their results are
# checked for non-finite values before the fastmath score code sees them.
FM_DOT = {"nsz", "contract", "arcp", "reassoc"}


@njit(fastmath=FM_DOT, **_OPTS)
def _affine_row(z, i, w, b, out):
    """out[j] = b[j] + z[i] . w[j] (float32 accumulation, as a float32 Gemm does)."""
    h = z.shape[1]
    for j in range(w.shape[0]):
        a = np.float32(0.0)
        for k in range(h):
            a += np.float32(z[i, k]) * w[j, k]
        out[j] = np.float64(a + b[j])


@njit(fastmath=False, **_OPTS)
def _any_nonfinite(v):
    bad = np.int32(0)
    for k in range(v.shape[0]):
        x = v[k]
        bad |= np.int32((x - x) != 0)
    return bad != 0


@njit(fastmath=FM_RED, **_OPTS)
def _softmax_stats(l, off, c, e):
    """For logits l[off:off + c]: e = exp(l - max) (float64); returns (S = sum e, T = sum e * (l - max),
    argmax). So max p = 1 / S and the entropy is log S - T / S."""
    m = l[off]
    am = 0
    for j in range(1, c):
        if l[off + j] > m:
            m = l[off + j]
            am = j
    s_sum = 0.0
    t_sum = 0.0
    for j in range(c):
        d = max(l[off + j] - m, S_MIN)
        ej = _exp_nonpos(d)
        e[j] = ej
        s_sum += ej
        t_sum += ej * d
    return s_sum, t_sum, am


@njit(fastmath=FM_RED, **_OPTS)
def _linear_head_impl(z, w, b, rows, c, kinds, lams, probs, ids, scores):
    n = z.shape[0]
    l = np.empty(w.shape[0])
    e = np.empty(c)
    inv_logc = 1.0 / math.log(c)
    for i in range(n):
        _affine_row(z, i, w, b, l)
        if _any_nonfinite(l):
            return i
        r = rows[i]
        s_sum, t_sum, am = _softmax_stats(l, 0, c, e)
        inv = 1.0 / s_sum
        for j in range(c):
            probs[r, j] = e[j] * inv
        ids[r] = am
        scores[0, r] = 1.0 - inv
        scores[1, r] = _log_ge1(s_sum) - t_sum * inv
        for k in range(kinds.shape[0]):
            s_sum, t_sum, am = _softmax_stats(l, c * (k + 1), c, e)
            inv = 1.0 / s_sum
            if kinds[k] == KIND_ADUE:
                # SmoothMax(p) = max p + log(sum exp(lam (p - max p))) / lam, with p - max p = (e - 1) / S
                lam = lams[k]
                g = 0.0
                for j in range(c):
                    g += _exp_nonpos(max(lam * (e[j] - 1.0) * inv, S_MIN))
                scores[2 + k, r] = 1.0 - inv - _log_ge1(g) / lam
            else:
                scores[2 + k, r] = (_log_ge1(s_sum) - t_sum * inv) * inv_logc
    return -1


def linear_head_kernel(z, w, b, rows, c, kinds, lams, probs, ids, scores):
    """A linear head (logits = z w^T + b, the task's C columns then C per head) and every score,
    written at rows ``rows`` of the outputs: probs [N, C], ids [N] (argmax), scores [2 + K, N]
    (softmax response, entropy, then head k by ``kinds[k]``: KIND_ADUE with ``lams[k]``, or
    KIND_ALIEN). Returns -1, or the first row of ``z`` whose logits hold NaN/inf."""
    return _linear_head_impl(z, w, b, rows, c, kinds, lams, probs, ids, scores)


# Entry points: plain functions so that the AOT build (numba.pycc) compiles exactly this code;
# the JIT path wraps them with ``njit`` below.
def task_kernel(x, probs, sr, h, hn):
    if x.shape[1] == 2:
        return _task_c2(x, probs, sr, h, hn)
    return _task_impl(x, probs, sr, h, hn)


def adue_kernel(x, lam, u):
    if x.shape[1] == 2:
        return _adue_c2(x, lam, u)
    return _adue_impl(x, lam, u)


def alien_kernel(x, u):
    if x.shape[1] == 2:
        return _alien_c2(x, u)
    return _alien_impl(x, u)


ENTRY_POINTS = {"task": task_kernel, "adue": adue_kernel, "alien": alien_kernel,
                "linear_head": linear_head_kernel}


def jit_entry_points() -> dict:
    """The entry points JIT-compiled with numba (``cache=True``: numba's on-disk cache, in the folder
    that ``numba.config.CACHE_DIR`` names when this is called), keyed like ``ENTRY_POINTS``."""
    return {name: njit(cache=True, nogil=True, error_model="numpy")(fn) for name, fn in ENTRY_POINTS.items()}
