"""NITRO Scaling unit (spec 2.3): s = clip(tdiv(z, SF), -127, 127), int8 out."""
from __future__ import annotations

from amaranth import Module, Mux, signed

from model.divider import divider_constants

from .divider import tdiv_datapath, tdiv_latency
from .stream_unit import PipelinedUnit, Stages, check_int

ACT_MAX = 127  # -128 is never produced (spec 2.3)


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
