"""The core's output operations: serial scaling with its two consumers (NITRO-ReLU, loss
gradient), IntegerSGD, and the row-wide NITRO-ReLU backward and scaling (`hw.engine.rowscale`),
with the scratchpad writes they make. All are bare pipes (every output taken in the cycle it
appears)."""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import lane_mux, replicated_reg
from hw.lossgrad import LossGradient
from hw.relu import NitroReluBackward
from hw.sgd import IntegerSGDUpdate

from .latencies import PipeLatencies
from .memory import READ_LATENCY
from .params import (
    ADDR_W, MEM_NAMES, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, SEL_AMEM_C, SEL_AMEM_R,
    SEL_DMEM, SEL_SMEM, SEL_WMEM, SEL_WTMEM, EngineParams, command_layout, row_scaled,
)
from .pipeline import data_reg, delayed
from .rowscale import RowScale, ScaleRelu
from .serializer import element_layout

WRITTEN = (SEL_AMEM_C, SEL_AMEM_R, SEL_DMEM, SEL_SMEM, SEL_WMEM, SEL_WTMEM)  # what the ops write


class ScalePipeline(wiring.Component):
    """One element per cycle: s = clip(tdiv(z, SF)), then a = NITRO-ReLU(s) and e = wrap8(s - y).
    s, a and e leave `latency` cycles after z and y enter; sf is taken a cycle before z."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        self.lane = ScaleRelu(p, 1)
        self.lossgrad = LossGradient(True, always_ready=True)
        self.clip_latency, self.out_latency = self.lane.clip_latency, self.lane.out_latency
        self.latency = self.lane.latency
        super().__init__({
            "z": In(signed(p.acc_bits)), "sf": In(p.max_scale.bit_length()),
            "y": In(signed(p.act_bits)),
            "s": Out(signed(p.act_bits)), "a": Out(signed(p.act_bits)), "e": Out(signed(p.act_bits)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.lane, m.submodules.lossgrad = lane, lossgrad = self.lane, self.lossgrad
        m.d.comb += [lane.z[0].eq(self.z), lane.sf.eq(self.sf)]
        y_s = delayed(m, self.y, self.clip_latency, "y")
        m.d.comb += [lossgrad.i.valid.eq(1), lossgrad.i.payload.y_hat.eq(lane.s_clip[0]),
                     lossgrad.i.payload.y.eq(y_s)]
        m.d.comb += [self.s.eq(lane.s[0]), self.a.eq(lane.a[0]),
                     self.e.eq(delayed(m, lossgrad.o.payload, self.out_latency - lossgrad.latency, "e_out"))]
        return m


class ReluBackwardRow(wiring.Component):
    """A C row of delta = e . W_l through `lanes` NITRO-ReLU backward units against the stored
    inputs s: `row` and `addr` enter with `valid`, the row's SMEM word `s_word` `read_latency`
    cycles later; `out_*` leave `latency` cycles after `valid`."""

    def __init__(self, p: EngineParams, read_latency: int) -> None:
        self.p, self.read_latency = p, read_latency
        self.units = [NitroReluBackward(p.slope_inv, p.acc_bits, always_ready=True)
                      for _ in range(p.lanes)]
        self.unit_latency = PipeLatencies.of(p).relu_bwd
        self.latency = read_latency + self.unit_latency
        L = p.lanes
        super().__init__({
            "valid": In(1), "row": In(data.ArrayLayout(signed(p.acc_bits), L)), "addr": In(ADDR_W),
            "s_word": In(L * p.act_bits),
            "out_valid": Out(1), "out_addr": Out(ADDR_W), "out_word": Out(L * p.delta_bits),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p, RL = self.p, self.read_latency
        valid = delayed(m, self.valid, RL, "rb1_valid", False)
        row = delayed(m, self.row, RL, "rb1_row")
        addr = delayed(m, self.addr, RL, "rb1_addr")
        for j, u in enumerate(self.units):
            m.submodules[f"relu_bwd_{j}"] = u
            m.d.comb += [u.i.valid.eq(valid), u.i.payload.delta.eq(row[j]),
                         u.i.payload.s.eq(self.s_word.word_select(j, p.act_bits).as_signed())]
        m.d.comb += [self.out_valid.eq(delayed(m, valid, self.unit_latency, "rb_valid", False)),
                     self.out_addr.eq(delayed(m, addr, self.unit_latency, "rb_addr")),
                     self.out_word.eq(Cat(*(u.o.payload[:p.delta_bits] for u in self.units)))]
        return m


def _rep(v, n: int):
    return Cat(*([v] * n))


class OutputOps(wiring.Component):
    """The output op of `cmd` on the drained C: serial ops on the serializer's elements (`e_valid`,
    `e`: scale_relu -> a, s; scale_loss -> e, y_hat; sgd -> W), relu_bwd and a row-scaled
    scale_relu (`params.row_scaled`) on whole rows (`row_v`, `row` with its index `m_row`, n tile
    `nt`, o0 word `col_addr` and o1 / o2 words `row_addr` / `row_addr2`; the row-wide scaling
    takes the row from `row_rs`, its own copy). The YMEM, WMEM and SMEM words
    an element or row needs arrive on `y_word`, `w_word` and `s_word` `READ_LATENCY` cycles after
    its address; the writes leave on NAME_wr_* per memory. A chunk of K (`cmd.p_in`, `p_out`)
    adds the element's partial sum `p_word` (PMEM, read like WMEM) and writes the sum back to
    PMEM (pmem_wr_*) instead of the op. `serial` / `is_sgd`: the op's kind, registered from
    `cmd.op`. `latency`: the deepest pipe, for the command flush."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        L = p.lanes
        self.scale = ScalePipeline(p)
        # the engine takes every unit output in the cycle it appears: no skid FIFOs (always_ready)
        self.sgd = IntegerSGDUpdate(p.weight_bits, p.acc_bits, None, p.max_divisor, p.max_eta,
                                    always_ready=True)
        self.rbwd = ReluBackwardRow(p, READ_LATENCY)
        self.rows = RowScale(p)
        self.latency = PipeLatencies.of(p).deepest
        ports = {"cmd": In(command_layout(p)), "e_valid": In(1), "e": In(element_layout(p)),
                 "row_v": In(1), "row": In(data.ArrayLayout(signed(p.acc_bits), L)),
                 "row_rs": In(data.ArrayLayout(signed(p.acc_bits), L)),
                 "row_addr": In(ADDR_W), "row_addr2": In(ADDR_W), "col_addr": In(ADDR_W),
                 "nt": In(ADDR_W), "m_row": In(ADDR_W + 4),
                 "y_word": In(L * p.act_bits), "w_word": In(L * p.weight_bits),
                 "s_word": In(L * p.act_bits), "p_word": In(signed(p.acc_bits)),
                 "pmem_wr_addr": Out(ADDR_W), "pmem_wr_data": Out(p.acc_bits), "pmem_wr_en": Out(1),
                 "serial": Out(1), "is_sgd": Out(1)}
        for sel in WRITTEN:
            name = MEM_NAMES[sel]
            ports |= {f"{name}_wr_addr": Out(ADDR_W), f"{name}_wr_data": Out(L * p.lane_width(sel)),
                      f"{name}_wr_en": Out(L)}
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        p, cmd, RL, L = self.p, self.cmd, READ_LATENCY, self.p.lanes
        AB, WB = p.act_bits, p.weight_bits
        m.submodules.scale, m.submodules.sgd = scale, sgd = self.scale, self.sgd
        m.submodules.relu_bwd, m.submodules.rows = rbwd, rows = self.rbwd, self.rows

        is_relu, is_loss, is_sgd, is_rbwd, is_scale, is_rows, serial, p_in, p_out = self._decoded(m)
        m.d.comb += [self.serial.eq(serial), self.is_sgd.eq(is_sgd)]

        # E1: the element RL cycles later, with its YMEM / WMEM / PMEM words (read at E0)
        e1_valid = delayed(m, self.e_valid, RL, "e1_valid", False)
        e1 = delayed(m, self.e, RL, "e1")
        y1 = self.y_word.word_select(e1.j, AB).as_signed()
        w1 = self.w_word.word_select(e1.j, WB).as_signed()

        # E2: the element plus its partial sum (int32 wrap: the chunks' order changes nothing),
        # the YMEM / WMEM lanes, registered
        w2, y2 = data_reg(signed(WB)), data_reg(signed(AB))
        e2_valid = Signal()
        e2 = data_reg(e1.shape())
        m.d.sync += [w2.eq(w1), y2.eq(y1), e2_valid.eq(e1_valid), e2.eq(e1),
                     e2.z.eq((e1.z + Mux(p_in, self.p_word, 0))[:p.acc_bits])]
        m.d.comb += [self.pmem_wr_addr.eq(e2.p), self.pmem_wr_data.eq(e2.z),
                     self.pmem_wr_en.eq(e2_valid & p_out)]
        op_valid = e2_valid & ~p_out

        # scaling, then NITRO-ReLU (a) and the loss gradient (e), all leaving together
        m.d.comb += [scale.z.eq(e2.z), scale.y.eq(y2), scale.sf.eq(cmd.sc_sf)]
        sc_valid = delayed(m, op_valid, scale.latency, "sc_valid", False) & is_scale
        sc = delayed(m, self._where(m, e2, "e2s"), scale.latency, "sc")

        # IntegerSGD update
        m.d.comb += [
            sgd.i.valid.eq(op_valid & is_sgd),
            sgd.i.payload.w.eq(w2), sgd.i.payload.g.eq(e2.z),
            sgd.i.payload.d_mult.eq(cmd.d_mult), sgd.i.payload.d_shift.eq(cmd.d_shift),
            sgd.i.payload.e_mult.eq(cmd.e_mult), sgd.i.payload.e_shift.eq(cmd.e_shift),
        ]
        sg_valid = delayed(m, op_valid, sgd.latency, "sg_valid", False) & is_sgd
        sg = delayed(m, self._where(m, e2, "e2"), sgd.latency, "sg")
        # WMEM read-modify-write: a row's word is read on L consecutive cycles (E0) and first
        # written RL + 1 + sgd.latency cycles after the first read, so never in a read cycle
        # (the memories have no read/write collision logic, see hw.engine.memory)
        assert RL + 1 + sgd.latency >= L

        # NITRO-ReLU backward on whole rows (the row's SMEM word arrives RL cycles later)
        m.d.comb += [rbwd.valid.eq(self.row_v & is_rbwd & (self.m_row < cmd.m_len)),
                     rbwd.row.eq(self.row), rbwd.addr.eq(self.row_addr), rbwd.s_word.eq(self.s_word)]

        # scale_relu on whole rows
        m.d.comb += [rows.cmd.eq(cmd), rows.valid.eq(self.row_v & is_rows), rows.row.eq(self.row_rs),
                     rows.m_row.eq(self.m_row), rows.nt.eq(self.nt), rows.col_addr.eq(self.col_addr),
                     rows.row_addr1.eq(self.row_addr), rows.row_addr2.eq(self.row_addr2)]

        def lane_en(lane, on):
            return Mux(on, Const(1, L) << lane, 0)

        def write(sel, addr, dat, en):
            name = MEM_NAMES[sel]
            m.d.comb += [getattr(self, f"{name}_wr_addr").eq(addr),
                         getattr(self, f"{name}_wr_data").eq(dat), getattr(self, f"{name}_wr_en").eq(en)]

        a_out, e_out, w_new = scale.a, scale.e, sgd.o.payload
        rb = rbwd.out_valid

        def selects(d, name):
            """A command's port select registered as `d` (itself a register of the decoded
            command) once for the address and once per lane (the lanes' write registers lie
            apart, with their memory's RAMs). Two cycles after DECODE: a command's first write
            is far later, and the last one before it was presented before its flush ended."""
            return replicated_reg(m, platform, d, L + 1, name)

        def row_or(name, addr, dat, en):  # the row-wide scaling's port during its commands
            rs = selects(is_rows, f"rows_{name}")
            return [Mux(rs[0], getattr(rows, f"{name}_wr_addr"), addr),
                    lane_mux(rs[1:], getattr(rows, f"{name}_wr_data"), dat),
                    lane_mux(rs[1:], getattr(rows, f"{name}_wr_en"), en)]

        write(SEL_AMEM_C, *row_or("amem_c", sc.a[0], _rep(Mux(is_relu, a_out, e_out)[:AB], L),
                                  lane_en(sc.r, sc_valid)))
        write(SEL_AMEM_R, *row_or("amem_r", sc.a[1], _rep(a_out[:AB], L),
                                  lane_en(sc.j, sc_valid & is_relu)))
        e_ext = Signal(signed(p.delta_bits))
        m.d.comb += e_ext.eq(e_out)
        # DMEM's address and word by the command (relu_bwd or not): no loss gradient is written
        # during a relu_bwd command, nor a ReLU-backward row during any other
        rbs = selects(is_rbwd, "rbwd_dmem")
        write(SEL_DMEM, Mux(rbs[0], rbwd.out_addr, sc.a[1]),
              lane_mux(rbs[1:], rbwd.out_word, _rep(e_ext, L)),
              Mux(rb, (1 << L) - 1, lane_en(sc.j, sc_valid & is_loss)))
        write(SEL_SMEM, *row_or("smem", sc.a[2], _rep(scale.s[:AB], L), lane_en(sc.j, sc_valid)))
        write(SEL_WMEM, sg.a[3], _rep(w_new[:WB], L), lane_en(sg.j, sg_valid))
        write(SEL_WTMEM, sg.a[4], _rep(w_new[:WB], L), lane_en(sg.r, sg_valid & cmd.wt_en))
        return m

    def _decoded(self, m: Module) -> tuple:
        """The command's op flags, registered (valid from the first RUN cycle; only DECODE reads
        `op`): is_relu, is_loss, is_sgd, is_rbwd, is_scale, is_rows, serial, p_in, p_out."""
        cmd = self.cmd
        is_relu, is_loss, is_sgd, is_rbwd, is_scale, is_rows, serial, p_in, p_out = (
            data_reg(name=n) for n in ("is_relu", "is_loss", "is_sgd", "is_rbwd", "is_scale",
                                       "is_rows", "serial", "p_in", "p_out"))
        op = cmd.op
        by_rows = row_scaled(op, cmd.p_in, cmd.p_out)
        m.d.sync += [p_in.eq(cmd.p_in), p_out.eq(cmd.p_out),
                     is_relu.eq(op == OP_SCALE_RELU), is_loss.eq(op == OP_SCALE_LOSS),
                     is_sgd.eq(op == OP_SGD), is_rbwd.eq(op == OP_RELU_BWD),
                     is_scale.eq((op == OP_SCALE_RELU) | (op == OP_SCALE_LOSS)),
                     is_rows.eq(by_rows),
                     serial.eq(((op == OP_SCALE_RELU) | (op == OP_SCALE_LOSS) | (op == OP_SGD))
                               & ~by_rows)]
        return is_relu, is_loss, is_sgd, is_rbwd, is_scale, is_rows, serial, p_in, p_out

    def _where(self, m: Module, e, name: str):
        """An element's lanes and output addresses: what travels beside a pipe."""
        layout = data.StructLayout({k: f.shape for k, f in element_layout(self.p) if k not in ("z", "p")})
        w = Signal(layout, name=f"{name}_where")
        m.d.comb += [getattr(w, k).eq(getattr(e, k)) for k, _ in layout]
        return w
