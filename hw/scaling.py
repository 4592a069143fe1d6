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
    and |z| / sf takes 8 restoring-division steps (one register level each, a subtractor of at
    most in_width bits): step b takes sf * 2^b from the remainder when it fits. Bit 7 set means
    |z| >= 128 * sf, i.e. saturation; below it, bits 6..0 are the exact truncated quotient, and
    the remainder before step b is under 2^(b+1) * sf: steps 6..0 compare and subtract only
    bits b .. b + sf_width of it (a saturated result ignores them), a carry chain as wide as sf
    and one bit, not in_width - b.
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
        W, N = self.in_width, self.sf_width + 1
        sign = st.reg(p.z[-1])
        sf, = replicated_reg(m, st.platform, p.sf, 1, "sf_in")
        rem = st.reg(Mux(p.z[-1], -p.z, p.z)[:W], unsigned(W))  # |z|; |-2^(W-1)| fits unsigned
        q = Const(0, 0)
        for b in reversed(range(1, self.STEPS)):
            # the saturation step sees all of |z|; the later ones a window of N bits
            hi = rem[b:] if b == self.STEPS - 1 else rem[b:b + N]
            fits = hi >= sf
            q = st.reg(Cat(fits, q))
            w = min(W, b + N)
            rem = st.reg(Mux(fits, Cat(rem[:b], (hi - sf)[:w - b]), rem[:w]), unsigned(w))
            sign, sf = st.reg(sign), st.reg(sf)
        # The last step's bit chooses between the two results it can give, each formed beside
        # the step from the bits before it (saturation, bits 6..1, the sign), so the clip and
        # the negation are not behind the divider and the last register level is a plain copy:
        # no logic behind the route from the lane to where its result goes.
        sat, high = q[-1], q[:-1]

        def result(q0):
            mag = Mux(sat, ACT_MAX, Cat(q0, high))
            return Mux(sign, -mag, mag)[:8].as_signed()

        out = st.reg(Mux(rem[:N] >= sf, result(1), result(0)), signed(8))
        return st.reg(out)
