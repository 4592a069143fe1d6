"""The compute core of the streaming engine (`hw.engine.top`): scratchpads, MAC array and output
pipelines, run by small components.

    sequencer (`sequencer.CommandSequencer`): GEMM commands from the command scratchpad until END
    issue     (`issue.OperandIssue`): counters (mt, nt, k) -> A word (AMEM_C | AMEM_R) and B word
              (WMEM | WTMEM | DMEM) -> MacArray (outer product, rows x cols, int32 wrap); K beats
              per C tile
    drain     (`drain.RowDrain`): finished C rows and their output addresses, then by op:
      serial ops (`serializer.RowSerializer`, one C element per cycle; a chunk of K adds each
      element's partial sum from PMEM, and writes the sum back there instead):
        scale_relu : ScaleClip (SF) -> NitroReluForward           -> a, s   (chunks of K only)
        scale_loss : ScaleClip (SF) -> LossGradient(y)            -> e, y_hat
        sgd        : WMEM read -> IntegerSGDUpdate(G, W, D, eta)      -> WMEM (+ WTMEM copy)
      row ops (cols elements per cycle):
        relu_bwd   : C row + SMEM row s -> cols x NitroReluBackward -> DMEM row
        scale_relu : cols x (ScaleClip -> NitroReluForward) -> SMEM, AMEM_R rows, AMEM_C columns
                     (`rowscale.RowScale`)

Timing (ECP5, 150 MHz target): every scratchpad is two `memory.BankedMemory` sets (per-bank
address, output and select stages, the output register packed into the block RAM for synthesis:
reads arrive `READ_LATENCY` cycles after the address; writes are registered before and after the
bank decode and land `WRITE_LATENCY` edges later). Nothing stalls a pipeline register; the
elementwise units, whose every output the engine takes, are bare pipes (`always_ready`). Control
bits with wide fan-out are registered once per group of their loads (`hw.fanout`). Only control
state has a reset.

Host port (the LOAD / STORE side, also while the core runs): every scratchpad has two sets
(`memory.PingPongMemory`); the core works in one, the host port reaches the other, and
`swap` (while idle) exchanges them. One write per cycle into any memory (hw_*), one read per cycle
(hr_*, data `HOST_READ_LATENCY` cycles later) from any memory or from the performance counters
(SEL_CTR): counter index = phase * 4 + kind, kinds in `params.CTR_KINDS`, reset by `ctr_clear`.
A host write presented in cycle w is registered per memory, then takes the memory's write
pipeline (`WRITE_LATENCY`): it is in its RAM after the clock edge ending cycle w + 4; a read
presented in cycle r >= w + 2 sees it (the RAM reads at the edge ending cycle r + 3). `swap` may
follow the last write two cycles later (the write then enters its set's pipeline).
"""
from __future__ import annotations

from functools import cache

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import lane_mux, replicated_reg

from .array import mac_array
from .counters import PhaseCounters
from .drain import RowDrain
from .issue import OperandIssue
from .memory import READ_LATENCY, WRITE_LATENCY, BankedMemory
from .latencies import PipeLatencies
from .outputs import WRITTEN, OutputOps
from .params import (
    ADDR_W, MEM_NAMES, OP_POOL, SEL_AMEM_C, SEL_AMEM_R, SEL_CMEM, SEL_DMEM, SEL_SMEM, SEL_WMEM,
    SEL_WTMEM,
    SEL_YMEM, EngineParams,
)
from .pipeline import data_reg
from .pool import PoolUnit
from .scratchpads import Scratchpads
from .sequencer import CommandSequencer, Flush
from .serializer import DRAIN_FIELDS, RowSerializer


@cache  # the performance model asks once per run
def command_flush(p: EngineParams) -> Flush:
    """Each pipe's depth behind the drain plus the memories' write registers and the margin, and
    at least the next command's fetch (`hold`: the sequencer fetches it during the flush)."""
    lat, RL, tail = PipeLatencies.of(p), READ_LATENCY, WRITE_LATENCY + p.wait_cycles
    serial = p.lanes + 1 + RL  # the serializer's last element and its memory word (E1)
    fetch = p.cmd_words + RL
    depths = dict(full=serial + lat.deepest + tail, p_out=serial + 1 + tail,
                  sgd=serial + lat.sgd + 1 + tail, relu_bwd=1 + RL + lat.relu_bwd + tail,
                  rows=1 + lat.scale + p.lanes + tail)
    return Flush(**{k: max(v, fetch) for k, v in depths.items()}, hold=fetch)


class Engine(wiring.Component):
    def __init__(self, params: EngineParams | None = None) -> None:
        self.p = p = params or EngineParams()
        hb = p.host_data_bits
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1), "ctr_clear": In(1),
            "swap": In(1),
            "hw_en": In(1), "hw_sel": In(4), "hw_addr": In(ADDR_W), "hw_data": In(hb),
            "hr_sel": In(4), "hr_addr": In(ADDR_W), "hr_data": Out(p.word_bits),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p, RL = self.p, READ_LATENCY

        # ---- scratchpads: the engine's set and the host's (`swap` exchanges them) -----------
        m.submodules.spads = sp = Scratchpads(p)
        side = Signal()
        with m.If(self.swap & ~self.busy):
            m.d.sync += side.eq(~side)
        m.d.comb += [sp.side.eq(side), sp.hw_en.eq(self.hw_en),
                     sp.hw_sel.eq(self.hw_sel), sp.hw_addr.eq(self.hw_addr),
                     sp.hw_data.eq(self.hw_data), sp.hr_sel.eq(self.hr_sel),
                     sp.hr_addr.eq(self.hr_addr), self.hr_data.eq(sp.hr_data)]
        mem = {sel: (getattr(sp, f"{name}_rd_addr"), getattr(sp, f"{name}_rd_data"))
               for sel, name in MEM_NAMES.items()}

        # ---- units ------------------------------------------------------------------------------
        m.submodules.mac = mac = mac_array(p)
        m.submodules.ops = ops = OutputOps(p)
        m.submodules.seq = seq = CommandSequencer(p, command_flush(p))
        m.submodules.issue = issue = OperandIssue(p)
        m.submodules.drain = drain = RowDrain(p)
        m.submodules.ser = ser = RowSerializer(p)
        cmd = seq.cmd
        # a command that ends no C tile (k_hold) is done when its last beat is issued: the next
        # command's beats (the rest of K) follow it into the array
        hold, pooling = data_reg(name="k_hold"), data_reg(name="pooling")
        # the pool's source scratchpad, a cycle after the command's: its first read is later
        pool_r = data_reg(name="pool_a_sel")
        m.d.sync += [hold.eq(cmd.k_hold), pooling.eq(cmd.op == OP_POOL), pool_r.eq(cmd.a_sel)]
        m.submodules.pool = pool = PoolUnit(p)
        m.d.comb += [pool.cmd.eq(cmd), pool.start.eq(seq.pool), pool.s_data.eq(mem[SEL_SMEM][1]),
                     pool.rd_data.eq(Mux(pool_r, mem[SEL_AMEM_R][1], mem[SEL_AMEM_C][1]))]
        m.d.comb += [seq.start.eq(self.start), seq.cm_data.eq(mem[SEL_CMEM][1]),
                     seq.drain_done.eq(Mux(pooling, pool.done, drain.done | (hold & issue.idle))),
                     self.busy.eq(seq.busy), self.done.eq(seq.done)]

        # ---- issue -> MAC array -> drain -> serializer -> output ops -------------------------------
        m.d.comb += [issue.cmd.eq(cmd), issue.start.eq(Cat(seq.gemm[0], seq.gemm[4]))]
        m.d.comb += [getattr(issue, n).eq(mem[sel][1]) for n, sel in
                     (("ac", SEL_AMEM_C), ("ar", SEL_AMEM_R), ("wm", SEL_WMEM), ("wt", SEL_WTMEM),
                      ("dm", SEL_DMEM))]
        wiring.connect(m, issue.o, mac.i)
        wiring.connect(m, mac.o, drain.i)
        m.d.comb += [drain.cmd.eq(cmd), drain.start.eq(seq.gemm[:4]), drain.launch.eq(seq.launch),
                     drain.serial.eq(ops.serial)]
        m.d.comb += [ser.cmd.eq(cmd), ser.load.eq(drain.o_fire & ops.serial),
                     ser.row.eq(drain.row_data)]
        m.d.comb += [getattr(ser, n).eq(getattr(drain, n)) for n in DRAIN_FIELDS]
        # the partial sums of a GEMM run in chunks of K: the core's own (no host side, one set)
        m.submodules.pmem = pmem = BankedMemory(p.acc_bits, p.pmem_depth)
        # address and word registered as every engine memory's (READ_LATENCY)
        p_rd, p_word = data_reg(ADDR_W, name="pmem_rd_addr"), data_reg(p.acc_bits, name="pmem_word")
        m.d.sync += [p_rd.eq(ser.e.p), p_word.eq(pmem.rd_data)]
        m.d.comb += [pmem.rd_addr.eq(p_rd), ops.p_word.eq(p_word),
                     pmem.wr_addr.eq(ops.pmem_wr_addr), pmem.wr_data.eq(ops.pmem_wr_data),
                     pmem.wr_en.eq(ops.pmem_wr_en)]
        m.d.comb += [ops.cmd.eq(cmd), ops.e_valid.eq(ser.valid), ops.e.eq(ser.e),
                     ops.row_v.eq(drain.row_v), ops.row.eq(drain.row_data),
                     ops.row_rs.eq(drain.row_lanes),
                     ops.row_addr.eq(drain.row_addr1), ops.row_addr2.eq(drain.row_addr2),
                     ops.col_addr.eq(drain.col_addr), ops.nt.eq(drain.nt), ops.m_row.eq(drain.m_row),
                     ops.y_word.eq(mem[SEL_YMEM][1]), ops.w_word.eq(mem[SEL_WMEM][1]),
                     ops.s_word.eq(mem[SEL_SMEM][1])]

        # ---- the engine's scratchpad ports -------------------------------------------------------
        # the max-pool unit writes its source scratchpad (AMEM_C or AMEM_R) and SMEM (marks)
        # while no GEMM runs: its write enables are zero otherwise, the output ops' during it
        pool_wr = {SEL_AMEM_C: (pool.wr_addr, pool.wr_data, Mux(pool_r, 0, pool.wr_en)),
                   SEL_AMEM_R: (pool.wr_addr, pool.wr_data, Mux(pool_r, pool.wr_en, 0)),
                   SEL_SMEM: (pool.mk_addr, pool.mk_data, pool.mk_en)}
        for sel in WRITTEN:
            name = MEM_NAMES[sel]
            port = [getattr(ops, f"{name}_wr_{k}") for k in ("addr", "data", "en")]
            if sel in pool_wr:  # the select once for the address and once per lane, two cycles
                pa, pd, pe = pool_wr[sel]  # after DECODE (as the output ops' selects)
                ps = replicated_reg(m, platform, pooling, p.lanes + 1, f"pool_{name}")
                port = [Mux(ps[0], pa, port[0]), lane_mux(ps[1:], pd, port[1]), port[2] | pe]
            m.d.comb += [getattr(sp, f"{name}_wr_{k}").eq(v)
                         for k, v in zip(("addr", "data", "en"), port)]
        a_rd = Mux(pooling, pool.rd_addr, issue.a_addr)
        reads = {
            SEL_AMEM_C: a_rd, SEL_AMEM_R: a_rd,
            SEL_WMEM: Mux(ops.is_sgd, ser.e.a[3], issue.b_addr), SEL_WTMEM: issue.b_addr,
            SEL_DMEM: issue.b_addr, SEL_SMEM: Mux(pooling, pool.s_addr, drain.row_addr2),
            SEL_YMEM: ser.e.a[3],
            SEL_CMEM: seq.cm_addr,
        }
        m.d.comb += [mem[sel][0].eq(addr) for sel, addr in reads.items()]

        # ---- performance counters (read through the host port as SEL_CTR) ------------------------
        m.submodules.counters = ctr = PhaseCounters(RL)
        mac_fire = mac.i.valid & mac.i.ready
        m.d.comb += [ctr.events.eq(Mux(seq.busy, Cat(1, mac_fire, mac.i.valid & ~mac.i.ready,
                                                     seq.in_wait), 0)),
                     ctr.phase.eq(cmd.phase), ctr.clear.eq(self.ctr_clear),
                     ctr.rd_addr.eq(self.hr_addr[:6]), sp.ctr_data.eq(ctr.rd_data)]
        return m
