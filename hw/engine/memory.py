"""An engine memory: `depth` words split into block-RAM-sized banks, pipelined for Fmax.

An ECP5 DP16KD's clock-to-output without its output register (5.83 ns at speed 6 in nextpnr) leaves no time
at 150 MHz for the bank-select mux of a deep memory or for a route across the die, and one address
register fanning out to every block RAM of a deep memory is a long net. So every path into and out of the RAMs
starts and ends at a register next to them:

    read  (latency `BANK_READ_LATENCY`, free-running: no clock enables, the engine never stalls
          a read; `PingPongMemory` registers the engine's and the host's read address once more
          in front of it, and the word after its two sets' select: `READ_LATENCY`):
        0  address register as presented (the engine / host select in front of it: no bank decode
                                          behind it)
        1  per-bank address registers    (the route to a far bank is the whole stage)
        2  block RAM read                (the RAM's own address register)
        3  per-bank output register      (a plain register, packed into the DP16KD's own output
                                          register for ECP5 by sim.ebr_outreg: without it the
                                          RAM's clock-to-out is 5.83 ns in nextpnr's timing model,
                                          plus >= 1.04 ns of route to the nearest slice)
        4  bank select (each bank's register gated by its registered hit, ORed) -> output register
    write (latency `WRITE_LATENCY`: in the RAM three clock edges after it is presented):
        1  address, data and lane enables registered as presented (the engine / host select in
           front of them comes from a register with ~800 loads: no bank decode behind it)
        2  bank hits decoded into one register per bank; address, data and enables registered
           again beside them (the decode is not in front of the route to a far bank)
        3  registered per bank, only for the bank that holds the address

Banks are as deep as one DP16KD configuration that holds a whole lane per block RAM column:
1024 words (1024 x 18) for 10- to 18-bit lanes, else 2048 (2048 x 9; wider lanes take several),
but for 19- to 36-bit lanes 1024 words where the memory is no deeper (a 24-bit lane then takes
two 1024 x 18 block RAMs, not three of 2048 x 9 half empty).
yosys maps each bank on its own, so the depth mux is ours and registered; a last bank deeper than
512 words is padded to the full bank depth (yosys would split 1408 words into 1024 + 384, with a
mux of its own behind the RAMs).

The engine never reads and writes the same word in one cycle: commands are separated by a flush,
every tensor has its own region (`hw.engine.compiler`), and the SGD read-modify-write writes a
word more than `rows` cycles after the row's reads of it (checked in `hw.engine.core`). So the
RAMs carry yosys' `no_rw_check`; without it yosys puts address comparators and a bypass mux behind
every RAM to emulate read-before-write across the two DP16KD ports.
"""
from __future__ import annotations

import operator
from functools import reduce

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.fanout import lane_mux, replicated_reg

from .params import ADDR_W
from .pipeline import delayed

BANK_READ_LATENCY = 5  # a BankedMemory's
# an engine memory's (PingPongMemory, and the core's PMEM): the read address is registered once
# per memory before the BankedMemory and the word once after its two sets' select (one source
# register reaching every set across the die, or the sets' select in front of the consumers'
# muxes, would take most of a cycle in route)
READ_LATENCY = BANK_READ_LATENCY + 2
WRITE_LATENCY = 3  # edges from a write presented on wr_* to the word in the RAM


def bank_depth(granularity: int | None, depth: int) -> int:
    if granularity is None:
        return 2048
    return 1024 if 9 < granularity <= 18 or (18 < granularity <= 36 and depth <= 1024) else 2048


class BankedMemory(wiring.Component):
    """`depth` words of `width` bits; `wr_en` has one bit per `granularity`-bit lane (or one bit)."""

    read_latency = BANK_READ_LATENCY
    write_latency = WRITE_LATENCY

    def __init__(self, width: int, depth: int, granularity: int | None = None) -> None:
        if granularity is not None and width % granularity:
            raise ValueError(f"width {width} is not a multiple of the lane width {granularity}")
        if not 1 <= depth <= 1 << ADDR_W:
            raise ValueError(f"depth must be in 1..{1 << ADDR_W}, got {depth}")
        self.width, self.depth, self.granularity = width, depth, granularity
        self.bank_depth = bank_depth(granularity, depth)
        lanes = width // granularity if granularity else 1
        super().__init__({
            "rd_addr": In(ADDR_W), "rd_data": Out(width),
            "wr_addr": In(ADDR_W), "wr_data": In(width), "wr_en": In(lanes),
        })

    @property
    def banks(self) -> int:
        return -(-self.depth // self.bank_depth)

    def elaborate(self, platform) -> Module:
        m = Module()
        nb = self.banks
        bd = self.bank_depth
        ab = (bd - 1).bit_length()
        # Bank hits only where there are several banks: a one-bank memory's would be registers
        # holding 1, which yosys merges across all memories into one flip-flop enabling their
        # RAMs' address and data registers all over the die.
        rd_bank = [Signal(name=f"rd_hit{k}") for k in range(nb)]  # this cycle's read targets bank k
        outs = []
        w_addr, w_data, w_en = (Signal(len(x), name=f"{n}_q", reset_less=n != "wr_en") for n, x in
                                (("wr_addr", self.wr_addr), ("wr_data", self.wr_data), ("wr_en", self.wr_en)))
        m.d.sync += [w_addr.eq(self.wr_addr), w_data.eq(self.wr_data), w_en.eq(self.wr_en)]
        w_addr2, w_data2, w_en2 = (Signal.like(x, name=f"{x.name}2") for x in (w_addr, w_data, w_en))
        m.d.sync += [w_addr2.eq(w_addr), w_data2.eq(w_data), w_en2.eq(w_en)]
        r_addr = Signal(len(self.rd_addr), name="rd_addr_q", reset_less=True)
        m.d.sync += r_addr.eq(self.rd_addr)
        for b in range(nb):
            hit_w = delayed(m, w_addr[ab:] == b, 1, f"wr_hit{b}") if nb > 1 else Const(1)
            m.d.comb += rd_bank[b].eq((r_addr[ab:] == b) if nb > 1 else 1)
            d = min(bd, self.depth - b * bd)
            d = bd if d > 512 else d
            mem = Memory(shape=unsigned(self.width), depth=d, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"bank{b}"] = mem
            rp = mem.read_port()
            wp = mem.write_port(granularity=self.granularity) if self.granularity else mem.write_port()
            # Each bank has its own address and write registers (next to its RAMs; loaded only
            # for accesses to this bank, so synthesis cannot merge the copies back into one
            # die-spanning net), and its own output register, zero unless the read was this
            # bank's: the bank select is an OR of the registered outputs.
            ra, wa, wd = (Signal(len(x), name=f"bank{b}_{n}", reset_less=True) for n, x in
                          (("rd_addr", rp.addr), ("wr_addr", wp.addr), ("wr_data", self.wr_data)))
            we = Signal(len(self.wr_en), name=f"bank{b}_wr_en")
            with m.If(rd_bank[b]):
                m.d.sync += ra.eq(r_addr)
            with m.If(hit_w):
                m.d.sync += [wa.eq(w_addr2), wd.eq(w_data2)]
            m.d.sync += we.eq(Mux(hit_w, w_en2, 0))
            m.d.comb += [rp.addr.eq(ra), wp.addr.eq(wa), wp.data.eq(wd), wp.en.eq(we)]
            # A plain register (no enable, no reset, one load per bit): the block RAM's own
            # output register takes its place on ECP5 (sim.ebr_outreg packs it there).
            q = Signal(self.width, name=f"bank{b}_q", reset_less=True)
            m.d.sync += q.eq(rp.data)
            outs.append(Mux(delayed(m, rd_bank[b], 3, f"rd_hit{b}_q"), q, 0) if nb > 1 else q)
        rd = Signal(self.width, name="rd_q", reset_less=True)  # data registers have no reset
        m.d.sync += rd.eq(reduce(operator.or_, outs))
        m.d.comb += self.rd_data.eq(rd)
        return m


class PingPongMemory(wiring.Component):
    """Two `BankedMemory` sets of one scratchpad: the engine works in one while the host side
    (LOAD / STORE) fills and drains the other; `side` names the engine's set (the other is the
    host's). Both sides have the `BankedMemory` ports and latencies: e_* for the engine, h_* for
    the host. `side` changes only between runs, while nothing is in flight on either side (the sets
    follow it a cycle later)."""

    read_latency = READ_LATENCY
    write_latency = WRITE_LATENCY

    def __init__(self, width: int, depth: int, granularity: int | None = None) -> None:
        self.sets = [BankedMemory(width, depth, granularity) for _ in range(2)]
        self.width, self.depth = width, depth
        lanes = len(self.sets[0].wr_en)
        super().__init__({
            "side": In(1),
            **{f"{s}_{n}": v for s in ("e", "h") for n, v in (
                ("rd_addr", In(ADDR_W)), ("rd_data", Out(width)), ("wr_addr", In(ADDR_W)),
                ("wr_data", In(width)), ("wr_en", In(lanes)))},
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        # `side` selects ~200 bits per port of each set: registered copies (hw.fanout) per set
        # for its read address, and per set and lane for its writes (a lane's RAMs lie anywhere
        # on the die: one copy for a set's whole word spanned 111 tiles in the placed engine).
        # The copies follow `side` a cycle late; nothing reaches either side in the cycles after
        # a swap.
        lanes = len(self.e_wr_en)
        per_set = 1 + lanes  # the read address, then each lane's write select
        sel = replicated_reg(m, platform, self.side, 2 * per_set, "side")
        e_rd, h_rd = (replicated_reg(m, platform, a, 1, f"{n}_rd_addr")[0]
                      for n, a in (("e", self.e_rd_addr), ("h", self.h_rd_addr)))
        # the side each read was presented with (a cycle late), its last register per lane
        side_rd = replicated_reg(m, platform, delayed(m, sel[0], BANK_READ_LATENCY - 1, "side_q"),
                                 lanes, "side_rd")
        for k, mem in enumerate(self.sets):
            m.submodules[f"set{k}"] = mem
            rd, *wr = (c == k for c in sel[k * per_set:(k + 1) * per_set])  # the engine's set
            m.d.comb += [mem.rd_addr.eq(Mux(rd, e_rd, h_rd)),
                         mem.wr_addr.eq(Mux(wr[0], self.e_wr_addr, self.h_wr_addr)),
                         mem.wr_data.eq(lane_mux(wr, self.e_wr_data, self.h_wr_data)),
                         mem.wr_en.eq(lane_mux(wr, self.e_wr_en, self.h_wr_en))]
        s0, s1 = self.sets
        e_q, h_q = (Signal(self.width, name=f"{n}_rd_q", reset_less=True) for n in "eh")
        m.d.sync += [e_q.eq(lane_mux(side_rd, s1.rd_data, s0.rd_data)),
                     h_q.eq(lane_mux(side_rd, s0.rd_data, s1.rd_data))]
        m.d.comb += [self.e_rd_data.eq(e_q), self.h_rd_data.eq(h_q)]
        return m
