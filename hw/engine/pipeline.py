"""Register helpers of the core's free-running pipelines (nothing in them stalls)."""
from __future__ import annotations

from amaranth import Module, Signal

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


def count_to(counter, last, length, value=None) -> list:
    """Statements setting a loop counter to `value` (default 0, the loop's start) and its
    registered "at the last of `length` values" flag (value + 1 == length), so that the loop's
    end is a flip-flop rather than a compare in front of the enables it drives."""
    if value is None:
        return [counter.eq(0), last.eq(length == 1)]
    return [counter.eq(value), last.eq(value + 1 == length)]
