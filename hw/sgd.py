"""IntegerSGD update unit (spec 4.1): W_new = W - (tdiv(G, lr_inv*amp) + tdiv(W, decay_inv))."""
from __future__ import annotations

from amaranth import Module, signed
from amaranth.lib import data

from model.divider import DividerConstants, divider_constants
from model.numerics import NitroError

from .divider import prog_divider_widths, tdiv_datapath, tdiv_latency
from .stream_unit import PipelinedUnit, Stages, check_int


class IntegerSGDUpdate(PipelinedUnit):
    """One weight per transfer. D = lr_inv*amp changes with the schedule, so its divider is runtime
    programmable: the host puts `constants(D)` (mult, shift) into each payload. The decay inverse
    eta is fixed per layer (0 = no decay) and built as a constant divider.

    i.payload {w: signed(weight_width), g: signed(grad_width), mult, shift};
    o.payload signed(weight_width) = wrap(W - U) (the reference holds W in int32).
    Latency: the runtime divider's levels + 2 (sum of the two quotients, then the subtraction).
    """

    def __init__(self, weight_width: int = 32, grad_width: int = 32, decay_inv: int = 0,
                 max_divisor: int = (1 << 32) - 1, *, always_ready: bool = False) -> None:
        self.weight_width = check_int("weight_width", weight_width, 2, 64)
        self.grad_width = check_int("grad_width", grad_width, 2, 64)
        self.decay_inv = check_int("decay_inv", decay_inv, 0)
        self.max_divisor = check_int("max_divisor", max_divisor, 1)
        self.mult_width, self.shift_width = prog_divider_widths(grad_width, max_divisor)
        self.decay = divider_constants(decay_inv, weight_width) if decay_inv else None
        self._grad_levels = tdiv_latency(grad_width, None, self.mult_width)
        if self.decay:
            decay_levels = tdiv_latency(weight_width, self.decay.mult, self.decay.mult_width)
            if decay_levels > self._grad_levels:
                raise ValueError("decay divider deeper than the gradient divider")  # cannot happen
        self.latency = self._grad_levels + 2
        super().__init__(
            data.StructLayout({
                "w": signed(weight_width), "g": signed(grad_width),
                "mult": self.mult_width, "shift": self.shift_width,
            }),
            signed(weight_width),
            always_ready=always_ready,
        )

    def constants(self, divisor: int) -> DividerConstants:
        """Host side: exact (mult, shift) of D for this unit's gradient width (NitroError if none)."""
        if isinstance(divisor, int) and divisor > self.max_divisor:
            raise NitroError(f"IntegerSGD divisor {divisor} exceeds max_divisor {self.max_divisor}")
        return divider_constants(divisor, self.grad_width, self.mult_width, self.shift_width)

    def datapath(self, m: Module, st: Stages, p):
        ww = self.weight_width
        q_grad, levels = tdiv_datapath(st, p.g, p.mult, p.shift, self.mult_width)
        w = st.delay(p.w, levels, name="w")
        if self.decay:
            c = self.decay
            q_decay, dl = tdiv_datapath(st, p.w, c.mult, c.shift, c.mult_width)
            q_decay = st.delay(q_decay, levels - dl, name="q_decay")
            u = st.reg(q_grad + q_decay)
        else:
            u = st.reg(q_grad)
        w = st.reg(w)
        return st.reg((w - u)[:ww].as_signed(), signed(ww))
