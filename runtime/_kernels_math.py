"""Elementary numba math of the score kernels: fastmath flags, a vectorisable max, branch-free exp and
log, and the non-finite check (imported only to JIT-compile the kernels or to build the AOT module).

Why each exists is in ``_kernels_impl.py``'s docstring (design notes); the kernels there and in
the fused linear head import them from here.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit
from numba.extending import intrinsic

# Flags: EXACT keeps IEEE rounding order (needed by the exp/log bit tricks); RED additionally
# allows reassociation (vectorised sums) and assumes finite values (input is checked first).
FM_EXACT = {"nsz", "contract", "arcp"}
FM_RED = {"nsz", "contract", "arcp", "reassoc", "nnan", "ninf"}
# Helpers are not cached on their own: the entry points are (``cache=True`` in
# ``jit_entry_points``) and their cached code already contains every inlined helper.
_OPTS = dict(cache=False, nogil=True, error_model="numpy")

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
EXP_MIN = -708.0  # exp(s) for s below this is < 3.3e-308: returned as 0 (float32 output is 0 anyway)
S_MIN = -800.0  # shifted logits are clamped here (exp is 0 below EXP_MIN either way)
_MAGIC = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer kept in the low bits
_MAGIC_BITS = int(np.float64(_MAGIC).view(np.int64))
_MANT_MASK = 0x000FFFFFFFFFFFFF
_ONE_BITS = int(np.float64(1.0).view(np.int64))
_SQRT2 = 1.4142135623730951
_F32_EXP_MIN = np.float32(-87.0)
_F32_ZERO = np.float32(0.0)
_F32_LOG2E = np.float32(LOG2E)
_F32_MAGIC = np.float32(12582912.0)  # 1.5 * 2**23
_F32_MAGIC_BITS = int(np.float32(12582912.0).view(np.int32))
_F32_LN2_HI = np.float32(0.693359375)
_F32_LN2_LO = np.float32(-2.12194440e-4)
_F32_C = (np.float32(1.0), np.float32(1.0), np.float32(0.5), np.float32(1.0 / 6), np.float32(1.0 / 24),
          np.float32(1.0 / 120), np.float32(1.0 / 720))


@intrinsic
def _fmax(typingctx, a, b):
    """max(a, b) as llvm.maxnum (vectorisable reduction; inputs are known finite)."""
    sig = a(a, a)

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maxnum", [ty], ir.FunctionType(ty, [ty, ty]))
        return builder.call(fn, args, fastmath=("nnan", "nsz"))

    return sig, codegen


@njit(fastmath=FM_EXACT, **_OPTS)
def _exp_nonpos(s):
    """exp(s) for finite float64 s <= 0, relative error < 1e-9; 0.0 below EXP_MIN. Branch-free."""
    sc = max(s, EXP_MIN)
    t = sc * LOG2E + _MAGIC
    n = t - _MAGIC  # round(sc / ln 2)
    r = sc - n * LN2_HI - n * LN2_LO  # |r| <= ln(2)/2, so the degree-8 Taylor error is < 3e-10
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
        1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320))))))))
    k = np.float64(t).view(np.int64) - _MAGIC_BITS  # the integer n
    two_k = np.int64((k + 1023) << 52).view(np.float64)
    return p * two_k if s >= EXP_MIN else 0.0


@njit(fastmath=FM_EXACT, **_OPTS)
def _exp_nonpos_f32(s):
    """exp(s) in float32 for finite float32 s <= 0 (relative error < 3e-7; 0 below -87).

    Used only inside SmoothMax, where the sum of these terms is >= 1 and enters as
    log(sum) / lambda, so a 3e-7 relative error moves 1 - SmoothMax by < 1e-8."""
    sc = max(s, _F32_EXP_MIN)
    t = sc * _F32_LOG2E + _F32_MAGIC
    n = t - _F32_MAGIC
    r = sc - n * _F32_LN2_HI - n * _F32_LN2_LO
    p = _F32_C[0] + r * (_F32_C[1] + r * (_F32_C[2] + r * (_F32_C[3] + r * (_F32_C[4] + r * (
        _F32_C[5] + r * _F32_C[6])))))
    k = np.float32(t).view(np.int32) - _F32_MAGIC_BITS
    two_k = np.int32((k + 127) << 23).view(np.float32)
    return p * two_k if s >= _F32_EXP_MIN else _F32_ZERO


@njit(fastmath=FM_EXACT, **_OPTS)
def _log_ge1(v):
    """log(v) for finite v >= 1, absolute error < 1e-15. Branch-free (vectorises)."""
    b = np.float64(v).view(np.int64)
    k = ((b >> 52) & 0x7FF) - 1023
    m = np.int64((b & _MANT_MASK) | _ONE_BITS).view(np.float64)  # mantissa in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m  # [sqrt(1/2), sqrt(2)]
    k = k + 1 if big else k
    f = m - 1.0
    s = f / (2.0 + f)  # log(m) = 2 atanh(s), |s| <= 0.172
    z = s * s
    poly = z * (1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 + z * (1.0 / 11 + z * (
        1.0 / 13 + z * (1.0 / 15 + z * (1.0 / 17))))))))
    return k * LN2_HI + (2.0 * s + 2.0 * s * poly + k * LN2_LO)


@njit(fastmath=False, **_OPTS)
def _first_nonfinite_row(x, r0, r1):
    """Index of the first row in [r0, r1) of C-contiguous x holding NaN or +-inf, else -1.

    No fastmath here: ``v - v`` is 0 for every finite v and NaN for NaN/inf, so the flat
    OR-reduction vectorises and stays exact. ``fastmath=False`` must stay explicit: numba lets a
    callee inherit the caller's fastmath flags when it sets none, and with ``nnan``/``ninf`` this
    test folds to False (caught by the NaN tests)."""
    c = x.shape[1]
    xf = x.reshape(-1)[r0 * c:r1 * c]  # (this slice + int32 OR vectorises; a bool OR does not)
    bad = np.int32(0)
    for k in range(xf.shape[0]):
        v = xf[k]
        bad |= np.int32((v - v) != 0)
    if bad == 0:
        return -1
    for k in range(xf.shape[0]):
        v = xf[k]
        if (v - v) != 0:
            return r0 + k // c
    return -1
