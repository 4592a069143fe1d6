"""The core's command sequencer: fetches GEMM commands from the command scratchpad until an END,
holds the current one in a register, and tells the issue and drain sides when one starts.

A flush (`Flush`: cycles after the command is done, its last C row left the array or, for a
chunk of K that ends no tile, its last beat was issued, as deep as the command's output pipe)
separates commands, so a command's reads never overtake the previous command's writes. The next
command's words are read from the command scratchpad during the flush's last cycles (nothing
writes the engine's set while it runs), so it loads as the flush ends.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import replicated_reg

from .memory import READ_LATENCY
from .params import (
    ADDR_W, CMD_WORD_BITS, OP_END, OP_POOL, OP_RELU_BWD, OP_SGD, EngineParams, command_layout,
    row_scaled,
)
from .pipeline import data_reg

CMD_GROUPS = 6  # copies of the command register's load enable (hw.fanout)
# copies of "a GEMM starts" (the DECODE cycle of a non-END command), each for one group of the
# registers it loads: 0 the loop counters and drain counters, 1-3 output slot s's addresses,
# 4 the issue flag
GEMM_COPIES = 5


@dataclass(frozen=True)
class Flush:
    """Cycles the sequencer waits after a command is done (its last C row left the array, or
    its last beat was issued), by what its last writes still need."""

    full: int  # scale ops, max-pool: the serializer, the element's memory read, the scaling pipe
    p_out: int  # a chunk of K's partial sums: to PMEM one register after the adder
    sgd: int  # the IntegerSGD pipe
    relu_bwd: int  # whole rows: the SMEM word, the unit
    rows: int  # row-wide scaling (`params.row_scaled`): the lanes, then the last tile's columns
    hold: int  # a chunk that ends no tile writes nothing: only the next command's fetch

    def of(self, k_hold, p_in, p_out, op, mux=lambda c, a, b: a if c else b):
        """The flush of a command with these fields (Amaranth values with mux=Mux)."""
        return mux(k_hold, self.hold, mux(p_out, self.p_out, mux(
            op == OP_SGD, self.sgd, mux(op == OP_RELU_BWD, self.relu_bwd,
                                        mux(row_scaled(op, p_in, p_out), self.rows, self.full)))))


class CommandSequencer(wiring.Component):
    """start -> busy until an END command, then done. `cmd` is the command being run; `launch` is
    high in its DECODE cycle, `gemm` (GEMM_COPIES copies) in the same cycle when it is a GEMM,
    `pool` when it is a max-pool.
    `drain_done` (the command is done: its last C row has left the array, or its last beat is
    issued when it ends no tile) ends a command; `in_wait` marks the flush."""

    def __init__(self, p: EngineParams, flush: Flush) -> None:
        self.p, self.flush = p, flush
        self.cmd_layout = command_layout(p)
        super().__init__({
            "start": In(1), "drain_done": In(1),
            "cm_addr": Out(ADDR_W), "cm_data": In(CMD_WORD_BITS),
            "busy": Out(1), "done": Out(1), "in_wait": Out(1),
            "cmd": Out(self.cmd_layout), "launch": Out(1), "gemm": Out(GEMM_COPIES),
            "pool": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p, RL = self.p, READ_LATENCY
        ncw, cmd_w = p.cmd_words, p.cmd_bits
        cmd = data_reg(self.cmd_layout)
        pc = Signal(ADDR_W)
        fw = Signal(range(ncw + RL))
        busy, done = Signal(), Signal()
        fl = self.flush
        assert min(vars(fl).values()) >= ncw + RL, "the next command is fetched during the flush"
        wait_cnt = Signal(range(fl.full + 1))
        # this command's flush, registered from its fields (loaded two cycles before RUN)
        flush = Signal.like(wait_cnt)
        m.d.sync += flush.eq(fl.of(cmd.k_hold, cmd.p_in, cmd.p_out, cmd.op, Mux))
        # CMEM words shift in from the top every cycle (no enable on 512 flip-flops): in LOAD it
        # holds the ncw words FETCH read, in order
        cmd_sr = data_reg(ncw * CMD_WORD_BITS)
        m.d.sync += cmd_sr.eq(Cat(cmd_sr[CMD_WORD_BITS:], self.cm_data))
        m.d.comb += [self.cm_addr.eq((pc * ncw + fw)[:ADDR_W]), self.busy.eq(busy),
                     self.done.eq(done), self.cmd.eq(cmd)]

        with m.FSM(name="seq") as seq:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), busy.eq(1), done.eq(0)]
                    m.next = "ARM"
            with m.State("ARM"):  # one cycle: a host write of the cycle before `start` lands
                m.next = "FETCH"
            with m.State("FETCH"):  # ncw 64-bit words; the last arrives at fw = ncw + RL - 1
                m.d.sync += fw.eq(fw + 1)
                with m.If(fw == ncw + RL - 1):
                    m.d.sync += fw.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):  # the command register loads (below)
                m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(cmd.op == OP_END):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.drain_done):
                    m.d.sync += [wait_cnt.eq(flush), pc.eq(pc + 1)]
                    m.next = "WAIT"
            with m.State("WAIT"):  # the flush; its last ncw + RL cycles fetch the next command
                m.d.comb += self.in_wait.eq(1)
                m.d.sync += wait_cnt.eq(wait_cnt - 1)
                with m.If(wait_cnt < ncw + RL):
                    m.d.sync += fw.eq(fw + 1)
                with m.If(wait_cnt == 0):
                    m.d.sync += fw.eq(0)
                    m.next = "LOAD"

        # "the LOAD cycle", registered from FETCH's last word and replicated per slice of the
        # command register (one LOAD decode of the state register drove all ~430 enables), the
        # last copy for `launch` and the GEMM start
        fetched = (seq.ongoing("FETCH") & (fw == ncw + RL - 1)) | (seq.ongoing("WAIT") & (wait_cnt == 0))
        load_g = replicated_reg(m, platform, fetched, CMD_GROUPS + 1, "load")
        chunk = -(-cmd_w // CMD_GROUPS)
        for g in range(CMD_GROUPS):
            lo, hi = g * chunk, min((g + 1) * chunk, cmd_w)
            with m.If(load_g[g]):
                m.d.sync += cmd.as_value()[lo:hi].eq(cmd_sr[lo:hi])
        launch = Signal()
        m.d.sync += launch.eq(load_g[CMD_GROUPS])
        # "the DECODE cycle of a GEMM command", registered from the command being loaded: ~300
        # enables see a register, not a decode of launch & op != END
        incoming = data.View(self.cmd_layout, cmd_sr[:cmd_w])
        is_pool = incoming.op == OP_POOL
        gemm_g = replicated_reg(m, platform,
                                load_g[CMD_GROUPS] & (incoming.op != OP_END) & ~is_pool,
                                GEMM_COPIES, "gemm_launch")
        pool = Signal()
        m.d.sync += pool.eq(load_g[CMD_GROUPS] & is_pool)
        m.d.comb += [self.launch.eq(launch), self.gemm.eq(Cat(*gemm_g)), self.pool.eq(pool)]
        return m
