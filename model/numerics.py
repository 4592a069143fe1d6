"""Integer primitives of NITRO-D (spec section 1) and the declared-width policy.

Every function here states its rounding and its result dtype. Arithmetic is done in int64 (exact for
every value the reference can produce) and narrowed explicitly, so no result depends on NumPy's
promotion rules.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np

_DTYPE_FOR_BITS = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}
F64_EXACT = 1 << 53


class NitroError(ValueError):
    """Base class of every error the toolkit reports to the user (one clear line)."""


class WidthOverflowError(NitroError):
    """A value does not fit the hardware width declared for its tensor class."""


def storage_dtype(bits: int) -> type[np.signedinteger]:
    """Smallest NumPy signed dtype holding `bits`-bit two's-complement values."""
    for width, dtype in _DTYPE_FOR_BITS.items():
        if bits <= width:
            return dtype
    raise NitroError(f"widths above 64 bits are not supported (asked for {bits})")


def tdiv(n: np.ndarray | int, d: np.ndarray | int) -> np.ndarray:
    """Integer quotient rounded toward zero (C semantics); int64 result.

    `>>` and `//` round toward minus infinity and are wrong for negative numerators (spec 1.1).
    """
    n64 = np.asarray(n, dtype=np.int64)
    d64 = np.asarray(d, dtype=np.int64)
    if np.any(d64 == 0):
        raise ZeroDivisionError("tdiv: division by zero")
    q = np.abs(n64) // np.abs(d64)
    return np.where((n64 < 0) != (d64 < 0), -q, q)


def tdiv_scalar(n: np.ndarray, d: int) -> np.ndarray:
    """tdiv by one positive Python int; int64 result. The hot path of scaling and SGD.

    For |n| < 2^53 and d < 2^53, trunc(float64(n) / d) is exact: a non-integer quotient lies at
    least 1/d from the next integer, farther than the division's rounding error |n/d| * 2^-53.
    """
    if d <= 0:
        raise NitroError(f"divisor must be a positive integer, got {d}")
    n = np.asarray(n)
    if d < F64_EXACT and (n.dtype.itemsize < 8 or n.size == 0 or max_abs(n) < F64_EXACT):
        return np.trunc(n / np.float64(d)).astype(np.int64)
    n64 = n.astype(np.int64)
    q = np.abs(n64) // d
    return np.where(n64 < 0, -q, q)


def max_abs(x: np.ndarray) -> int:
    """max |x| as a Python int (0 for an empty array), without overflow at the dtype minimum."""
    return max(-int(x.min()), int(x.max())) if x.size else 0


def wrap(v: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement reduction to `bits` bits (spec wrapK), in the smallest dtype holding it."""
    dtype = storage_dtype(bits)
    v = np.asarray(v)
    if bits == np.iinfo(dtype).bits:
        return v.astype(dtype)  # NumPy integer narrowing is modular
    half = 1 << (bits - 1)
    return (((v.astype(np.int64) + half) & ((1 << bits) - 1)) - half).astype(dtype)


def clip(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """min(max(v, lo), hi), dtype kept."""
    return np.clip(v, lo, hi)


def int_mean(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    """tdiv(sum(x), count) with the sum accumulated in int64 (spec 1.3)."""
    x = np.asarray(x)
    total = np.sum(x, axis=axis, dtype=np.int64, keepdims=keepdims)
    count = x.size // max(total.size, 1) if axis is not None else x.size
    return tdiv_scalar(total, count)


def int_mean_and_mad(x: np.ndarray, axis=None) -> tuple[np.ndarray, np.ndarray]:
    """Integer mean and mean absolute deviation, both truncated toward zero (spec 1.3)."""
    m = int_mean(x, axis=axis, keepdims=True)
    mad = int_mean(np.abs(np.asarray(x, dtype=np.int64) - m), axis=axis)
    return m.reshape(mad.shape), mad


def isqrt(n: int) -> int:
    """floor(sqrt(n)) for n >= 0 (the reference's Heron iteration gives the same value)."""
    import math

    return math.isqrt(n)


TensorClass = Literal["activation", "weight", "accumulator", "delta", "gradient", "loss_grad"]


@dataclass(frozen=True)
class Widths:
    """Declared two's-complement width, in bits, of every tensor class.

    The defaults are the reference's storage widths: int8 activations and loss gradients, int32
    weights, GEMM accumulators, deltas and weight gradients (spec 1.6 and 9.1).
    """

    activation: int = 8
    weight: int = 32
    accumulator: int = 32
    delta: int = 32
    gradient: int = 32
    loss_grad: int = 8

    def __post_init__(self) -> None:
        for f in fields(self):
            bits = getattr(self, f.name)
            if not isinstance(bits, int) or not 2 <= bits <= 64:
                raise NitroError(f"width of {f.name!r} must be an integer in 2..64, got {bits!r}")

    def changes(self) -> list[str]:
        """'<class> = <bits>' for every width that is not the reference's."""
        return [f"{f.name} = {getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) != f.default]


@dataclass
class WidthPolicy:
    """What happens when an exact value does not fit its declared width.

    mode "wrap" (the reference's behaviour): reduce modulo 2^bits and count how often it happened.
    mode "check": raise WidthOverflowError naming layer, tensor, index and value.
    """

    widths: Widths = field(default_factory=Widths)
    mode: Literal["wrap", "check"] = "wrap"
    wraps: Counter = field(default_factory=Counter)
    # Largest exact magnitude seen per (layer, tensor) and its class: the data for sizing hardware.
    observed: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("wrap", "check"):
            raise NitroError(f"width mode must be 'wrap' or 'check', got {self.mode!r}")

    def narrow(self, exact: np.ndarray, cls: TensorClass, layer: str, tensor: str) -> np.ndarray:
        """Narrow an exact tensor (int64, or float64 holding integers below 2^53) to the declared
        width of `cls`."""
        bits = getattr(self.widths, cls)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if exact.size == 0:
            return exact.astype(storage_dtype(bits))
        vmin, vmax = int(exact.min()), int(exact.max())
        key = (layer, tensor)
        seen = self.observed.get(key, (cls, 0))[1]
        self.observed[key] = (cls, max(seen, -vmin, vmax))
        if vmin >= lo and vmax <= hi:
            return exact.astype(storage_dtype(bits))  # the common case: nothing to wrap
        exact = exact.astype(np.int64)  # a float -> int cast out of range is undefined: go exact first
        bad = (exact < lo) | (exact > hi)
        if self.mode == "check":
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise WidthOverflowError(
                f"{layer}: {tensor} value {int(exact[idx])} at index {idx} does not fit the "
                f"declared {bits}-bit {cls} width"
            )
        self.wraps[key] += int(np.count_nonzero(bad))
        return wrap(exact, bits)


def bits_needed(max_abs: int) -> int:
    """Two's-complement width holding every value in [-max_abs, max_abs]."""
    return max(int(max_abs).bit_length() + 1, 1)


def range_report(policy: WidthPolicy) -> list[dict]:
    """Per (layer, tensor): class, declared bits, largest |exact value| seen, bits it needs, wraps."""
    rows = []
    for (layer, tensor), (cls, mx) in sorted(policy.observed.items()):
        rows.append({"layer": layer, "tensor": tensor, "class": cls,
                     "declared_bits": getattr(policy.widths, cls), "max_abs": mx,
                     "bits_needed": bits_needed(mx), "wraps": policy.wraps.get((layer, tensor), 0)})
    return rows
