"""IntegerSGD update unit (spec 4.1): W_new = W - (tdiv(G, lr_inv*amp) + tdiv(W, decay_inv)).

One datapath for the unit library and the training engine. D = lr_inv*amp changes with the
schedule, so its divider is always runtime-programmable: the host puts `d_constants(D)` into each
payload. The decay inverse eta is either fixed per layer (`decay_inv` an int; 0 = no decay: a
constant divider) or, for an engine that serves every layer with one pipeline, programmable like D
(`decay_inv=None`: `e_constants(eta)` travel in the payload, mult 0 encoding no decay).
"""
from __future__ import annotations

from amaranth import Module, signed, unsigned
from amaranth.lib import data

from model.divider import DividerConstants, divider_constants
from model.numerics import NitroError

from .divider import prog_divider_widths, tdiv_datapath, tdiv_latency
from .stream_unit import PipelinedUnit, Stages, check_int


class IntegerSGDUpdate(PipelinedUnit):
    """One weight per transfer.

    i.payload {w: signed(weight_width), g: signed(grad_width), d_mult, d_shift[, e_mult, e_shift]};
    o.payload signed(weight_width) = wrap(W - U) (the reference holds W in int32).
    Latency: the gradient divider's levels + 2 (sum of the two quotients, then the subtraction).
    """

    def __init__(self, weight_width: int = 32, grad_width: int = 32, decay_inv: int | None = 0,
                 max_divisor: int = (1 << 32) - 1, max_eta: int = (1 << 16) - 1, *,
                 always_ready: bool = False) -> None:
        self.weight_width = check_int("weight_width", weight_width, 2, 64)
        self.grad_width = check_int("grad_width", grad_width, 2, 64)
        self.decay_inv = None if decay_inv is None else check_int("decay_inv", decay_inv, 0)
        self.max_divisor = check_int("max_divisor", max_divisor, 1)
        self.max_eta = check_int("max_eta", max_eta, 1)
        self.d_widths = prog_divider_widths(grad_width, max_divisor)
        self.e_widths = prog_divider_widths(weight_width, max_eta) if decay_inv is None else None
        self.decay = divider_constants(decay_inv, weight_width) if decay_inv else None
        self._g_levels = self.latency_for(grad_width, max_divisor) - 2
        if self.e_widths:
            e_levels = tdiv_latency(weight_width, None, self.e_widths[0])
        else:
            e_levels = tdiv_latency(weight_width, self.decay.mult, self.decay.mult_width) if self.decay else 0
        if e_levels > self._g_levels:
            raise ValueError("decay divider deeper than the gradient divider")  # cannot happen
        self.latency = self._g_levels + 2
        fields = {"w": signed(weight_width), "g": signed(grad_width),
                  "d_mult": unsigned(self.d_widths[0]), "d_shift": unsigned(self.d_widths[1])}
        if self.e_widths:
            fields |= {"e_mult": unsigned(self.e_widths[0]), "e_shift": unsigned(self.e_widths[1])}
        super().__init__(data.StructLayout(fields), signed(weight_width), always_ready=always_ready)

    @staticmethod
    def latency_for(grad_width: int, max_divisor: int) -> int:
        """The latency of such a unit, without building one: the gradient divider's levels + 2."""
        return tdiv_latency(grad_width, None, prog_divider_widths(grad_width, max_divisor)[0]) + 2

    def d_constants(self, divisor: int) -> DividerConstants:
        """Host side: exact (mult, shift) of D for this unit's gradient width (NitroError if none)."""
        if isinstance(divisor, int) and divisor > self.max_divisor:
            raise NitroError(f"IntegerSGD divisor {divisor} exceeds the max {self.max_divisor}")
        return divider_constants(divisor, self.grad_width, *self.d_widths)

    def e_constants(self, eta: int) -> tuple[int, int]:
        """Host side, runtime eta: (mult, shift) of the decay divider; (0, 0) for eta = 0."""
        if self.e_widths is None:
            raise NitroError("this IntegerSGD unit's decay inverse is fixed at generation")
        if eta == 0:
            return 0, 0
        if eta > self.max_eta:
            raise NitroError(f"weight-decay inverse {eta} exceeds the max {self.max_eta}")
        c = divider_constants(eta, self.weight_width, *self.e_widths)
        return c.mult, c.shift

    def datapath(self, m: Module, st: Stages, p):
        ww = self.weight_width
        q_g, lg = tdiv_datapath(st, p.g, p.d_mult, p.d_shift, self.d_widths[0])
        if self.e_widths:
            q_e, le = tdiv_datapath(st, p.w, p.e_mult, p.e_shift, self.e_widths[0])
        elif self.decay:
            q_e, le = tdiv_datapath(st, p.w, self.decay.mult, self.decay.shift, self.decay.mult_width)
        else:
            q_e, le = None, lg
        if q_e is not None:
            q_e = st.delay(q_e, lg - le, name="q_decay")
        w = st.delay(p.w, lg, name="w")
        u = st.reg(q_g if q_e is None else q_g + q_e)
        w = st.reg(w)
        return st.reg((w - u)[:ww].as_signed(), signed(ww))
