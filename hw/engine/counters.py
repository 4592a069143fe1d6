"""The core's performance counters: one per (phase, kind), kinds in `params.CTR_KINDS`, read through
a pipelined path with the scratchpads' read latency (the host port's SEL_CTR).

Only one phase counts at a time, so the counts live in one small LUT RAM per kind (a word per
phase) and in one active counter per kind for the phase that is counting: when the phase changes,
the sum of each active count and its RAM word is registered and written into the word a cycle
later, and the counter starts on the new phase. In that cycle the active phase is another one,
so no switch reads a word still being written, and a read of that word takes the registered sum.
Counter (phase, kind) is thus its RAM word (0 until first written after a clear) plus the active
count when that phase is the active one: a LUT RAM word per counter, where a register and an
adder per counter and a 64:1 read mux would cost about a tenth of the engine's cells.
"""
from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

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
        # events and phase registered twice (they come from across the die); counting runs two
        # cycles late, a clear one cycle late, as the host reads long after the last event
        ev1, ev, ph1, ph, clear = (Signal(s, name=n, reset_less=True) for n, s in (
            ("ctr_ev1", kinds), ("ctr_ev2", kinds), ("ctr_ph1", range(N_PHASES)),
            ("ctr_ph2", range(N_PHASES)), ("ctr_clear", 1)))
        m.d.sync += [ev1.eq(self.events), ev.eq(ev1), ph1.eq(self.phase), ph.eq(ph1),
                     clear.eq(self.clear)]
        cur = Signal(range(N_PHASES), name="ctr_phase")  # the phase the active counts belong to
        written = Signal(N_PHASES, name="ctr_written")  # the phases whose RAM words hold counts
        cur_written = Signal(name="ctr_cur_written")  # written[cur], as a register
        switch = Signal(name="ctr_switch")  # the phase changes: its counts into RAM, the new one starts
        m.d.comb += switch.eq(~clear & (ph != cur))
        with m.If(clear):
            m.d.sync += [written.eq(0), cur_written.eq(0)]
        with m.Elif(switch):
            m.d.sync += [written.eq(written | (1 << cur)), cur.eq(ph),
                         cur_written.eq(written.bit_select(ph, 1))]
        # the write a switch makes, a cycle later: phase, enable and each kind's sum
        wr_ph = Signal(range(N_PHASES), name="ctr_wr_phase", reset_less=True)
        wr_en = Signal(name="ctr_wr_en")
        m.d.sync += [wr_ph.eq(cur), wr_en.eq(switch)]
        act = [Signal(CTR_BITS, name=f"ctr_act_{k}") for k in CTR_KINDS]
        sums = [Signal(CTR_BITS, name=f"ctr_sum_{k}", reset_less=True) for k in CTR_KINDS]
        rams = []
        for k, name in enumerate(CTR_KINDS):
            m.submodules[f"ram_{name}"] = ram = Memory(shape=unsigned(CTR_BITS), depth=N_PHASES, init=[])
            wr, old, rd = ram.write_port(), ram.read_port(domain="comb"), ram.read_port(domain="comb")
            m.d.comb += [old.addr.eq(cur), wr.addr.eq(wr_ph), wr.en.eq(wr_en), wr.data.eq(sums[k])]
            m.d.sync += sums[k].eq(Mux(cur_written, old.data, 0) + act[k])
            with m.If(clear):
                m.d.sync += act[k].eq(0)
            with m.Elif(switch):
                m.d.sync += act[k].eq(ev[k])
            with m.Else():
                m.d.sync += act[k].eq(act[k] + ev[k])
            rams.append(rd)

        # read: the address delayed latency - 3 cycles (as the scratchpads' words), then the RAM
        # word and the active count registered, their sum, the result
        ca = self.rd_addr
        for k in range(self.latency - 3):
            r = Signal(6, name=f"ctr_addr_d{k + 1}", reset_less=True)
            m.d.sync += r.eq(ca)
            ca = r
        rp, rk = ca[2:], ca[:2]
        word, live = (Signal(CTR_BITS, name=n, reset_less=True) for n in ("ctr_rd_word", "ctr_rd_live"))
        for rd in rams:
            m.d.comb += rd.addr.eq(rp)
        stored = Mux(wr_en & (wr_ph == rp), Array(sums)[rk], Array(rd.data for rd in rams)[rk])
        m.d.sync += [word.eq(Mux(written.bit_select(rp, 1), stored, 0)),
                     live.eq(Mux(rp == cur, Array(act)[rk], 0))]
        total, out = (Signal(CTR_BITS, name=n, reset_less=True) for n in ("ctr_rd_sum", "ctr_rd"))
        m.d.sync += [total.eq(word + live), out.eq(total)]
        m.d.comb += self.rd_data.eq(out)
        return m
