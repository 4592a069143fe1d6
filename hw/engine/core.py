"""The NITRO-D training engine: MAC array + on-chip memories + output pipelines + GEMM sequencer.

Data path (one GEMM command at a time, see `params.command_layout`):

    issue  : counters (mt, nt, k) -> A word (AMEM_C | AMEM_R) and B word (WMEM | WTMEM | DMEM)
             -> MacArray (outer product, rows x cols, int32 wrap) ; K beats per C tile
    drain  : finished C rows -> output pipeline selected by the command's op
             serial ops (one C element per cycle; a tile drains in rows*cols cycles, hidden under
             the next tile's K >= rows*cols accumulation beats):
               scale_relu : ProgDivider (SF) -> clip -> NitroReluForward  -> a, s
               scale_loss : ProgDivider (SF) -> clip -> LossGradient(y)    -> e, y_hat
               sgd        : WMEM read -> ProgSGDUpdate(G, W, D, eta)      -> WMEM (+ WTMEM copy)
             row op (cols elements per cycle):
               relu_bwd   : C row + SMEM row s -> cols x NitroReluBackward -> DMEM row
The sequencer fetches commands from CMEM until an END command; a fixed flush (`wait_cycles`)
separates commands, so a command's reads never overtake the previous command's writes.

Host port (only while idle): one write per cycle into any memory (hw_*), one read per cycle
(hr_*, data one cycle later) from any memory or from the performance counters (SEL_CTR):
counter index = phase * 4 + kind, kinds in `params.CTR_KINDS`, reset by `start`.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.divider import ProgDivider
from hw.lossgrad import LossGradient
from hw.mac import MacArray
from hw.relu import NitroReluBackward, NitroReluForward

from .params import (
    ADDR_W, CMD_WORD_BITS, CTR_KINDS, N_PHASES, OP_END, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD,
    SEL_AMEM_C, SEL_AMEM_R, SEL_CMEM, SEL_CTR, SEL_DMEM, SEL_SMEM, SEL_WMEM, SEL_WTMEM, SEL_YMEM,
    EngineParams, command_layout,
)
from .sgd import ProgSGDUpdate

CTR_BITS = 40
ACT_MAX = 127


def _delay(m: Module, v, n: int, name: str):
    """`v` delayed by n clock cycles (plain registers: the output pipelines never stall)."""
    for k in range(n):
        r = Signal(v.shape(), name=f"{name}_d{k + 1}")
        m.d.sync += r.eq(v)
        v = r
    return v


def _rep(v, n: int):
    return Cat(*([v] * n))


class Engine(wiring.Component):
    def __init__(self, params: EngineParams | None = None) -> None:
        self.p = p = params or EngineParams()
        self.cmd_layout = command_layout(p)
        hb = p.host_data_bits
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "hw_en": In(1), "hw_sel": In(4), "hw_addr": In(ADDR_W), "hw_data": In(hb),
            "hr_sel": In(4), "hr_addr": In(ADDR_W), "hr_data": Out(p.word_bits),
        })
        self.sgd = ProgSGDUpdate(p.weight_bits, p.acc_bits, p.max_divisor, p.max_eta)
        self.scaler = ProgDivider(p.acc_bits, p.max_scale)

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.p
        L, LB = p.lanes, p.lane_bits
        AB, WB, DB = p.act_bits, p.weight_bits, p.delta_bits

        # ---- memories ---------------------------------------------------------------------
        mems = {}

        def memory(sel: int, name: str, lane_w: int | None, width: int | None = None):
            w = width if width is not None else lane_w * L
            mem = Memory(shape=unsigned(w), depth=p.depth(sel), init=[])
            m.submodules[name] = mem
            rp = mem.read_port()
            wp = mem.write_port(granularity=lane_w) if lane_w else mem.write_port()
            mems[sel] = (rp, wp, lane_w, w)
            return rp, wp

        cmd_w = p.cmd_bits
        ncw = p.cmd_words
        ac_r, ac_w = memory(SEL_AMEM_C, "amem_c", AB)
        ar_r, ar_w = memory(SEL_AMEM_R, "amem_r", AB)
        wm_r, wm_w = memory(SEL_WMEM, "wmem", WB)
        wt_r, wt_w = memory(SEL_WTMEM, "wtmem", WB)
        dm_r, dm_w = memory(SEL_DMEM, "dmem", DB)
        sm_r, sm_w = memory(SEL_SMEM, "smem", AB)
        ym_r, ym_w = memory(SEL_YMEM, "ymem", AB)
        cm_r, cm_w = memory(SEL_CMEM, "cmem", None, CMD_WORD_BITS)

        # ---- units --------------------------------------------------------------------------
        m.submodules.mac = mac = MacArray(p.rows, p.cols, AB, DB, p.acc_bits)
        m.submodules.scaler = scaler = self.scaler
        m.submodules.relu_fwd = relu_fwd = NitroReluForward(p.slope_inv)
        m.submodules.lossgrad = lossgrad = LossGradient(True)
        m.submodules.sgd = sgd = self.sgd
        relu_bwd = []
        for j in range(L):
            u = NitroReluBackward(p.slope_inv, p.acc_bits)
            m.submodules[f"relu_bwd_{j}"] = u
            relu_bwd.append(u)
        for u in (scaler, relu_fwd, lossgrad, sgd, *relu_bwd):
            m.d.comb += u.o.ready.eq(1)

        # ---- sequencer ----------------------------------------------------------------------
        cmd = Signal(self.cmd_layout)
        pc = Signal(ADDR_W)
        fw = Signal(range(ncw + 1))
        cmd_sr = Signal(ncw * CMD_WORD_BITS)
        busy = Signal()
        done = Signal()
        # pipeline flush after the last C row: serializer + E1 + the deepest output pipeline
        flush = L + 2 + max(scaler.latency + 1 + relu_fwd.latency, sgd.latency + 1,
                            relu_bwd[0].latency + 1) + p.wait_cycles
        self.flush_cycles = flush
        wait_cnt = Signal(range(flush + 1))
        drain_done = Signal()
        in_wait = Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]

        # issue-side counters and address registers
        issuing = Signal()
        # loop bounds minus one, registered at DECODE (no subtractor in front of the compares)
        k_last, n_last, m_last = (Signal(ADDR_W, name=n) for n in ("k_last", "n_last", "m_last"))
        mt_i, nt_i, k_i = Signal(ADDR_W), Signal(ADDR_W), Signal(ADDR_W)
        a_tile, b_tile = Signal(ADDR_W, name="a_tile"), Signal(ADDR_W, name="b_tile")
        # Operand word addresses live in registers (the adders sit before them, not between a
        # register and the block RAMs): a = a_tile + k*a_sk, b = b_tile + k*b_sk.
        a_addr = Signal(ADDR_W)
        b_addr = Signal(ADDR_W)
        v1, f1, l1 = Signal(), Signal(), Signal()
        v2, f2, l2 = Signal(), Signal(), Signal()
        advance = Signal()
        m.d.comb += advance.eq(~v2 | mac.i.ready)

        # drain-side counters and address registers
        mt_d, nt_d, r_d = Signal(ADDR_W), Signal(ADDR_W), Signal(LB or 1)
        slots = [cmd.o0, cmd.o1, cmd.o2, cmd.o3, cmd.o4]
        r_mt = {s: Signal(ADDR_W, name=f"r_mt{s}") for s in (1, 2, 3)}
        c_mt = Signal(ADDR_W)
        t_nt = Signal(ADDR_W)
        # row_addr[s] = r_mt[s] + r*stride_s + nt: kept in a register, updated per drained row
        row_addr = {s: Signal(ADDR_W, name=f"row_addr{s}") for s in (1, 2, 3)}
        col_addr = Signal(ADDR_W)
        tcol_addr = Signal(ADDR_W)
        m.d.comb += [col_addr.eq(c_mt + (nt_d << LB)), tcol_addr.eq(t_nt + mt_d)]
        m_row = Signal(ADDR_W + 4)
        m.d.comb += m_row.eq((mt_d << LB) | r_d if LB else mt_d)

        op = cmd.op
        serial = Signal()
        m.d.comb += serial.eq((op == OP_SCALE_RELU) | (op == OP_SCALE_LOSS) | (op == OP_SGD))

        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), busy.eq(1), done.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):  # ncw 64-bit words, shifted in from the top
                m.d.sync += fw.eq(fw + 1)
                with m.If(fw != 0):
                    m.d.sync += cmd_sr.eq(Cat(cmd_sr[CMD_WORD_BITS:], cm_r.data))
                with m.If(fw == ncw):
                    m.d.sync += fw.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += cmd.as_value().eq(cmd_sr[:cmd_w])
                m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(op == OP_END):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [k_last.eq(cmd.k_len - 1), n_last.eq(cmd.n_tiles - 1),
                                 m_last.eq(cmd.m_tiles - 1)]
                    m.d.sync += [
                        issuing.eq(1), mt_i.eq(0), nt_i.eq(0), k_i.eq(0),
                        a_tile.eq(cmd.a_base), a_addr.eq(cmd.a_base), b_tile.eq(cmd.b_base),
                        b_addr.eq(cmd.b_base),
                        mt_d.eq(0), nt_d.eq(0), r_d.eq(0), drain_done.eq(0),
                        c_mt.eq(cmd.o0.base), t_nt.eq(cmd.o4.base),
                    ]
                    m.d.sync += [r_mt[s].eq(slots[s].base) for s in (1, 2, 3)]
                    m.d.sync += [row_addr[s].eq(slots[s].base) for s in (1, 2, 3)]
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

        # ---- issue: operand fetch into the MAC array ----------------------------------------
        with m.If(advance):
            m.d.sync += [v1.eq(issuing), f1.eq(k_i == 0), l1.eq(k_i == k_last)]
            with m.If(issuing):
                m.d.sync += [k_i.eq(k_i + 1), a_addr.eq(a_addr + cmd.a_sk), b_addr.eq(b_addr + cmd.b_sk)]
                with m.If(k_i == k_last):
                    m.d.sync += k_i.eq(0)
                    with m.If(nt_i == n_last):
                        m.d.sync += [nt_i.eq(0), b_tile.eq(cmd.b_base), b_addr.eq(cmd.b_base),
                                     mt_i.eq(mt_i + 1), a_tile.eq(a_tile + cmd.a_sm),
                                     a_addr.eq(a_tile + cmd.a_sm)]
                        with m.If(mt_i == m_last):
                            m.d.sync += issuing.eq(0)
                    with m.Else():
                        m.d.sync += [nt_i.eq(nt_i + 1), b_tile.eq(b_tile + cmd.b_sn),
                                     b_addr.eq(b_tile + cmd.b_sn), a_addr.eq(a_tile)]

        a_sel1 = cmd.a_sel  # constant during a command
        a_word = Mux(a_sel1, ar_r.data, ac_r.data)
        # Cat of signed WB-bit slices would not sign-extend: widen each lane explicitly.
        b_lanes = Signal(data.ArrayLayout(signed(DB), L))
        with m.Switch(cmd.b_sel):
            with m.Case(0):
                m.d.comb += [b_lanes[j].eq(wm_r.data.word_select(j, WB).as_signed()) for j in range(L)]
            with m.Case(1):
                m.d.comb += [b_lanes[j].eq(wt_r.data.word_select(j, WB).as_signed()) for j in range(L)]
            with m.Default():
                m.d.comb += [b_lanes[j].eq(dm_r.data.word_select(j, DB).as_signed()) for j in range(L)]
        # Stage 2: block RAM outputs registered (the operand memories spread over the die; this
        # register keeps their clock-to-out and routing off the MAC array's input paths).
        a_q = Signal(AB * L)
        b_q = Signal(data.ArrayLayout(signed(DB), L))
        with m.If(advance):
            m.d.sync += [v2.eq(v1), f2.eq(f1), l2.eq(l1), a_q.eq(a_word), b_q.eq(b_lanes)]
        m.d.comb += [
            mac.i.valid.eq(v2), mac.i.payload.first.eq(f2), mac.i.payload.last.eq(l2),
        ]
        m.d.comb += [mac.i.payload.a[i].eq(a_q.word_select(i, AB).as_signed()) for i in range(L)]
        m.d.comb += [mac.i.payload.b[j].eq(b_q[j]) for j in range(L)]

        # ---- drain: row counters --------------------------------------------------------------
        o_fire = Signal()
        ser_busy = Signal()
        ser_j = Signal(LB or 1)
        accept = Signal()
        m.d.comb += accept.eq(~ser_busy | (ser_j == L - 1))
        m.d.comb += mac.o.ready.eq(Mux(serial, accept, 1))
        m.d.comb += o_fire.eq(mac.o.valid & mac.o.ready)
        last_row = (r_d == L - 1) & (nt_d == n_last) & (mt_d == m_last)
        with m.If(o_fire):
            m.d.sync += [r_d.eq(r_d + 1)]
            m.d.sync += [row_addr[s].eq(row_addr[s] + slots[s].stride) for s in (1, 2, 3)]
            with m.If(r_d == L - 1):
                m.d.sync += [r_d.eq(0)]
                with m.If(nt_d == n_last):
                    m.d.sync += [nt_d.eq(0), t_nt.eq(cmd.o4.base), mt_d.eq(mt_d + 1),
                                 c_mt.eq(c_mt + cmd.o0.stride)]
                    m.d.sync += [r_mt[s].eq(r_mt[s] + (slots[s].stride << LB)) for s in (1, 2, 3)]
                    m.d.sync += [row_addr[s].eq(r_mt[s] + (slots[s].stride << LB)) for s in (1, 2, 3)]
                with m.Else():
                    m.d.sync += [nt_d.eq(nt_d + 1), t_nt.eq(t_nt + (cmd.o4.stride << LB))]
                    m.d.sync += [row_addr[s].eq(r_mt[s] + nt_d + 1) for s in (1, 2, 3)]
            with m.If(last_row):
                m.d.sync += drain_done.eq(1)

        m_len, n_len = cmd.m_len, cmd.n_len

        # ---- serial path: row -> one element per cycle ------------------------------------------
        ser_row = Signal(data.ArrayLayout(signed(p.acc_bits), L))
        ser_m = Signal(ADDR_W + 4)
        ser_nt = Signal(ADDR_W)
        ser_col = Signal(ADDR_W)
        ser_tcol = Signal(ADDR_W)
        ser_rowa = {s: Signal(ADDR_W, name=f"ser_row{s}") for s in (1, 2, 3)}
        with m.If(o_fire & serial):
            m.d.sync += [ser_row.eq(mac.o.payload), ser_m.eq(m_row), ser_nt.eq(nt_d),
                         ser_col.eq(col_addr), ser_tcol.eq(tcol_addr), ser_j.eq(0), ser_busy.eq(1)]
            m.d.sync += [ser_rowa[s].eq(row_addr[s]) for s in (1, 2, 3)]
        with m.Elif(ser_busy):
            m.d.sync += [ser_row[j].eq(ser_row[j + 1]) for j in range(L - 1)]
            m.d.sync += [ser_j.eq(ser_j + 1), ser_col.eq(ser_col + 1),
                         ser_tcol.eq(ser_tcol + cmd.o4.stride)]
            with m.If(ser_j == L - 1):
                m.d.sync += ser_busy.eq(0)

        # E0: element (m, n) with its addresses; memory reads issued here
        e0_n = Signal(ADDR_W + 4)
        m.d.comb += e0_n.eq((ser_nt << LB) | ser_j if LB else ser_nt)
        e0_valid = Signal()
        m.d.comb += e0_valid.eq(ser_busy & (ser_m < m_len) & (e0_n < n_len))
        lane_r0 = ser_m[:LB] if LB else Const(0, 1)
        # E1 registers
        e1 = {
            "valid": Signal(name="e1_valid"), "z": Signal(signed(p.acc_bits), name="e1_z"),
            "j": Signal(LB or 1, name="e1_j"), "r": Signal(LB or 1, name="e1_r"),
            "a0": Signal(ADDR_W, name="e1_a0"), "a1": Signal(ADDR_W, name="e1_a1"),
            "a2": Signal(ADDR_W, name="e1_a2"), "a3": Signal(ADDR_W, name="e1_a3"),
            "a4": Signal(ADDR_W, name="e1_a4"),
        }
        m.d.sync += [
            e1["valid"].eq(e0_valid), e1["z"].eq(ser_row[0]), e1["j"].eq(ser_j), e1["r"].eq(lane_r0),
            e1["a0"].eq(ser_col), e1["a1"].eq(ser_rowa[1]), e1["a2"].eq(ser_rowa[2]),
            e1["a3"].eq(ser_rowa[3]), e1["a4"].eq(ser_tcol),
        ]
        y1 = ym_r.data.word_select(e1["j"], AB).as_signed()
        w1 = wm_r.data.word_select(e1["j"], WB).as_signed()

        is_scale = (op == OP_SCALE_RELU) | (op == OP_SCALE_LOSS)
        # scaling: ProgDivider then clip (one register level)
        m.d.comb += [
            scaler.i.valid.eq(e1["valid"] & is_scale),
            scaler.i.payload.n.eq(e1["z"]), scaler.i.payload.mult.eq(cmd.sc_mult),
            scaler.i.payload.shift.eq(cmd.sc_shift),
        ]
        q = scaler.o.payload
        s_val = Signal(signed(AB))
        m.d.sync += s_val.eq(Mux(q > ACT_MAX, ACT_MAX, Mux(q < -ACT_MAX, -ACT_MAX, q)))
        l_sc = scaler.latency + 1
        y_s = _delay(m, y1, l_sc, "y")
        m.d.comb += [relu_fwd.i.valid.eq(1), relu_fwd.i.payload.eq(s_val),
                     lossgrad.i.valid.eq(1), lossgrad.i.payload.y_hat.eq(s_val),
                     lossgrad.i.payload.y.eq(y_s)]
        l_out = relu_fwd.latency
        s_out = _delay(m, s_val, l_out, "s_out")
        e_out = _delay(m, lossgrad.o.payload, l_out - lossgrad.latency, "e_out")
        a_out = relu_fwd.o.payload
        sc = {k: _delay(m, v, l_sc + l_out, f"sc_{k}") for k, v in e1.items() if k != "z"}
        sc_valid = sc["valid"] & is_scale

        # IntegerSGD update, behind one register level (block RAM lane select -> register)
        w2 = Signal(signed(WB))
        e2 = {k: Signal(v.shape(), name=f"e2_{k}") for k, v in e1.items()}
        m.d.sync += [w2.eq(w1)] + [e2[k].eq(v) for k, v in e1.items()]
        m.d.comb += [
            sgd.i.valid.eq(e2["valid"] & (op == OP_SGD)),
            sgd.i.payload.w.eq(w2), sgd.i.payload.g.eq(e2["z"]),
            sgd.i.payload.d_mult.eq(cmd.d_mult), sgd.i.payload.d_shift.eq(cmd.d_shift),
            sgd.i.payload.e_mult.eq(cmd.e_mult), sgd.i.payload.e_shift.eq(cmd.e_shift),
        ]
        sg = {k: _delay(m, v, sgd.latency, f"sg_{k}") for k, v in e2.items() if k not in ("z",)}
        sg_valid = sg["valid"] & (op == OP_SGD)
        w_new = sgd.o.payload

        # ---- row path: NITRO-ReLU backward ---------------------------------------------------
        rb_fire = o_fire & (op == OP_RELU_BWD)
        rb1_valid = Signal()
        rb1_row = Signal(data.ArrayLayout(signed(p.acc_bits), L))
        rb1_addr = Signal(ADDR_W)
        m.d.sync += [rb1_valid.eq(rb_fire & (m_row < m_len)), rb1_row.eq(mac.o.payload),
                     rb1_addr.eq(row_addr[1])]
        for j, u in enumerate(relu_bwd):
            m.d.comb += [u.i.valid.eq(rb1_valid), u.i.payload.delta.eq(rb1_row[j]),
                         u.i.payload.s.eq(sm_r.data.word_select(j, AB).as_signed())]
        l_rb = relu_bwd[0].latency
        rb_valid = _delay(m, rb1_valid, l_rb, "rb_valid")
        rb_addr = _delay(m, rb1_addr, l_rb, "rb_addr")
        rb_word = Cat(*(u.o.payload[:DB] for u in relu_bwd))

        # ---- memory ports: engine use while busy, host use while idle -------------------------
        def lane_en(lane, on):
            return Mux(on, Const(1, L) << lane, 0)

        host_w = {sel: self.hw_en & (self.hw_sel == sel) & ~busy for sel in mems}

        def host_or(sel, wp, addr, dat, en):
            rp_, wp_, lane_w, width = mems[sel]
            full = (1 << (L if lane_w else 1)) - 1
            m.d.comb += [
                wp.addr.eq(Mux(busy, addr, self.hw_addr)),
                wp.data.eq(Mux(busy, dat, self.hw_data[:width])),
                wp.en.eq(Mux(busy, en, Mux(host_w[sel], full, 0))),
            ]

        is_relu = op == OP_SCALE_RELU
        is_loss = op == OP_SCALE_LOSS
        sc_val = Mux(is_relu, a_out, e_out)
        host_or(SEL_AMEM_C, ac_w, sc["a0"], _rep(sc_val[:AB], L), lane_en(sc["r"], sc_valid))
        host_or(SEL_AMEM_R, ar_w, sc["a1"], _rep(a_out[:AB], L), lane_en(sc["j"], sc_valid & is_relu))
        e_ext = Signal(signed(DB))
        m.d.comb += e_ext.eq(e_out)
        host_or(SEL_DMEM, dm_w, Mux(rb_valid, rb_addr, sc["a1"]),
                Mux(rb_valid, rb_word, _rep(e_ext, L)),
                Mux(rb_valid, (1 << L) - 1, lane_en(sc["j"], sc_valid & is_loss)))
        host_or(SEL_SMEM, sm_w, sc["a2"], _rep(s_out[:AB], L), lane_en(sc["j"], sc_valid))
        host_or(SEL_WMEM, wm_w, sg["a3"], _rep(w_new[:WB], L), lane_en(sg["j"], sg_valid))
        host_or(SEL_WTMEM, wt_w, sg["a4"], _rep(w_new[:WB], L),
                lane_en(sg["r"], sg_valid & cmd.wt_en))
        host_or(SEL_YMEM, ym_w, 0, 0, 0)
        host_or(SEL_CMEM, cm_w, 0, 0, 0)

        ha = self.hr_addr
        is_sgd = op == OP_SGD
        reads = {
            SEL_AMEM_C: (a_addr, advance), SEL_AMEM_R: (a_addr, advance),
            SEL_WMEM: (Mux(is_sgd, ser_rowa[3], b_addr), Mux(is_sgd, 1, advance)),
            SEL_WTMEM: (b_addr, advance), SEL_DMEM: (b_addr, advance),
            SEL_SMEM: (row_addr[2], 1), SEL_YMEM: (ser_rowa[3], 1), SEL_CMEM: ((pc * ncw + fw)[:ADDR_W], 1),
        }
        for sel, (addr, en) in reads.items():
            rp = mems[sel][0]
            m.d.comb += [rp.addr.eq(Mux(busy, addr, ha)), rp.en.eq(Mux(busy, en, 1))]

        # ---- performance counters --------------------------------------------------------------
        n_ctr = N_PHASES * len(CTR_KINDS)
        kinds = len(CTR_KINDS)
        ctr_list = [Signal(CTR_BITS, name=f"ctr_{ph_}_{CTR_KINDS[k]}")
                    for ph_ in range(N_PHASES) for k in range(kinds)]
        ctrs = Array(ctr_list)
        ph = cmd.phase
        incs = [busy, mac.i.valid & mac.i.ready, mac.i.valid & ~mac.i.ready, in_wait]
        with m.If(self.start & ~busy):
            m.d.sync += [c.eq(0) for c in ctr_list]
        with m.Elif(busy):
            for ph_ in range(N_PHASES):
                with m.If(ph == ph_):
                    for k, inc in enumerate(incs):
                        c = ctr_list[ph_ * kinds + k]
                        with m.If(inc):
                            m.d.sync += c.eq(c + 1)

        # ---- host read mux ----------------------------------------------------------------------
        hr_sel1 = Signal(4)
        ctr_rd = Signal(CTR_BITS)
        m.d.sync += [hr_sel1.eq(self.hr_sel), ctr_rd.eq(ctrs[ha[:max(1, (n_ctr - 1).bit_length())]])]
        with m.Switch(hr_sel1):
            for sel, (rp, _, _, width) in mems.items():
                with m.Case(sel):
                    m.d.comb += self.hr_data.eq(rp.data)
            with m.Case(SEL_CTR):
                m.d.comb += self.hr_data.eq(ctr_rd)
        return m
