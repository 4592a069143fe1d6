"""The compute core of the streaming engine (`hw.engine.top`): MAC array + scratchpads + output
pipelines + GEMM sequencer.

Data path (one GEMM command at a time, see `params.command_layout`):

    issue  : counters (mt, nt, k) -> A word (AMEM_C | AMEM_R) and B word (WMEM | WTMEM | DMEM)
             -> MacArray (outer product, rows x cols, int32 wrap) ; K beats per C tile
    drain  : finished C rows -> output pipeline selected by the command's op
             serial ops (one C element per cycle; a tile drains in rows*cols cycles, hidden under
             the next tile's K >= rows*cols accumulation beats):
               scale_relu : ProgDivider (SF) -> clip -> NitroReluForward  -> a, s
               scale_loss : ProgDivider (SF) -> clip -> LossGradient(y)    -> e, y_hat
               sgd        : WMEM read -> IntegerSGDUpdate(G, W, D, eta)      -> WMEM (+ WTMEM copy)
             row op (cols elements per cycle):
               relu_bwd   : C row + SMEM row s -> cols x NitroReluBackward -> DMEM row
The sequencer fetches commands from CMEM until an END command; a fixed flush (`wait_cycles`)
separates commands, so a command's reads never overtake the previous command's writes.

Timing (ECP5, 150 MHz target): every scratchpad is two `memory.BankedMemory` sets (per-bank address, output
and select stages, the output register packed into the block RAM for synthesis: reads arrive
`READ_LATENCY` cycles after the address; writes are registered before and after the bank decode
and land `WRITE_LATENCY` edges later). Nothing stalls a pipeline register: the operand fetch is
free-running and enters the MAC array through a skid FIFO under credits
(`hw.stream_unit.skid_output`); the elementwise units, whose every output the engine takes,
are bare pipes (`always_ready`: no skid FIFO in front of their outputs). Loop-end tests are
registered flags, not comparators in front of the address adders; op decode, command launch,
the serializer's ready, the C-row handoff and the drain's row/tile case are registers (the last
one replicated per address group, `hw.fanout`); the counter read mux spans three register levels
and the host select two. Only control state has a reset.

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
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import replicated_reg
from hw.mac import MacArray
from hw.stream_unit import skid_capacity, skid_output
from hw.sgd import IntegerSGDUpdate

from .counters import PhaseCounters
from .memory import READ_LATENCY, WRITE_LATENCY
from .outputs import ReluBackwardRow, ScalePipeline
from .scratchpads import Scratchpads
from .pipeline import data_reg, delayed
from .params import (
    ADDR_W, CMD_WORD_BITS, MEM_NAMES, OP_END, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD,
    SEL_AMEM_C, SEL_AMEM_R, SEL_CMEM, SEL_DMEM, SEL_SMEM, SEL_WMEM, SEL_WTMEM, SEL_YMEM,
    EngineParams, command_layout,
)

# copies of replicated control registers (hw.fanout): each drives one slice of its loads
CMD_GROUPS = 6  # the command register's load enable
SER_GROUPS = 4  # the serializer's row load / shift (then one more for its addresses)


def _rep(v, n: int):
    return Cat(*([v] * n))


class Engine(wiring.Component):
    def __init__(self, params: EngineParams | None = None) -> None:
        self.p = p = params or EngineParams()
        self.cmd_layout = command_layout(p)
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

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.p
        L, LB = p.lanes, p.lane_bits
        AB, WB, DB = p.act_bits, p.weight_bits, p.delta_bits

        # ---- scratchpads: the engine's set and the host's (`swap` exchanges them) ---------
        m.submodules.spads = sp = Scratchpads(p)
        side = Signal()
        with m.If(self.swap & ~self.busy):
            m.d.sync += side.eq(~side)
        m.d.comb += [sp.side.eq(side), sp.hw_en.eq(self.hw_en),
                     sp.hw_sel.eq(self.hw_sel), sp.hw_addr.eq(self.hw_addr),
                     sp.hw_data.eq(self.hw_data), sp.hr_sel.eq(self.hr_sel),
                     sp.hr_addr.eq(self.hr_addr), self.hr_data.eq(sp.hr_data)]
        ac, ar, wm, wt, dm, sm, ym, cm = (
            getattr(sp, f"{MEM_NAMES[sel]}_rd_data") for sel in
            (SEL_AMEM_C, SEL_AMEM_R, SEL_WMEM, SEL_WTMEM, SEL_DMEM, SEL_SMEM, SEL_YMEM, SEL_CMEM))
        cmd_w = p.cmd_bits
        ncw = p.cmd_words

        # ---- units --------------------------------------------------------------------------
        m.submodules.mac = mac = MacArray(p.rows, p.cols, AB, DB, p.acc_bits)
        m.submodules.scale = scale = ScalePipeline(p)
        m.submodules.sgd = sgd = self.sgd
        m.submodules.relu_bwd = rbwd = ReluBackwardRow(p, READ_LATENCY)

        # ---- sequencer ----------------------------------------------------------------------
        RL = READ_LATENCY
        cmd = data_reg(self.cmd_layout)
        pc = Signal(ADDR_W)
        fw = Signal(range(ncw + RL))
        cmd_sr = data_reg(ncw * CMD_WORD_BITS)
        # CMEM words shift in from the top every cycle (no enable on 512 flip-flops): in LOAD it
        # holds the ncw words FETCH read, in order
        m.d.sync += cmd_sr.eq(Cat(cmd_sr[CMD_WORD_BITS:], cm))
        busy = Signal()
        done = Signal()
        # pipeline flush after the last C row: serializer, the element's memory read, the deepest
        # output pipeline, the memories' write registers
        flush = L + 1 + RL + max(scale.latency, sgd.latency + 1,
                                 rbwd.unit_latency) + WRITE_LATENCY + p.wait_cycles
        wait_cnt = Signal(range(flush + 1))
        drain_done = Signal()
        in_wait = Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]

        # issue-side loops: down-counters whose "at the end" flags are registers, so no comparator
        # sits between a counter and the address adders
        k_last, n_last, m_last = (data_reg(ADDR_W, name=n) for n in ("k_last", "n_last", "m_last"))
        k_rem, nt_rem, mt_rem = (data_reg(ADDR_W, name=n) for n in ("k_rem", "nt_rem", "mt_rem"))
        k_end, nt_end, mt_end = data_reg(), data_reg(), data_reg()
        k_one, n_one = data_reg(), data_reg()  # a reloaded loop of length 1 is at its end at once
        k_first = data_reg()
        issuing = Signal()
        a_tile, b_tile = data_reg(ADDR_W, name="a_tile"), data_reg(ADDR_W, name="b_tile")
        # Operand word addresses live in registers (the adders sit before them, not between a
        # register and the memories): a = a_tile + k*a_sk, b = b_tile + k*b_sk.
        a_addr = data_reg(ADDR_W)
        b_addr = data_reg(ADDR_W)
        # issue pipeline (free-running): stage 1 = memory address register ... stage RL = memory
        # output, stage RL + 1 = operand registers, then a skid FIFO into the MAC array; a beat is
        # issued only with a credit (fewer than `cap` beats between issue and the array)
        vs = [Signal(name=f"v{k}") for k in range(1, RL + 2)]
        fs = [data_reg(name=f"f{k}") for k in range(1, RL + 2)]
        ls = [data_reg(name=f"l{k}") for k in range(1, RL + 2)]
        cap = skid_capacity(RL + 1)
        in_flight = Signal(range(cap + 1))
        # issue = issuing & (in_flight < cap), decided a cycle ahead from both next values, so
        # the ~150 issue-side enables hang off a register
        issue = Signal()
        issuing_nx = Signal()
        launch = Signal()  # high in the DECODE cycle (a register)

        # drain-side counters and address registers
        mt_d, nt_d, r_d = data_reg(ADDR_W), data_reg(ADDR_W), data_reg(LB)
        r_last = data_reg()  # r_d == L - 1, as a register
        r_pen = data_reg()  # r_d == L - 2, as a register
        slots = [cmd.o0, cmd.o1, cmd.o2, cmd.o3, cmd.o4]
        r_mt = {s: data_reg(ADDR_W, name=f"r_mt{s}") for s in (1, 2, 3)}  # row 0 of m tile, nt = 0
        tile0 = {s: data_reg(ADDR_W, name=f"tile0_{s}") for s in (1, 2, 3)}  # row 0 of tile (mt, nt)
        c_mt = data_reg(ADDR_W)
        t_nt = data_reg(ADDR_W)
        # row_addr[s] = r_mt[s] + r*stride_s + nt: kept in a register, updated per drained row
        row_addr = {s: data_reg(ADDR_W, name=f"row_addr{s}") for s in (1, 2, 3)}
        col_addr = Signal(ADDR_W)
        tcol_addr = Signal(ADDR_W)
        m.d.comb += [col_addr.eq(c_mt + (nt_d << LB)), tcol_addr.eq(t_nt + mt_d)]
        m_row = Signal(ADDR_W + 4)
        m.d.comb += m_row.eq((mt_d << LB) | r_d)
        # "last tile" flags one cycle behind the counters: a counter changes only on a tile's
        # last row, and the flag is next read L >= 2 drained rows later
        nt_d_last, mt_d_last = data_reg(), data_reg()
        m.d.sync += [nt_d_last.eq(nt_d == n_last), mt_d_last.eq(mt_d == m_last)]

        op = cmd.op
        # decoded op flags, registered (valid from the first RUN cycle; only DECODE reads `op`)
        is_relu, is_loss, is_sgd, is_rbwd, is_scale, serial = (
            data_reg(name=n) for n in ("is_relu", "is_loss", "is_sgd", "is_rbwd", "is_scale", "serial"))
        m.d.sync += [is_relu.eq(op == OP_SCALE_RELU), is_loss.eq(op == OP_SCALE_LOSS),
                     is_sgd.eq(op == OP_SGD), is_rbwd.eq(op == OP_RELU_BWD),
                     is_scale.eq((op == OP_SCALE_RELU) | (op == OP_SCALE_LOSS)),
                     serial.eq((op == OP_SCALE_RELU) | (op == OP_SCALE_LOSS) | (op == OP_SGD))]

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
                with m.If(op == OP_END):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(drain_done):
                    m.d.sync += wait_cnt.eq(flush)
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += in_wait.eq(1)
                m.d.sync += wait_cnt.eq(wait_cnt - 1)
                with m.If(wait_cnt == 0):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"

        # "the LOAD cycle", registered from FETCH's last word and replicated per slice of the
        # command register (one LOAD decode of the state register drove all ~430 enables), the
        # last copy for `launch` and the GEMM launch below
        load_g = replicated_reg(m, platform, seq.ongoing("FETCH") & (fw == ncw + RL - 1),
                                CMD_GROUPS + 1, "load")
        chunk = -(-cmd_w // CMD_GROUPS)
        for g in range(CMD_GROUPS):
            lo, hi = g * chunk, min((g + 1) * chunk, cmd_w)
            with m.If(load_g[g]):
                m.d.sync += cmd.as_value()[lo:hi].eq(cmd_sr[lo:hi])
        m.d.sync += launch.eq(load_g[CMD_GROUPS])
        # "the DECODE cycle of a GEMM command", registered from the command being loaded and
        # replicated per group of the ~300 registers it loads (hw.fanout; launch & op != END
        # decoded in front of their enables was a deep, wide path): 0 the sequencing and issue
        # registers, 1-3 slot s's address registers, 4 the issue flag
        incoming = data.View(self.cmd_layout, cmd_sr[:cmd_w])
        gemm_g = replicated_reg(m, platform, load_g[CMD_GROUPS] & (incoming.op != OP_END), 5,
                                "gemm_launch")
        with m.If(gemm_g[0]):
            m.d.sync += [k_last.eq(cmd.k_len - 1), n_last.eq(cmd.n_tiles - 1),
                         m_last.eq(cmd.m_tiles - 1)]
            m.d.sync += [k_rem.eq(cmd.k_len - 1), nt_rem.eq(cmd.n_tiles - 1),
                         mt_rem.eq(cmd.m_tiles - 1), mt_end.eq(cmd.m_tiles == 1),
                         k_one.eq(cmd.k_len == 1), n_one.eq(cmd.n_tiles == 1)]
            m.d.sync += [
                k_first.eq(1),
                a_tile.eq(cmd.a_base), a_addr.eq(cmd.a_base), b_tile.eq(cmd.b_base),
                b_addr.eq(cmd.b_base),
                mt_d.eq(0), nt_d.eq(0), r_d.eq(0), r_pen.eq(0), drain_done.eq(0),  # (L >= 4)
                c_mt.eq(cmd.o0.base), t_nt.eq(cmd.o4.base),
            ]
        for s in (1, 2, 3):
            with m.If(gemm_g[s]):
                m.d.sync += [x[s].eq(slots[s].base) for x in (r_mt, row_addr, tile0)]

        # ---- issue: operand fetch into the MAC array ----------------------------------------
        m.d.sync += [vs[0].eq(issue), fs[0].eq(k_first), ls[0].eq(k_end)]
        m.d.sync += [x[k].eq(x[k - 1]) for x in (vs, fs, ls) for k in range(1, RL + 1)]
        # The loop-end flags' next values, so that `issue`, `k_end` and "k and n at their ends"
        # are registered once per group of the ~100 address and counter bits they select
        # (hw.fanout): 0 the counters, 1 the A addresses, 2 the B addresses. (One `issue`
        # decoded with k_end & nt_end in front of every mux was the deepest issue path.)
        k_end_n, nt_end_n, issue_n = Signal(), Signal(), Signal()
        m.d.comb += [k_end_n.eq(k_end), nt_end_n.eq(nt_end)]
        with m.If(gemm_g[0]):
            m.d.comb += [k_end_n.eq(cmd.k_len == 1), nt_end_n.eq(cmd.n_tiles == 1)]
        with m.If(issue):
            m.d.comb += k_end_n.eq(Mux(k_end, k_one, k_rem == 1))
            with m.If(k_end):
                m.d.comb += nt_end_n.eq(Mux(nt_end, n_one, nt_rem == 1))
        m.d.sync += [k_end.eq(k_end_n), nt_end.eq(nt_end_n)]
        issue_g = replicated_reg(m, platform, issue_n, 3, "issue")
        k_end_g = replicated_reg(m, platform, k_end_n, 3, "k_end")
        kn_end_g = replicated_reg(m, platform, k_end_n & nt_end_n, 3, "kn_end")
        with m.If(issue_g[0]):
            m.d.sync += [k_first.eq(k_end_g[0]), k_rem.eq(k_rem - 1)]
            with m.If(k_end_g[0]):
                m.d.sync += k_rem.eq(k_last)
                with m.If(kn_end_g[0]):
                    m.d.sync += [nt_rem.eq(n_last), mt_rem.eq(mt_rem - 1), mt_end.eq(mt_rem == 1)]
                with m.Else():
                    m.d.sync += nt_rem.eq(nt_rem - 1)
        with m.If(issue_g[1]):
            m.d.sync += a_addr.eq(a_addr + cmd.a_sk)
            with m.If(k_end_g[1]):
                with m.If(kn_end_g[1]):
                    m.d.sync += [a_tile.eq(a_tile + cmd.a_sm), a_addr.eq(a_tile + cmd.a_sm)]
                with m.Else():
                    m.d.sync += a_addr.eq(a_tile)
        with m.If(issue_g[2]):
            m.d.sync += b_addr.eq(b_addr + cmd.b_sk)
            with m.If(k_end_g[2]):
                with m.If(kn_end_g[2]):
                    m.d.sync += [b_tile.eq(cmd.b_base), b_addr.eq(cmd.b_base)]
                with m.Else():
                    m.d.sync += [b_tile.eq(b_tile + cmd.b_sn), b_addr.eq(b_tile + cmd.b_sn)]

        a_word = Mux(cmd.a_sel, ar, ac)  # a_sel is constant during a command
        # Cat of signed WB-bit slices would not sign-extend: widen each lane explicitly.
        b_lanes = Signal(data.ArrayLayout(signed(DB), L))
        with m.Switch(cmd.b_sel):
            with m.Case(0):
                m.d.comb += [b_lanes[j].eq(wm.word_select(j, WB).as_signed()) for j in range(L)]
            with m.Case(1):
                m.d.comb += [b_lanes[j].eq(wt.word_select(j, WB).as_signed()) for j in range(L)]
            with m.Default():
                m.d.comb += [b_lanes[j].eq(dm.word_select(j, DB).as_signed()) for j in range(L)]
        # operand registers: the source select and sign extension get a stage of their own
        a_q = data_reg(AB * L)
        b_q = data_reg(data.ArrayLayout(signed(DB), L))
        m.d.sync += [a_q.eq(a_word), b_q.eq(b_lanes)]
        beat = Signal(mac.i.payload.shape())
        m.d.comb += [beat.first.eq(fs[-1]), beat.last.eq(ls[-1])]
        m.d.comb += [beat.a[i].eq(a_q.word_select(i, AB).as_signed()) for i in range(L)]
        m.d.comb += [beat.b[j].eq(b_q[j]) for j in range(L)]
        skid_output(m, vs[-1], beat.as_value(), mac.i, cap)
        mac_fire = mac.i.valid & mac.i.ready
        # a beat the array accepted frees its credit a cycle later (the array's ready, through
        # the credit adder into `issue` and its copies, was 7.9 ns): one more beat in flight at
        # most, which the skid FIFO holds (cap >= RL + 3)
        mac_took = delayed(m, mac_fire, 1, "mac_took", False)
        assert cap >= RL + 3
        in_next = Signal.like(in_flight)
        m.d.comb += [in_next.eq(in_flight + issue - mac_took),
                     issuing_nx.eq(Mux(gemm_g[4], 1,
                                       issuing & ~(issue & k_end & nt_end & mt_end)))]
        m.d.comb += issue_n.eq(issuing_nx & ~in_next[-1])  # cap is a power of two: top bit = full
        m.d.sync += [in_flight.eq(in_next), issuing.eq(issuing_nx), issue.eq(issue_n)]

        # ---- drain: C rows out of the MAC array, through one register ---------------------------
        # A row that leaves the array (o_fire) is handled from registers one cycle later (row_v,
        # row_data): the drain counters, the serializer and the ReLU-backward path never see the
        # array's output-FIFO logic.
        o_fire = Signal()
        row_v = Signal()
        row_data = data_reg(mac.o.payload.shape())
        ser_busy = Signal()
        ser_j = data_reg(LB)
        # The serializer takes one row every L cycles: after a serial op's row leaves the array,
        # `accept` (the array's o.ready, a register) is low for L - 1 cycles. Other ops: always 1.
        accept = Signal(init=1)
        acc_cnt = Signal(LB)
        m.d.comb += [mac.o.ready.eq(accept), o_fire.eq(mac.o.valid & accept)]
        m.d.sync += [row_v.eq(o_fire), row_data.eq(mac.o.payload)]
        with m.If(o_fire & serial):
            m.d.sync += [accept.eq(0), acc_cnt.eq(L - 1)]
        with m.Elif(acc_cnt != 0):
            m.d.sync += [acc_cnt.eq(acc_cnt - 1), accept.eq(acc_cnt == 1)]
        last_row = r_last & nt_d_last & mt_d_last
        # The row's case (next row / next n tile / next m tile) selects the next value of ~200
        # address and counter bits: it is decided one cycle ahead, from o_fire and next-state
        # values, and registered once per slot group (hw.fanout), so those muxes see registers.
        # (`row_v & r_last & nt_d_last` decoded in front of them, ~80 loads per net, was the
        # deepest drain path.) nt_d_last at the row is nt_d == n_last one cycle earlier.
        r_last_next = Signal()
        m.d.comb += r_last_next.eq(Mux(launch, 0, Mux(row_v, r_pen, r_last)))
        m.d.sync += r_last.eq(r_last_next)
        groups = (0, 1, 2, 3)  # 0: the counters, s: slot s's address registers
        row_g = dict(zip(groups, replicated_reg(m, platform, o_fire, len(groups), "row_g")))
        tile_g = dict(zip(groups, replicated_reg(m, platform, o_fire & r_last_next, len(groups),
                                                 "tile_g")))
        # nt_d == n_last as its registered flag: nt_d changed at least three cycles before a
        # tile's last row leaves the array (L >= 4 rows per tile)
        mt_g = dict(zip(groups, replicated_reg(m, platform, o_fire & r_last_next & nt_d_last,
                                               len(groups), "mt_g")))
        with m.If(row_g[0]):
            m.d.sync += [r_d.eq(Mux(tile_g[0], 0, r_d + 1)),
                         r_pen.eq(~tile_g[0] & (r_d == L - 3))]
        with m.If(mt_g[0]):
            m.d.sync += [nt_d.eq(0), t_nt.eq(cmd.o4.base), mt_d.eq(mt_d + 1),
                         c_mt.eq(c_mt + cmd.o0.stride)]
        with m.Elif(tile_g[0]):
            m.d.sync += [nt_d.eq(nt_d + 1), t_nt.eq(t_nt + (cmd.o4.stride << LB))]
        for s in (1, 2, 3):
            with m.If(mt_g[s]):
                nxt = r_mt[s] + (slots[s].stride << LB)
                m.d.sync += [r_mt[s].eq(nxt), tile0[s].eq(nxt), row_addr[s].eq(nxt)]
            with m.Elif(tile_g[s]):
                m.d.sync += [tile0[s].eq(tile0[s] + 1), row_addr[s].eq(tile0[s] + 1)]
            with m.Elif(row_g[s]):
                m.d.sync += row_addr[s].eq(row_addr[s] + slots[s].stride)
        with m.If(row_v & last_row):
            m.d.sync += drain_done.eq(1)

        m_len, n_len = cmd.m_len, cmd.n_len

        # ---- serial path: row -> one element per cycle ------------------------------------------
        ser_row = data_reg(data.ArrayLayout(signed(p.acc_bits), L))
        ser_m = data_reg(ADDR_W + 4)
        ser_nt = data_reg(ADDR_W)
        ser_col = data_reg(ADDR_W)
        ser_tcol = data_reg(ADDR_W)
        ser_rowa = {s: data_reg(ADDR_W, name=f"ser_row{s}") for s in (1, 2, 3)}
        # "a serial op's row arrives" and "serializing" drive ~350 enables: both registered per
        # group (hw.fanout), SER_GROUPS slices of the row, then the addresses and counters
        ser_busy_n = Signal()
        ser_ld = replicated_reg(m, platform, o_fire & serial, SER_GROUPS + 1, "ser_load")
        m.d.comb += ser_busy_n.eq(ser_ld[0] | (ser_busy & (ser_j != L - 1)))
        ser_on = replicated_reg(m, platform, ser_busy_n, SER_GROUPS + 1, "ser_busy")
        m.d.sync += ser_busy.eq(ser_busy_n)
        per = L // SER_GROUPS
        for g in range(SER_GROUPS + 1):
            lanes = range(g * per, (g + 1) * per)
            with m.If(ser_ld[g]):
                if g < SER_GROUPS:
                    m.d.sync += [ser_row[j].eq(row_data[j]) for j in lanes]
                else:
                    m.d.sync += [ser_m.eq(m_row), ser_nt.eq(nt_d), ser_col.eq(col_addr),
                                 ser_tcol.eq(tcol_addr), ser_j.eq(0)]
                    m.d.sync += [ser_rowa[s].eq(row_addr[s]) for s in (1, 2, 3)]
            with m.Elif(ser_on[g]):
                if g < SER_GROUPS:
                    m.d.sync += [ser_row[j].eq(ser_row[j + 1]) for j in lanes if j < L - 1]
                else:
                    m.d.sync += [ser_j.eq(ser_j + 1), ser_col.eq(ser_col + 1),
                                 ser_tcol.eq(ser_tcol + cmd.o4.stride)]

        # E0: element (m, n) with its addresses; its YMEM / WMEM word is read here and arrives
        # RL cycles later, at E1, together with the element
        e0_n = Signal(ADDR_W + 4)
        m.d.comb += e0_n.eq((ser_nt << LB) | ser_j)
        e0_valid = Signal()
        m.d.comb += e0_valid.eq(ser_busy & (ser_m < m_len) & (e0_n < n_len))
        e0 = {"valid": e0_valid, "z": ser_row[0], "j": ser_j, "r": ser_m[:LB], "a0": ser_col,
              "a1": ser_rowa[1], "a2": ser_rowa[2], "a3": ser_rowa[3], "a4": ser_tcol}
        e1 = {k: delayed(m, v, RL, f"e_{k}", k != "valid") for k, v in e0.items()}
        y1 = ym.word_select(e1["j"], AB).as_signed()
        w1 = wm.word_select(e1["j"], WB).as_signed()

        # scaling, then NITRO-ReLU (a) and the loss gradient (e), all leaving together
        m.d.comb += [scale.valid.eq(e1["valid"] & is_scale), scale.z.eq(e1["z"]), scale.y.eq(y1),
                     scale.mult.eq(cmd.sc_mult), scale.shift.eq(cmd.sc_shift)]
        s_out, a_out, e_out = scale.s, scale.a, scale.e
        sc = {k: delayed(m, v, scale.latency, f"sc_{k}", k != "valid") for k, v in e1.items() if k != "z"}
        sc_valid = sc["valid"] & is_scale

        # IntegerSGD update, behind one register level (lane select -> register)
        w2 = data_reg(signed(WB))
        e2 = {k: Signal(v.shape(), name=f"e2_{k}", reset_less=k != "valid") for k, v in e1.items()}
        m.d.sync += [w2.eq(w1)] + [e2[k].eq(v) for k, v in e1.items()]
        m.d.comb += [
            sgd.i.valid.eq(e2["valid"] & is_sgd),
            sgd.i.payload.w.eq(w2), sgd.i.payload.g.eq(e2["z"]),
            sgd.i.payload.d_mult.eq(cmd.d_mult), sgd.i.payload.d_shift.eq(cmd.d_shift),
            sgd.i.payload.e_mult.eq(cmd.e_mult), sgd.i.payload.e_shift.eq(cmd.e_shift),
        ]
        sg = {k: delayed(m, v, sgd.latency, f"sg_{k}", k != "valid") for k, v in e2.items() if k != "z"}
        # WMEM read-modify-write: a row's word is read on L consecutive cycles (E0) and first
        # written RL + 1 + sgd.latency cycles after the first read, so never in a read cycle
        # (the memories have no read/write collision logic, see hw.engine.memory)
        assert RL + 1 + sgd.latency >= L
        sg_valid = sg["valid"] & is_sgd
        w_new = sgd.o.payload

        # ---- row path: NITRO-ReLU backward (the row's SMEM word arrives RL cycles later) ---------
        m.d.comb += [rbwd.valid.eq(row_v & is_rbwd & (m_row < m_len)), rbwd.row.eq(row_data),
                     rbwd.addr.eq(row_addr[1]), rbwd.s_word.eq(sm)]
        rb_valid, rb_addr, rb_word = rbwd.out_valid, rbwd.out_addr, rbwd.out_word

        # ---- the engine's scratchpad ports ----------------------------------------------------
        def lane_en(lane, on):
            return Mux(on, Const(1, L) << lane, 0)

        def write(sel, addr, dat, en):
            name = MEM_NAMES[sel]
            m.d.comb += [getattr(sp, f"{name}_wr_addr").eq(addr),
                         getattr(sp, f"{name}_wr_data").eq(dat), getattr(sp, f"{name}_wr_en").eq(en)]

        sc_val = Mux(is_relu, a_out, e_out)
        write(SEL_AMEM_C, sc["a0"], _rep(sc_val[:AB], L), lane_en(sc["r"], sc_valid))
        write(SEL_AMEM_R, sc["a1"], _rep(a_out[:AB], L), lane_en(sc["j"], sc_valid & is_relu))
        e_ext = Signal(signed(DB))
        m.d.comb += e_ext.eq(e_out)
        write(SEL_DMEM, Mux(rb_valid, rb_addr, sc["a1"]), Mux(rb_valid, rb_word, _rep(e_ext, L)),
              Mux(rb_valid, (1 << L) - 1, lane_en(sc["j"], sc_valid & is_loss)))
        write(SEL_SMEM, sc["a2"], _rep(s_out[:AB], L), lane_en(sc["j"], sc_valid))
        write(SEL_WMEM, sg["a3"], _rep(w_new[:WB], L), lane_en(sg["j"], sg_valid))
        write(SEL_WTMEM, sg["a4"], _rep(w_new[:WB], L), lane_en(sg["r"], sg_valid & cmd.wt_en))
        reads = {
            SEL_AMEM_C: a_addr, SEL_AMEM_R: a_addr, SEL_WMEM: Mux(is_sgd, ser_rowa[3], b_addr),
            SEL_WTMEM: b_addr, SEL_DMEM: b_addr, SEL_SMEM: row_addr[2], SEL_YMEM: ser_rowa[3],
            SEL_CMEM: (pc * ncw + fw)[:ADDR_W],
        }
        for sel, addr in reads.items():
            m.d.comb += getattr(sp, f"{MEM_NAMES[sel]}_rd_addr").eq(addr)

        # ---- performance counters (read through the host port as SEL_CTR) ----------------------
        m.submodules.counters = ctr = PhaseCounters(RL)
        m.d.comb += [ctr.events.eq(Mux(busy, Cat(1, mac_fire, mac.i.valid & ~mac.i.ready, in_wait), 0)),
                     ctr.phase.eq(cmd.phase), ctr.clear.eq(self.ctr_clear),
                     ctr.rd_addr.eq(self.hr_addr[:6]), sp.ctr_data.eq(ctr.rd_data)]
        return m
