"""Test wrapper: several instances of one unit class fed the same input stream, in lock-step.

One Verilator build then checks every parameter value at once (all NITRO-ReLU slopes, all scaling
factors of the paper's layers) instead of one build per value. Fork: a transfer happens when every
instance is ready. Join: the output transfers when every instance is valid. Instances of different
latency stay correct (the faster one waits with its output valid).
"""
from __future__ import annotations

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def output_key(k: int) -> str:
    """The field of a Bank's output that carries unit k's."""
    return f"u{k}"


class Bank(wiring.Component):
    """o.payload = StructLayout {u0: out of units[0], u1: ...}; i.payload = the common input."""

    def __init__(self, units: list[wiring.Component]) -> None:
        if not units:
            raise ValueError("Bank needs at least one unit")
        in_shape = units[0].i.payload.shape()
        for u in units[1:]:
            if u.i.payload.shape() != in_shape:
                raise ValueError("Bank: all units must take the same input payload layout")
        self.units = units
        out_layout = data.StructLayout({output_key(k): u.o.payload.shape() for k, u in enumerate(units)})
        super().__init__({
            "i": In(stream.Signature(in_shape)), "o": Out(stream.Signature(out_layout)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        us = self.units
        for k, u in enumerate(us):
            m.submodules[output_key(k)] = u
        all_ready = 1
        all_valid = 1
        for u in us:
            all_ready = all_ready & u.i.ready
            all_valid = all_valid & u.o.valid
        m.d.comb += [self.i.ready.eq(all_ready), self.o.valid.eq(all_valid)]
        for k, u in enumerate(us):
            others_ready = 1
            others_valid = 1
            for j, v in enumerate(us):
                if j != k:
                    others_ready = others_ready & v.i.ready
                    others_valid = others_valid & v.o.valid
            m.d.comb += [
                u.i.payload.eq(self.i.payload),
                u.i.valid.eq(self.i.valid & others_ready),
                u.o.ready.eq(self.o.ready & others_valid),
                self.o.payload[output_key(k)].eq(u.o.payload),
            ]
        return m
