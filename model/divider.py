"""Host-side constants of the multiply-shift truncating divider (hardware helper, pure arithmetic).

The hardware divides the magnitude |n| of a signed `in_width`-bit numerator by a positive divisor d as
    q_mag = (|n| * mult) >> shift,   q = -q_mag if n < 0 else q_mag        (truncation toward zero)
with mult = ceil(2^shift / d). That equals floor(|n| / d) for every |n| in [0, X] (X = 2^(in_width-1),
the magnitude of the most negative input) iff, writing e = mult*d - 2^shift >= 0,
    r * 2^shift + x * e < d * 2^shift   for every x in [0, X] with r = x mod d.
For a fixed residue r the left side grows with x, so only the largest x of each residue matters, and
among those only two can be worst: x = X (residue X mod d) and the largest x <= X with residue d-1.
`divider_constants` searches the smallest shift that passes this check (smallest multiplier too) and
raises NitroError when none fits the declared multiplier / shift widths. `sim/formal.py` proves the
returned constants again with z3 over the integers, independently of this argument.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .numerics import NitroError


@dataclass(frozen=True)
class DividerConstants:
    """mult and shift of an exact divider by `divisor` for signed `in_width`-bit numerators."""

    divisor: int
    in_width: int
    mult: int
    shift: int

    @property
    def mult_width(self) -> int:
        """Unsigned bits the multiplier needs."""
        return max(self.mult.bit_length(), 1)

    def quotient(self, n: np.ndarray) -> np.ndarray:
        """What the divider computes: sign(n) * ((|n| * mult) >> shift) (int64 numerators)."""
        mag = (np.abs(n) * self.mult) >> self.shift
        return np.where(n < 0, -mag, mag)


def magnitude_bound(in_width: int) -> int:
    """Largest |n| of a signed in_width-bit numerator: 2^(in_width-1) (the most negative value)."""
    return 1 << (in_width - 1)


def is_exact(divisor: int, in_width: int, mult: int, shift: int) -> bool:
    """True iff (x*mult) >> shift == x // divisor for every x in [0, 2^(in_width-1)]."""
    d, xmax = divisor, magnitude_bound(in_width)
    e = mult * d - (1 << shift)
    if e < 0:
        return False  # mult below 2^shift/d: already wrong for x = d
    top = 1 << shift
    candidates = [xmax]
    x_last = xmax - (xmax % d) - 1  # largest x <= xmax with residue d-1
    if x_last >= 0:
        candidates.append(x_last)
    return all((x % d) * top + x * e < d * top for x in candidates)


def divider_constants(
    divisor: int, in_width: int, mult_width: int | None = None, shift_width: int | None = None
) -> DividerConstants:
    """Exact (mult, shift) for tdiv(n, divisor), n signed in_width bits; smallest shift first.

    mult_width / shift_width: the hardware's multiplier width (mult < 2^mult_width) and shift-amount
    field width (shift < 2^shift_width); None = unbounded. With mult_width >= in_width + 1 constants
    always exist; narrower multipliers fail for some divisors, and then this raises NitroError.
    """
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise NitroError(f"divider: divisor must be an int, got {type(divisor).__name__}")
    if divisor <= 0:
        raise NitroError(f"divider: divisor must be positive, got {divisor}")
    if isinstance(in_width, bool) or not isinstance(in_width, int) or not 2 <= in_width <= 64:
        raise NitroError(f"divider: input width must be an int in 2..64, got {in_width!r}")
    # Granlund-Montgomery: shift = in_width + ceil(log2 d) always works, so the search is bounded.
    max_shift = in_width + (divisor - 1).bit_length()
    for shift in range(max_shift + 1):
        mult = -(-(1 << shift) // divisor)
        if mult_width is not None and mult >= (1 << mult_width):
            break  # mult only grows with shift
        if shift_width is not None and shift >= (1 << shift_width):
            break
        if is_exact(divisor, in_width, mult, shift):
            return DividerConstants(divisor, in_width, mult, shift)
    raise NitroError(
        f"divider: no exact constants for divisor {divisor} and {in_width}-bit inputs within a "
        f"{mult_width}-bit multiplier and {shift_width}-bit shift field"
    )
