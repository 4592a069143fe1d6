"""NITRO-ReLU forward and backward units (spec 2.4), for every supported slope inverse alpha."""
from __future__ import annotations

from amaranth import Cat, Module, Mux, signed
from amaranth.lib import data

from model.divider import divider_constants
from model.layers import ACT_MAX, INT32_MAX, SLOPE_INV, check_slope_inv

from .divider import tdiv_datapath, tdiv_latency
from .stream_unit import PipelinedUnit, Stages, check_int


def _clip(v, lo: int, hi: int):
    return Mux(v > hi, hi, Mux(v < lo, lo, v))


class NitroReluForward(PipelinedUnit):
    """a = wrap8(wrap8(clip(s,0,127) + tdiv(clip(s,-127,0), alpha)) - mu(alpha)); int8 in and out.

    Every int8 s is accepted (the reference's inputs are in [-127, 127]; -128 clips like -127).
    Latency: the 8-bit divider's levels + 1.
    """

    def __init__(self, slope_inv: int = SLOPE_INV, *, always_ready: bool = False) -> None:
        self.mu = check_slope_inv(slope_inv)  # NitroError for an unsupported alpha
        self.slope_inv = slope_inv
        self.consts = divider_constants(slope_inv, 8)
        self.latency = self.latency_for(slope_inv)
        super().__init__(signed(8), signed(8), always_ready=always_ready)

    @staticmethod
    def latency_for(slope_inv: int) -> int:
        """The latency of such a unit, without building one."""
        c = divider_constants(slope_inv, 8)
        return tdiv_latency(8, c.mult, c.mult_width) + 1

    def datapath(self, m: Module, st: Stages, s):
        c = self.consts
        neg_in = _clip(s, -ACT_MAX, 0).as_signed()
        neg, levels = tdiv_datapath(st, neg_in[:8].as_signed(), c.mult, c.shift, c.mult_width)
        pos = st.delay(_clip(s, 0, ACT_MAX)[:8].as_signed(), levels, name="pos")
        # Two int8 wraps, as the reference computes (pos + neg) in int8 and then subtracts mu in int8.
        return st.reg(((pos + neg)[:8].as_signed() - self.mu)[:8].as_signed(), signed(8))


class NitroReluBackward(PipelinedUnit):
    """delta_out = tdiv(delta, g(s)), g = 1 on [0,126], alpha on [-127,-1], INT32_MAX otherwise.

    Ports: i.payload {delta: signed(delta_width), s: signed(8)} (s = the stored forward input);
    o.payload signed(delta_width). delta_width <= 32 (the reference holds deltas in int32).
    Latency: the delta_width-bit divider's levels + 1.
    """

    def __init__(self, slope_inv: int = SLOPE_INV, delta_width: int = 32, *,
                 always_ready: bool = False) -> None:
        check_slope_inv(slope_inv)
        self.slope_inv = slope_inv
        self.delta_width = check_int("delta_width", delta_width, 2, 32)
        self.consts = divider_constants(slope_inv, delta_width)
        self.latency = self.latency_for(slope_inv, delta_width)
        super().__init__(
            data.StructLayout({"delta": signed(delta_width), "s": signed(8)}), signed(delta_width),
            always_ready=always_ready,
        )

    @staticmethod
    def latency_for(slope_inv: int, delta_width: int) -> int:
        """The latency of such a unit, without building one."""
        c = divider_constants(slope_inv, delta_width)
        return tdiv_latency(delta_width, c.mult, c.mult_width) + 1

    def datapath(self, m: Module, st: Stages, p):
        c, w = self.consts, self.delta_width
        q, levels = tdiv_datapath(st, p.delta, c.mult, c.shift, c.mult_width)
        delta = st.delay(p.delta, levels, name="delta")
        pass_through = st.delay((p.s >= 0) & (p.s < ACT_MAX), levels, name="pass")
        slope = st.delay((p.s >= -ACT_MAX) & (p.s < 0), levels, name="slope")
        # tdiv(delta, 2^31-1) for |delta| < 2^32: +1 at 2^31-1, -1 at -(2^31-1) and -2^31, else 0.
        # Only reachable with 32-bit deltas; a comparison instead of a 32-bit divider, made at the
        # input so that the last level is a plain 3:1 select. The two 32-bit equalities (-(2^31-1)
        # and -2^31 differ only in bit 0) are split into 16-bit halves, registered, then combined,
        # so that no compare is more than a few LUT levels deep.
        if w == 32:
            d = p.delta
            halves = st.reg(Cat(d[16:] == INT32_MAX >> 16, d[:16] == 0xFFFF,
                                d[16:] == 0x8000, ~d[1:16].any()), name="blocked_halves")
            pos_max, neg_max = halves[0] & halves[1], halves[2] & halves[3]
            blocked = st.delay(Mux(pos_max, 1, Mux(neg_max, -1, 0)), levels - 1, name="blocked")
        else:
            blocked = 0
        return st.reg(Mux(pass_through, delta, Mux(slope, q, blocked)), signed(w))
