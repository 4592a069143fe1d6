"""Replicated registers: one value (usually a control bit) registered into several flip-flops that
synthesis keeps apart, so that each copy drives only a local group of loads.

Why: yosys merges flip-flops with equal inputs (opt_merge), so `n` behavioural copies of a register
become one flip-flop whose net spans every load. For ECP5 synthesis each copy is therefore a
TRELLIS_FF instance (a primitive, which opt_merge leaves alone); elsewhere (Verilator, formal, the
Amaranth simulator) the copies are plain registers, cycle-identical.
"""
from __future__ import annotations

from amaranth import Cat, ClockSignal, Instance, Module, Mux, Signal, Value

from .dsp import targets_ecp5


def replicated_reg(m: Module, platform, d: Value, n: int, name: str) -> list[Signal]:
    """`n` registers, each holding `d` one cycle later (no reset, no enable); one flip-flop per bit
    of each copy."""
    d = Value.cast(d)
    qs = [Signal(d.shape(), name=f"{name}_{k}", reset_less=True) for k in range(n)]
    for k, q in enumerate(qs):
        if targets_ecp5(platform):
            for b in range(len(d)):
                sfx = f"{k}" if len(d) == 1 else f"{k}_{b}"
                m.submodules[f"{name}_ff{sfx}"] = Instance(
                    "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
                    p_REGSET="RESET", p_SRMODE="ASYNC",
                    i_CLK=ClockSignal(), i_LSR=0, i_CE=1, i_DI=d[b], o_Q=q[b])
        else:
            m.d.sync += q.eq(d)
    return qs


def lane_mux(sels: list[Value], a: Value, b: Value) -> Value:
    """Mux(sels[j], a, b) on lane j of len(sels) equal lanes of a and b: each lane's select its
    own copy (`replicated_reg`), so that no one select net spans a word whose lanes lie apart."""
    w = len(a) // len(sels)
    return Cat(*(Mux(s, a[j * w:(j + 1) * w], b[j * w:(j + 1) * w]) for j, s in enumerate(sels)))
