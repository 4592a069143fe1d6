"""NITRO Scaling unit (spec 2.3): s = clip(tdiv(z, SF), -127, 127), int8 out."""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, signed, unsigned
from amaranth.lib import data

from model.divider import divider_constants
from model.layers import ACT_MAX

from .divider import tdiv_datapath, tdiv_latency
from .fanout import replicated_reg
from .stream_unit import PipelinedUnit, Stages, check_int


class NitroScaling(PipelinedUnit):
    """z (signed in_width) -> clip(tdiv(z, factor), -127, 127) (signed 8). Latency: divider + 1.

    `factor` is the layer's SF = 256 * fan-in, fixed at generation; any positive value is exact.
    """

    def __init__(self, factor: int, in_width: int = 32, *, always_ready: bool = False) -> None:
        self.factor = check_int("factor", factor, 1)
        self.in_width = check_int("in_width", in_width, 2, 64)
        self.consts = divider_constants(factor, in_width)
        self.latency = tdiv_latency(in_width, self.consts.mult, self.consts.mult_width) + 1
        super().__init__(signed(in_width), signed(8), always_ready=always_ready)

    def datapath(self, m: Module, st: Stages, payload):
        c = self.consts
        q, _ = tdiv_datapath(st, payload, c.mult, c.shift, c.mult_width)
        # Own register level for the clip, as reductions of the high bits instead of two 32-bit
        # compares (carry chains) behind the divider's negation chain.
        sign, high = q[-1], q[7:-1]
        over = ~sign & high.any()                               # q > 127
        under = sign & ~(high.all() & q[:7].any())              # q < -127 (q <= -128)
        return st.reg(Mux(over, ACT_MAX, Mux(under, -ACT_MAX, q[:8].as_signed())), signed(8))


class ScaleClip(PipelinedUnit):
    """z (signed in_width), sf (1..max_scale, in each payload) -> clip(tdiv(z, sf), -127, 127).

    No multiplier: the result saturates at |q| >= 128, so only the quotient's low 8 bits matter,
    and |z| / sf takes 8 non-restoring division steps, one register level each: step b adds
    sf * 2^b to the partial remainder r, or takes it away while r >= 0, and its quotient bit is
    r >= 0 afterwards (the same bits as restoring division: a negative r is the restoring
    remainder less sf * 2^b). The add-or-subtract is one carry chain whose sf operand is
    inverted by the previous step's bit, a register: no select fans out behind a carry chain.
    Bit 7 set means |z| >= 128 * sf, i.e. saturation; below it, bits 6..0 are the exact
    truncated quotient, and before step b, -2^(b+1) * sf <= r < 2^(b+1) * sf: steps 6..0 work on
    bits b .. b + sf_width + 1 of r (a saturated result ignores them), a carry chain of
    sf_width + 2 bits, not in_width - b.
    Latency: |z|, 8 steps (the last with the sign and clip), a copy: 10. Eight lanes of it cost no DSP (the engine's
    row-wide scaling). `sf` enters through a flip-flop of its own (`hw.fanout`): the lanes all
    take the command's sf, and yosys would merge their identical sf registers, stage by stage,
    into one chain that ties every lane's divider to every other's.
    """

    STEPS = 8  # quotient bits: 7 exact ones and the saturation bit

    def __init__(self, in_width: int = 32, max_scale: int = (1 << 31) - 1, *,
                 always_ready: bool = False) -> None:
        self.in_width = check_int("in_width", in_width, 9, 64)
        self.max_scale = check_int("max_scale", max_scale, 1)
        self.sf_width = max_scale.bit_length()
        self.latency = self.latency_for()
        super().__init__(data.StructLayout({"z": signed(in_width), "sf": unsigned(self.sf_width)}),
                         signed(8), always_ready=always_ready)

    @classmethod
    def latency_for(cls) -> int:
        return cls.STEPS + 2

    def datapath(self, m: Module, st: Stages, p):
        W, N = self.in_width, self.sf_width + 1  # r >> (b + 1) after step b + 1 fits N bits signed
        T = self.STEPS - 1
        sign = st.reg(p.z[-1])
        sf, = replicated_reg(m, st.platform, p.sf, 1, "sf_in")
        mag = st.reg(Mux(p.z[-1], -p.z, p.z)[:W], unsigned(W))  # |z|; |-2^(W-1)| fits unsigned
        # the saturation step: r = |z| - 128 * sf on all of |z|; bits below 7 never change
        d = mag[T:] - sf
        q = st.reg(~d[-1])
        r = st.reg(Cat(mag[:T], d[:N]), unsigned(T + N))
        sign, sf = st.reg(sign), st.reg(sf)
        for b in reversed(range(1, T)):
            w = r[b:b + N + 1]  # r >> b, N + 1 bits signed
            sub = q[0]
            sfx = Cat(sf, Const(0, N + 1 - len(sf))) ^ sub.replicate(N + 1)
            # w + sf, or w - sf as w + ~sf + 1: the 1 carried in from a bit below
            t = (Cat(sub, w) + Cat(sub, sfx))[1:N + 2]
            q = st.reg(Cat(~t[N], q))
            r = st.reg(Cat(r[:b], t[:N]), unsigned(b + N))
            sign, sf = st.reg(sign), st.reg(sf)
        # The last step's bit, r >= 0 after it, is r1 >= sf after a step that subtracted and
        # r1 + sf >= 0 after one that added: two carry chains beside each other, each choosing
        # between the two results the bit can give, formed beside the step from the bits before
        # it (saturation, bits 6..1, the sign), so the clip and the negation are not behind the
        # divider and the last register level is a plain copy: no logic behind the route from
        # the lane to where its result goes.
        sat, high = q[-1], q[:-1]
        r1 = r[:N + 1].as_signed()

        def result(q0):
            mag = Mux(sat, ACT_MAX, Cat(q0, high))
            return Mux(sign, -mag, mag)[:8].as_signed()

        q0 = Mux(q[0], r1 >= sf, ~(r1 + sf)[-1])
        out = st.reg(Mux(q0, result(1), result(0)), signed(8))
        return st.reg(out)
