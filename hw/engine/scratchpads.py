"""The core's scratchpads: one `PingPongMemory` per memory selector, the engine's ports per memory,
and the host port (LOAD writes, STORE reads, and the performance counters as SEL_CTR)."""
from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import replicated_reg

from .counters import CTR_BITS
from .memory import READ_LATENCY, PingPongMemory
from .params import ADDR_W, CMD_WORD_BITS, MEM_NAMES, SEL_CMEM, SEL_CTR, EngineParams
from .pipeline import data_reg, delayed

HOST_READ_LATENCY = READ_LATENCY + 2  # memory pipeline + a two-level registered source select


def lane_bits(p: EngineParams, sel: int) -> int | None:
    """A memory's write granularity (one enable per lane), None for the command memory."""
    return None if sel == SEL_CMEM else p.lane_width(sel)


def word_bits(p: EngineParams, sel: int) -> int:
    return CMD_WORD_BITS if sel == SEL_CMEM else p.lanes * p.lane_width(sel)


class Scratchpads(wiring.Component):
    """Ports per memory NAME (`params.MEM_NAMES`): NAME_rd_addr / NAME_rd_data and NAME_wr_addr /
    NAME_wr_data / NAME_wr_en for the engine's set; `side` picks that set. The host port: one write
    per cycle (hw_*) into any memory, one read per cycle (hr_*, data `HOST_READ_LATENCY` cycles
    later) from any memory or, as SEL_CTR, from `ctr_data` (`READ_LATENCY` after its address)."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        ports = {"side": In(1), "hw_en": In(1), "hw_sel": In(4), "hw_addr": In(ADDR_W),
                 "hw_data": In(p.host_data_bits), "hr_sel": In(4), "hr_addr": In(ADDR_W),
                 "hr_data": Out(p.word_bits), "ctr_data": In(CTR_BITS)}
        for sel, name in MEM_NAMES.items():
            w, g = word_bits(p, sel), lane_bits(p, sel)
            ports |= {f"{name}_rd_addr": In(ADDR_W), f"{name}_rd_data": Out(w),
                      f"{name}_wr_addr": In(ADDR_W), f"{name}_wr_data": In(w),
                      f"{name}_wr_en": In(w // g if g else 1)}
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.p
        srcs = {SEL_CTR: self.ctr_data}
        for sel, name in MEM_NAMES.items():
            w, g = word_bits(p, sel), lane_bits(p, sel)
            m.submodules[name] = mem = PingPongMemory(w, p.depth(sel), g)
            port = lambda n: getattr(self, f"{name}_{n}")  # noqa: E731
            m.d.comb += [mem.side.eq(self.side), mem.e_rd_addr.eq(port("rd_addr")),
                         port("rd_data").eq(mem.e_rd_data), mem.e_wr_addr.eq(port("wr_addr")),
                         mem.e_wr_data.eq(port("wr_data")), mem.e_wr_en.eq(port("wr_en")),
                         mem.h_rd_addr.eq(self.hr_addr)]
            # A host write is registered per memory first: the host data register reaches every
            # memory across the die. Address and data are copied every cycle into one register
            # per memory (hw.fanout keeps the copies apart; loading them only for their memory's
            # writes would put the select decode in front of ~80 enables); they are used only
            # when the registered write enable is.
            h_en = Signal(name=f"host_wr{sel}")
            h_addr, = replicated_reg(m, platform, self.hw_addr, 1, f"host_wr{sel}_addr")
            h_data, = replicated_reg(m, platform, self.hw_data[:w], 1, f"host_wr{sel}_data")
            m.d.sync += h_en.eq(self.hw_en & (self.hw_sel == sel))
            m.d.comb += [mem.h_wr_addr.eq(h_addr), mem.h_wr_data.eq(h_data),
                         mem.h_wr_en.eq(Mux(h_en, (1 << len(mem.h_wr_en)) - 1, 0))]
            srcs[sel] = mem.h_rd_data
        # host read: every source through a two-level select
        hr_sel = delayed(m, self.hr_sel, READ_LATENCY, "hr_sel")
        part = [data_reg(p.word_bits, name=f"hr_part{g}") for g in range(4)]  # by hr_sel[2:]
        for sel, v in srcs.items():
            with m.If(hr_sel[:2] == sel % 4):
                m.d.sync += part[sel // 4].eq(v)
        hr_sel2 = delayed(m, hr_sel[2:], 1, "hr_sel")
        hr_q = data_reg(p.word_bits)
        m.d.sync += hr_q.eq(Array(part)[hr_sel2])
        m.d.comb += self.hr_data.eq(hr_q)
        return m
