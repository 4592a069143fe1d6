"""IntegerSGD update with both divisors programmable at run time (spec 4.1).

The unit library's `IntegerSGDUpdate` fixes the decay inverse eta at generation; the engine serves
every layer (eta_fwd and eta_sub) with one update pipeline, so eta travels in the payload like
D = lr_inv * amp. Both quotients use the library's truncating divider datapath
(`hw.divider.tdiv_datapath`) with host-computed constants (`model.divider.divider_constants`);
eta = 0 (no decay) is encoded as mult = 0, which makes its quotient 0.
"""
from __future__ import annotations

from amaranth import Module, signed, unsigned
from amaranth.lib import data

from hw.divider import prog_divider_widths, tdiv_datapath, tdiv_latency
from hw.stream_unit import PipelinedUnit, Stages, check_int
from model.divider import DividerConstants, divider_constants
from model.numerics import NitroError


class ProgSGDUpdate(PipelinedUnit):
    """i.payload {w, g, d_mult, d_shift, e_mult, e_shift}; o.payload wrap(W - tdiv(G,D) - tdiv(W,eta))."""

    def __init__(self, weight_width: int = 16, grad_width: int = 32,
                 max_divisor: int = (1 << 32) - 1, max_eta: int = (1 << 16) - 1, *,
                 always_ready: bool = False) -> None:
        self.weight_width = check_int("weight_width", weight_width, 2, 64)
        self.grad_width = check_int("grad_width", grad_width, 2, 64)
        self.max_divisor = check_int("max_divisor", max_divisor, 1)
        self.max_eta = check_int("max_eta", max_eta, 1)
        self.d_widths = prog_divider_widths(grad_width, max_divisor)
        self.e_widths = prog_divider_widths(weight_width, max_eta)
        self._g_levels = tdiv_latency(grad_width, None, self.d_widths[0])
        self._e_levels = tdiv_latency(weight_width, None, self.e_widths[0])
        if self._e_levels > self._g_levels:
            raise ValueError("decay divider deeper than the gradient divider")
        self.latency = self._g_levels + 2
        super().__init__(self.in_layout(), signed(weight_width), always_ready=always_ready)

    def in_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "w": signed(self.weight_width), "g": signed(self.grad_width),
            "d_mult": unsigned(self.d_widths[0]), "d_shift": unsigned(self.d_widths[1]),
            "e_mult": unsigned(self.e_widths[0]), "e_shift": unsigned(self.e_widths[1]),
        })

    def d_constants(self, divisor: int) -> DividerConstants:
        if divisor > self.max_divisor:
            raise NitroError(f"IntegerSGD divisor {divisor} exceeds the engine's max {self.max_divisor}")
        return divider_constants(divisor, self.grad_width, *self.d_widths)

    def e_constants(self, eta: int) -> tuple[int, int]:
        """(mult, shift) of the decay divider; (0, 0) for eta = 0 (no decay)."""
        if eta == 0:
            return 0, 0
        if eta > self.max_eta:
            raise NitroError(f"weight-decay inverse {eta} exceeds the engine's max {self.max_eta}")
        c = divider_constants(eta, self.weight_width, *self.e_widths)
        return c.mult, c.shift

    def datapath(self, m: Module, st: Stages, p):
        ww = self.weight_width
        q_g, lg = tdiv_datapath(st, p.g, p.d_mult, p.d_shift, self.d_widths[0])
        q_e, le = tdiv_datapath(st, p.w, p.e_mult, p.e_shift, self.e_widths[0])
        q_e = st.delay(q_e, lg - le, name="q_decay")
        w = st.delay(p.w, lg, name="w")
        u = st.reg(q_g + q_e)
        w = st.reg(w)
        return st.reg((w - u)[:ww].as_signed(), signed(ww))
