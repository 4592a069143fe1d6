"""Register helpers of the core's free-running pipelines (nothing in them stalls)."""
from __future__ import annotations

from amaranth import Module, Mux, Signal

from .params import ADDR_W


def data_reg(*args, **kwargs) -> Signal:
    """A data register: no reset (only control state is reset, so the reset net stays small)."""
    return Signal(*args, reset_less=True, **kwargs)


def delayed(m: Module, v, n: int, name: str, reset_less: bool = True):
    """`v` delayed by n clock cycles (plain registers)."""
    for k in range(n):
        r = Signal(v.shape(), name=f"{name}_d{k + 1}", reset_less=reset_less)
        m.d.sync += r.eq(v)
        v = r
    return v


def last_tile(length, lane_bits: int):
    """The index of the last tile of `length` elements in tiles of 1 << lane_bits (length >= 1)."""
    return ((length - 1) >> lane_bits)[:ADDR_W]


def last_tile_is(length, lane_bits: int, c: int):
    """last_tile(length, lane_bits) == c without its subtractor (a compare of the length's tile
    count and remainder with constants: LUTs, no carry chain)."""
    q, r = length >> lane_bits, length[:lane_bits]
    return Mux(r.any(), q == c, q == c + 1)


class Countdown:
    """A loop counter kept as the values left after the current one, with "at the last value"
    and "at the one before it" as registers: a step loads the last flag from a flip-flop and the
    next from a compare of the counter with a constant, so neither an adder nor a compare with
    the loop's length sits in front of the enables the flag drives."""

    def __init__(self, width: int, name: str) -> None:
        self.left = data_reg(width, name=f"{name}_left")
        self.last = data_reg(name=f"{name}_last")
        self.pen = data_reg(name=f"{name}_pen")

    def restart(self, length) -> list:
        """Statements: the loop at the first of its `length` (>= 1) values."""
        return [self.left.eq(length - 1), self.last.eq(length == 1), self.pen.eq(length == 2)]

    def step(self) -> list:
        """Statements: the loop at its next value (past its last, both flags stay clear)."""
        return [self.left.eq(self.left - 1), self.last.eq(self.pen), self.pen.eq(self.left == 2)]
