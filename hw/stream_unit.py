"""Shared skeleton of every pipelined NITRO-D unit: one stream in, one stream out, global stall.

A unit is a fixed-latency pipeline. All its registers advance together on `en = ~o.valid | o.ready`
(the output register is empty or being emptied), so back-pressure freezes the whole pipe and
nothing is lost or duplicated; `i.ready = en`. `en` depends only on the output handshake, never on
the datapath, which keeps it off the arithmetic's critical paths. Data registers are reset-less
(a bubble carries garbage that the valid chain ignores), so synthesis does not add reset muxes.
"""
from __future__ import annotations

from amaranth import Module, Signal, Value
from amaranth.hdl import ShapeCastable
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class Stages:
    """Registers of one stall-able pipeline; `reg` adds one pipeline register level to a value."""

    def __init__(self, m: Module, en: Value) -> None:
        self.m, self.en = m, en

    def reg(self, value, shape: ShapeCastable | None = None, name: str | None = None):
        """A register loaded from `value` when the pipe advances (shape: the value's, or `shape`)."""
        if shape is None:
            shape = value.shape()
        r = Signal(shape, name=name, reset_less=True)
        with self.m.If(self.en):
            self.m.d.sync += r.eq(value)
        return r

    def delay(self, value, n: int, name: str | None = None):
        """`value` delayed by n pipeline levels (n >= 0)."""
        for k in range(n):
            value = self.reg(value, name=f"{name}_d{k + 1}" if name else None)
        return value


class PipelinedUnit(wiring.Component):
    """Base of the elementwise units. Subclasses set `latency` and implement `datapath`.

    `datapath(m, st, payload)` builds exactly `latency` register levels with `st.reg` and returns the
    output payload: a value (normally the last register), a dict of struct fields or a list of
    array elements. Latency is cycles from the input transfer to
    the output becoming valid, when not stalled.
    """

    latency: int

    def __init__(self, in_shape: ShapeCastable, out_shape: ShapeCastable) -> None:
        super().__init__({
            "i": In(stream.Signature(in_shape)),
            "o": Out(stream.Signature(out_shape)),
        })

    def datapath(self, m: Module, st: Stages, payload):
        raise NotImplementedError

    def elaborate(self, platform) -> Module:
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        st = Stages(m, en)
        out = self.datapath(m, st, self.i.payload)
        if isinstance(out, dict):  # struct payload, field by field
            m.d.comb += [self.o.payload[k].eq(v) for k, v in out.items()]
        elif isinstance(out, list):  # array payload, element by element
            m.d.comb += [self.o.payload[k].eq(v) for k, v in enumerate(out)]
        else:
            m.d.comb += self.o.payload.eq(out)
        valid = self.i.valid
        for k in range(self.latency):
            v = Signal(name=f"valid_{k + 1}")
            with m.If(en):
                m.d.sync += v.eq(valid)
            valid = v
        m.d.comb += self.o.valid.eq(valid)
        return m


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """Validate an integer elaboration parameter (bool rejected) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value
