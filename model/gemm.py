"""The one exact integer GEMM entry point, at BLAS speed where that is provably exact.

A float GEMM of integer operands is exact when every partial sum is an integer the float format
represents exactly: |partial sum| <= sum_k |a_ik||b_kj| < 2^24 (float32) or 2^53 (float64).
`matmul` bounds that sum from the operands, picks the narrowest exact float type, and otherwise
splits the wider operand into limbs small enough for float64 and recombines them in int64
(modulo 2^64: exact whenever the true result fits int64, and always exact modulo 2^32, which is all a
32-bit wrapping accumulator needs). `matmul_reference` is the slow exact integer path it is tested
against.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from .numerics import F64_EXACT, NitroError, max_abs

_F32_EXACT = 1 << 24


def _check_operands(a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim != 2 or b.ndim != 2:
        raise NitroError(f"matmul needs 2-D operands, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise NitroError(f"matmul inner dimensions differ: {a.shape} @ {b.shape}")
    for x in (a, b):
        if not np.issubdtype(x.dtype, np.integer):
            raise NitroError(f"matmul takes integer operands, got {x.dtype}")


def sum_bound(a: np.ndarray, b: np.ndarray) -> int:
    """An upper bound on sum_k |a_ik||b_kj| over all (i, j): bounds every partial sum of a @ b."""
    ma, mb = max_abs(a), max_abs(b)
    crude = ma * mb * a.shape[1]
    if crude < _F32_EXACT:
        return crude
    # An L1 norm is much tighter for activations and deltas (few large values). Take it over the
    # smaller operand only: it costs one pass over that operand.
    if a.size <= b.size:
        return min(crude, int(np.abs(a, dtype=np.int64).sum(axis=1).max()) * mb)
    return min(crude, ma * int(np.abs(b, dtype=np.int64).sum(axis=0).max()))


def _float_matmul(a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    return np.matmul(a.astype(dtype), b.astype(dtype)).astype(np.int64)


_USE_REFERENCE = False


@contextmanager
def reference_gemm() -> Iterator[None]:
    """Within this block `matmul` takes the slow integer path: to check the fast path end to end."""
    global _USE_REFERENCE
    saved, _USE_REFERENCE = _USE_REFERENCE, True
    try:
        yield
    finally:
        _USE_REFERENCE = saved


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer a @ b as int64 (modulo 2^64), via float32/float64 BLAS when provably exact."""
    if _USE_REFERENCE:
        return matmul_reference(a, b)
    a, b = np.asarray(a), np.asarray(b)
    _check_operands(a, b)
    bound = sum_bound(a, b)
    if bound < _F32_EXACT:
        return _float_matmul(a, b, np.float32)
    if bound < F64_EXACT:
        return _float_matmul(a, b, np.float64)
    # Split the operand with the larger entries into limbs; the other stays whole.
    if max_abs(a) > max_abs(b):
        return matmul(b.T, a.T).T
    a_l1 = max(int(np.abs(a, dtype=np.int64).sum(axis=1).max()), 1)
    shift = max(1, (F64_EXACT // a_l1).bit_length() - 2)  # a_l1 * 2^shift < 2^53
    rest = b.astype(np.int64)
    a_f = a.astype(np.float64)
    result = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    offset = 0
    while True:
        if max_abs(rest) < (1 << shift):
            limb, done = rest, True  # last limb: signed, still exact
        else:
            limb, done = rest & ((1 << shift) - 1), False
        part = np.matmul(a_f, limb.astype(np.float64)).astype(np.int64)
        with np.errstate(over="ignore"):
            result += part << offset  # int64 arithmetic wraps mod 2^64 by design
        if done:
            return result
        rest = rest >> shift
        offset += shift
        if offset >= 64:
            return result


def matmul_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer a @ b in int64 arithmetic (NumPy's integer loop, no BLAS): the oracle."""
    a, b = np.asarray(a), np.asarray(b)
    _check_operands(a, b)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


def im2col(x: np.ndarray, kh: int, kw: int, pad: int) -> np.ndarray:
    """(B, C, H, W) -> (B*Ho*Wo, C*kh*kw) patch matrix, zero padding, stride 1.

    Column order (c, k, l) row-major, row order (b, i, j): conv forward is then `cols @ W.reshape(F, -1).T`
    (cross-correlation, no kernel flip, spec 2.2).
    """
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    b, c, hp, wp = x.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # B,C,Ho,Wo,kh,kw
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * kh * kw)
