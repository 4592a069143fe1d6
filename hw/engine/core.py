"""The compute core of the streaming engine (`hw.engine.top`): scratchpads, MAC array and output
pipelines, run by small components.

    sequencer (`sequencer.CommandSequencer`): GEMM commands from the command scratchpad until END
    issue     (`issue.OperandIssue`): counters (mt, nt, k) -> A word (AMEM_C | AMEM_R) and B word
              (WMEM | WTMEM | DMEM) -> MacArray (outer product, rows x cols, int32 wrap); K beats
              per C tile
    drain     (`drain.RowDrain`): finished C rows and their output addresses, then by op:
      serial ops (`serializer.RowSerializer`, one C element per cycle):
        scale_relu : ProgDivider (SF) -> clip -> NitroReluForward  -> a, s
        scale_loss : ProgDivider (SF) -> clip -> LossGradient(y)    -> e, y_hat
        sgd        : WMEM read -> IntegerSGDUpdate(G, W, D, eta)      -> WMEM (+ WTMEM copy)
      row op (cols elements per cycle):
        relu_bwd   : C row + SMEM row s -> cols x NitroReluBackward -> DMEM row

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
presented in cycle r >= w + 3 sees it (the RAM reads at the edge ending cycle r + 2). `swap` may
follow the last write two cycles later (the write then enters its set's pipeline).
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.mac import MacArray
from hw.sgd import IntegerSGDUpdate

from .counters import PhaseCounters
from .drain import RowDrain
from .issue import OperandIssue
from .memory import READ_LATENCY, WRITE_LATENCY
from .outputs import ReluBackwardRow, ScalePipeline
from .params import (
    ADDR_W, MEM_NAMES, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, SEL_AMEM_C, SEL_AMEM_R,
    SEL_CMEM, SEL_DMEM, SEL_SMEM, SEL_WMEM, SEL_WTMEM, SEL_YMEM, EngineParams,
)
from .pipeline import data_reg, delayed
from .scratchpads import Scratchpads
from .sequencer import CommandSequencer
from .serializer import RowSerializer


def _rep(v, n: int):
    return Cat(*([v] * n))


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
        # the engine takes every unit output in the cycle it appears: no skid FIFOs (always_ready)
        self.sgd = IntegerSGDUpdate(p.weight_bits, p.acc_bits, None, p.max_divisor, p.max_eta,
                                   always_ready=True)

    def elaborate(self, platform) -> Module:
        m = Module()
        p, RL, L = self.p, READ_LATENCY, self.p.lanes

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
        m.submodules.mac = mac = MacArray(p.rows, p.cols, p.act_bits, p.delta_bits, p.acc_bits)
        m.submodules.scale = scale = ScalePipeline(p)
        m.submodules.sgd = sgd = self.sgd
        m.submodules.relu_bwd = rbwd = ReluBackwardRow(p, RL)
        # pipeline flush after the last C row: serializer, the element's memory read, the deepest
        # output pipeline, the memories' write registers
        flush = L + 1 + RL + max(scale.latency, sgd.latency + 1,
                                 rbwd.unit_latency) + WRITE_LATENCY + p.wait_cycles
        m.submodules.seq = seq = CommandSequencer(p, flush)
        m.submodules.issue = issue = OperandIssue(p, stream.Signature(mac.i.payload.shape()))
        m.submodules.drain = drain = RowDrain(p, stream.Signature(mac.o.payload.shape()))
        m.submodules.ser = ser = RowSerializer(p)
        cmd = seq.cmd
        # a command that ends no C tile (k_hold) is done when its last beat is issued: the next
        # command's beats (the rest of K) follow it into the array
        hold = data_reg(name="k_hold")
        m.d.sync += hold.eq(cmd.k_hold)
        m.d.comb += [seq.start.eq(self.start), seq.cm_data.eq(mem[SEL_CMEM][1]),
                     seq.drain_done.eq(drain.done | (hold & issue.idle)),
                     self.busy.eq(seq.busy), self.done.eq(seq.done)]

        # decoded op flags, registered (valid from the first RUN cycle; only DECODE reads `op`)
        is_relu, is_loss, is_sgd, is_rbwd, is_scale, serial = (
            data_reg(name=n) for n in ("is_relu", "is_loss", "is_sgd", "is_rbwd", "is_scale", "serial"))
        op = cmd.op
        m.d.sync += [is_relu.eq(op == OP_SCALE_RELU), is_loss.eq(op == OP_SCALE_LOSS),
                     is_sgd.eq(op == OP_SGD), is_rbwd.eq(op == OP_RELU_BWD),
                     is_scale.eq((op == OP_SCALE_RELU) | (op == OP_SCALE_LOSS)),
                     serial.eq((op == OP_SCALE_RELU) | (op == OP_SCALE_LOSS) | (op == OP_SGD))]

        # ---- issue -> MAC array -> drain -> serializer -------------------------------------------
        m.d.comb += [issue.cmd.eq(cmd), issue.start.eq(Cat(seq.gemm[0], seq.gemm[4]))]
        m.d.comb += [getattr(issue, n).eq(mem[sel][1]) for n, sel in
                     (("ac", SEL_AMEM_C), ("ar", SEL_AMEM_R), ("wm", SEL_WMEM), ("wt", SEL_WTMEM),
                      ("dm", SEL_DMEM))]
        wiring.connect(m, issue.o, mac.i)
        wiring.connect(m, mac.o, drain.i)
        m.d.comb += [drain.cmd.eq(cmd), drain.start.eq(seq.gemm[:4]), drain.launch.eq(seq.launch),
                     drain.serial.eq(serial)]
        m.d.comb += [ser.cmd.eq(cmd), ser.load.eq(drain.o_fire & serial), ser.row.eq(drain.row_data)]
        m.d.comb += [getattr(ser, n).eq(getattr(drain, n)) for n in
                     ("m_row", "nt", "col_addr", "tcol_addr", "row_addr1", "row_addr2", "row_addr3")]

        # ---- output ops --------------------------------------------------------------------------
        # E1: the serializer's element RL cycles later, with its YMEM / WMEM word (read at E0)
        e1_valid = delayed(m, ser.valid, RL, "e1_valid", False)
        e1 = delayed(m, ser.e, RL, "e1")
        y1 = mem[SEL_YMEM][1].word_select(e1.j, p.act_bits).as_signed()
        w1 = mem[SEL_WMEM][1].word_select(e1.j, p.weight_bits).as_signed()

        # scaling, then NITRO-ReLU (a) and the loss gradient (e), all leaving together
        m.d.comb += [scale.valid.eq(e1_valid & is_scale), scale.z.eq(e1.z), scale.y.eq(y1),
                     scale.mult.eq(cmd.sc_mult), scale.shift.eq(cmd.sc_shift)]
        sc_valid = delayed(m, e1_valid, scale.latency, "sc_valid", False) & is_scale
        sc = delayed(m, e1, scale.latency, "sc")

        # IntegerSGD update, behind one register level (lane select -> register)
        w2 = data_reg(signed(p.weight_bits))
        e2_valid = Signal()
        e2 = data_reg(e1.shape())
        m.d.sync += [w2.eq(w1), e2_valid.eq(e1_valid), e2.eq(e1)]
        m.d.comb += [
            sgd.i.valid.eq(e2_valid & is_sgd),
            sgd.i.payload.w.eq(w2), sgd.i.payload.g.eq(e2.z),
            sgd.i.payload.d_mult.eq(cmd.d_mult), sgd.i.payload.d_shift.eq(cmd.d_shift),
            sgd.i.payload.e_mult.eq(cmd.e_mult), sgd.i.payload.e_shift.eq(cmd.e_shift),
        ]
        sg_valid = delayed(m, e2_valid, sgd.latency, "sg_valid", False) & is_sgd
        sg = delayed(m, e2, sgd.latency, "sg")
        # WMEM read-modify-write: a row's word is read on L consecutive cycles (E0) and first
        # written RL + 1 + sgd.latency cycles after the first read, so never in a read cycle
        # (the memories have no read/write collision logic, see hw.engine.memory)
        assert RL + 1 + sgd.latency >= L

        # NITRO-ReLU backward on whole rows (the row's SMEM word arrives RL cycles later)
        m.d.comb += [rbwd.valid.eq(drain.row_v & is_rbwd & (drain.m_row < cmd.m_len)),
                     rbwd.row.eq(drain.row_data), rbwd.addr.eq(drain.row_addr1),
                     rbwd.s_word.eq(mem[SEL_SMEM][1])]

        # ---- the engine's scratchpad ports -------------------------------------------------------
        AB, WB = p.act_bits, p.weight_bits

        def lane_en(lane, on):
            return Mux(on, Const(1, L) << lane, 0)

        def write(sel, addr, dat, en):
            name = MEM_NAMES[sel]
            m.d.comb += [getattr(sp, f"{name}_wr_addr").eq(addr),
                         getattr(sp, f"{name}_wr_data").eq(dat), getattr(sp, f"{name}_wr_en").eq(en)]

        a_out, e_out, w_new = scale.a, scale.e, sgd.o.payload
        rb = rbwd.out_valid
        write(SEL_AMEM_C, sc.a[0], _rep(Mux(is_relu, a_out, e_out)[:AB], L), lane_en(sc.r, sc_valid))
        write(SEL_AMEM_R, sc.a[1], _rep(a_out[:AB], L), lane_en(sc.j, sc_valid & is_relu))
        e_ext = Signal(signed(p.delta_bits))
        m.d.comb += e_ext.eq(e_out)
        write(SEL_DMEM, Mux(rb, rbwd.out_addr, sc.a[1]), Mux(rb, rbwd.out_word, _rep(e_ext, L)),
              Mux(rb, (1 << L) - 1, lane_en(sc.j, sc_valid & is_loss)))
        write(SEL_SMEM, sc.a[2], _rep(scale.s[:AB], L), lane_en(sc.j, sc_valid))
        write(SEL_WMEM, sg.a[3], _rep(w_new[:WB], L), lane_en(sg.j, sg_valid))
        write(SEL_WTMEM, sg.a[4], _rep(w_new[:WB], L), lane_en(sg.r, sg_valid & cmd.wt_en))
        reads = {
            SEL_AMEM_C: issue.a_addr, SEL_AMEM_R: issue.a_addr,
            SEL_WMEM: Mux(is_sgd, ser.e.a[3], issue.b_addr), SEL_WTMEM: issue.b_addr,
            SEL_DMEM: issue.b_addr, SEL_SMEM: drain.row_addr2, SEL_YMEM: ser.e.a[3],
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
