"""The core's output pipelines that are more than one unit: scaling with its two consumers, and the
row-wide NITRO-ReLU backward. Both are bare pipes (every output taken in the cycle it appears)."""
from __future__ import annotations

from amaranth import Cat, Module, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.divider import ProgDivider
from hw.lossgrad import LossGradient
from hw.relu import NitroReluBackward, NitroReluForward

from .params import ADDR_W, EngineParams
from .pipeline import data_reg, delayed

ACT_MAX = 127


class ScalePipeline(wiring.Component):
    """One element per cycle: s = clip(tdiv(z, SF)) (the runtime divider's constants mult, shift),
    then a = NITRO-ReLU(s) and e = wrap8(s - y). s, a and e leave `latency` cycles after z and y
    enter; `valid` only gates the divider (the consumer keeps its own valid alongside)."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        mw, sw = p.scale_div
        self.scaler = ProgDivider(p.acc_bits, p.max_scale, always_ready=True)
        self.relu = NitroReluForward(p.slope_inv, always_ready=True)
        self.lossgrad = LossGradient(True, always_ready=True)
        # divider, its output register, the clip's compares, the clip's select
        self.clip_latency = self.scaler.latency + 3
        # NITRO-ReLU, then a register: the op select and the lane copies into two memories'
        # write selects get a cycle of their own (8.0 ns routed without it)
        self.out_latency = self.relu.latency + 1
        self.latency = self.clip_latency + self.out_latency
        super().__init__({
            "valid": In(1), "z": In(signed(p.acc_bits)), "mult": In(mw), "shift": In(sw),
            "y": In(signed(p.act_bits)),
            "s": Out(signed(p.act_bits)), "a": Out(signed(p.act_bits)), "e": Out(signed(p.act_bits)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        AB = self.p.act_bits
        m.submodules.scaler, m.submodules.relu = scaler, relu = self.scaler, self.relu
        m.submodules.lossgrad = lossgrad = self.lossgrad
        m.d.comb += [scaler.i.valid.eq(self.valid), scaler.i.payload.n.eq(self.z),
                     scaler.i.payload.mult.eq(self.mult), scaler.i.payload.shift.eq(self.shift)]
        q = data_reg(signed(self.p.acc_bits))
        m.d.sync += q.eq(scaler.o.payload)
        # the clip's two acc_bits-wide compares get a level of their own (their carry chains
        # into the select, mapped to the register's set / reset, were 7.5 ns routed)
        q_hi, q_lo, q_low = data_reg(), data_reg(), data_reg(signed(AB))
        m.d.sync += [q_hi.eq(q > ACT_MAX), q_lo.eq(q < -ACT_MAX), q_low.eq(q)]
        s_val = data_reg(signed(AB))
        m.d.sync += s_val.eq(Mux(q_hi, ACT_MAX, Mux(q_lo, -ACT_MAX, q_low)))
        y_s = delayed(m, self.y, self.clip_latency, "y")
        m.d.comb += [relu.i.valid.eq(1), relu.i.payload.eq(s_val),
                     lossgrad.i.valid.eq(1), lossgrad.i.payload.y_hat.eq(s_val),
                     lossgrad.i.payload.y.eq(y_s)]
        m.d.comb += [self.s.eq(delayed(m, s_val, self.out_latency, "s_out")),
                     self.e.eq(delayed(m, lossgrad.o.payload, self.out_latency - lossgrad.latency, "e_out")),
                     self.a.eq(delayed(m, relu.o.payload, 1, "a_out"))]
        return m


class ReluBackwardRow(wiring.Component):
    """A C row of delta = e . W_l through `lanes` NITRO-ReLU backward units against the stored
    inputs s: `row` and `addr` enter with `valid`, the row's SMEM word `s_word` `read_latency`
    cycles later; `out_*` leave `latency` cycles after `valid`."""

    def __init__(self, p: EngineParams, read_latency: int) -> None:
        self.p, self.read_latency = p, read_latency
        self.units = [NitroReluBackward(p.slope_inv, p.acc_bits, always_ready=True)
                      for _ in range(p.lanes)]
        self.unit_latency = self.units[0].latency
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
