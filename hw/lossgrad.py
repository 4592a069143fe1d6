"""Loss-gradient unit (spec 3.3): e = y_hat - y, int8 with the reference's wrap (or exact)."""
from __future__ import annotations

from amaranth import Module, signed
from amaranth.lib import data

from .stream_unit import PipelinedUnit, Stages


class LossGradient(PipelinedUnit):
    """i.payload {y_hat: signed(8), y: signed(8)} -> wrap8(y_hat - y) (signed 8), or the exact
    difference (signed 9) when wrap_int8 is False. Latency 1."""

    latency = 1

    def __init__(self, wrap_int8: bool = True, *, always_ready: bool = False) -> None:
        if not isinstance(wrap_int8, bool):
            raise TypeError(f"wrap_int8 must be a bool, got {wrap_int8!r}")
        self.wrap_int8 = wrap_int8
        self.out_width = 8 if wrap_int8 else 9
        super().__init__(
            data.StructLayout({"y_hat": signed(8), "y": signed(8)}), signed(self.out_width),
            always_ready=always_ready,
        )

    def datapath(self, m: Module, st: Stages, p):
        diff = (p.y_hat - p.y)[:self.out_width].as_signed()  # 9 bits are exact; 8 bits wrap
        return st.reg(diff, signed(self.out_width))
