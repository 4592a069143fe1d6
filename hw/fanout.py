"""Replicated registers: one value (usually a control bit) registered into several flip-flops that
synthesis keeps apart, so that each copy drives only a local group of loads.

Why: yosys merges flip-flops with equal inputs (opt_merge), so `n` behavioural copies of a register
become one flip-flop whose net spans every load. For ECP5 synthesis each copy is therefore a
TRELLIS_FF instance (a primitive, which opt_merge leaves alone); elsewhere (Verilator, formal, the
Amaranth simulator) the copies are plain registers, cycle-identical.
"""
from __future__ import annotations

from amaranth import ClockSignal, Instance, Module, Signal, Value

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
