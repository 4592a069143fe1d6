"""The core's performance counters: one per (phase, kind), kinds in `params.CTR_KINDS`, read through
a pipelined mux with the scratchpads' read latency (the host port's SEL_CTR)."""
from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import replicated_reg

from .params import CTR_KINDS, N_PHASES

CTR_BITS = 40


class PhaseCounters(wiring.Component):
    """`events` (one bit per kind, this cycle) counted into the counters of `phase`; `clear` zeroes
    them all; `rd_data` is counter `rd_addr` (= phase * kinds + kind) `latency` cycles later."""

    def __init__(self, latency: int) -> None:
        assert latency >= 4 and N_PHASES * len(CTR_KINDS) == 64
        self.latency = latency
        super().__init__({"events": In(len(CTR_KINDS)), "phase": In(range(N_PHASES)), "clear": In(1),
                          "rd_addr": In(6), "rd_data": Out(CTR_BITS)})

    def elaborate(self, platform) -> Module:
        m = Module()
        kinds = len(CTR_KINDS)
        ctrs = [Signal(CTR_BITS, name=f"ctr_{ph}_{CTR_KINDS[k]}", reset_less=True)
                for ph in range(N_PHASES) for k in range(kinds)]
        # The events and the phase are registered first (a one-hot phase), then each phase's
        # event bits once more, next to that phase's counters (one event net reaching all 64
        # counters' enables across the die was 6.1 ns of route); counting runs two cycles late.
        ev = Signal(kinds)
        ph_hot = Signal(N_PHASES)
        m.d.sync += [ev.eq(self.events), ph_hot.eq(Const(1, N_PHASES) << self.phase)]
        # a clear register per phase rather than one decode for all 2 560 counter bits
        clear = replicated_reg(m, platform, self.clear, N_PHASES, "ctr_clear")
        for ph in range(N_PHASES):
            en = Signal(kinds, name=f"ctr_en{ph}", reset_less=True)
            m.d.sync += en.eq(Mux(ph_hot[ph], ev, 0))
            for k in range(kinds):
                c = ctrs[ph * kinds + k]
                with m.If(clear[ph]):
                    m.d.sync += c.eq(0)
                with m.Elif(en[k]):
                    m.d.sync += c.eq(c + 1)
        # a 4:1 mux per register level over the index (64 -> 16 -> 4 -> 1), after latency - 3
        # cycles of address delay
        ca = self.rd_addr
        for k in range(self.latency - 3):
            r = Signal(6, name=f"ctr_addr_d{k + 1}", reset_less=True)
            m.d.sync += r.eq(ca)
            ca = r
        level = ctrs
        for lv in range(3):
            nxt = []
            for g in range(0, len(level), 4):
                r = Signal(CTR_BITS, name=f"ctr_rd{lv}_{g // 4}", reset_less=True)
                m.d.sync += r.eq(Array(level[g:g + 4])[ca[2 * lv:2 * lv + 2]])
                nxt.append(r)
            level = nxt
            d = Signal(6, name=f"ctr_addr{lv}", reset_less=True)
            m.d.sync += d.eq(ca)
            ca = d
        m.d.comb += self.rd_data.eq(level[0])
        return m
