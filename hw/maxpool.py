"""MaxPool window units (spec 2.5): first-maximum forward, gradient routing backward.

The units work on one window (kh*kw values in row-major order) per transfer; the address generator
that cuts windows out of a feature map (padding with 0, floor on the remainder) is outside the unit.
"""
from __future__ import annotations

from amaranth import Module, Mux, signed, unsigned
from amaranth.lib import data

from .stream_unit import PipelinedUnit, Stages, check_int


def _arg_width(window: int) -> int:
    return max((window - 1).bit_length(), 1)


class MaxPoolForward(PipelinedUnit):
    """i.payload: window values, ArrayLayout(signed(width), window); o.payload {max, arg}.

    arg = row-major index of the FIRST maximum (ties keep the lower index: a right operand wins
    only if strictly greater). A registered comparison tree: latency ceil(log2(window)) (>= 1).
    """

    def __init__(self, window: int = 4, width: int = 8, *, always_ready: bool = False) -> None:
        self.window = check_int("window", window, 1, 256)
        self.width = check_int("width", width, 2, 64)
        self.latency = max((window - 1).bit_length(), 1)
        super().__init__(
            data.ArrayLayout(signed(width), window),
            data.StructLayout({"max": signed(width), "arg": unsigned(_arg_width(window))}),
            always_ready=always_ready,
        )

    def datapath(self, m: Module, st: Stages, p):
        aw = _arg_width(self.window)
        level = [(p[k], k) for k in range(self.window)]
        for _ in range(self.latency):
            nxt = []
            for j in range(0, len(level), 2):
                if j + 1 == len(level):
                    v, a = level[j]
                else:
                    (lv, la), (rv, ra) = level[j], level[j + 1]
                    right = rv > lv  # strict: a tie keeps the earlier (left) element
                    v, a = Mux(right, rv, lv), Mux(right, ra, la)
                nxt.append((st.reg(v, signed(self.width)), st.reg(a, unsigned(aw))))
            level = nxt
        (v, a), = level
        return {"max": v, "arg": a}


class MaxPoolBackward(PipelinedUnit):
    """i.payload {delta: signed(delta_width), arg}; o.payload: window values with delta at `arg` and
    0 elsewhere (ArrayLayout(signed(delta_width), window)). Latency 1."""

    latency = 1

    def __init__(self, window: int = 4, delta_width: int = 32, *, always_ready: bool = False) -> None:
        self.window = check_int("window", window, 1, 256)
        self.delta_width = check_int("delta_width", delta_width, 2, 64)
        super().__init__(
            data.StructLayout({"delta": signed(delta_width), "arg": unsigned(_arg_width(window))}),
            data.ArrayLayout(signed(delta_width), window),
            always_ready=always_ready,
        )

    def datapath(self, m: Module, st: Stages, p):
        # `~(arg ^ k).any()` rather than `arg == k`: Amaranth emits `!arg` for k = 0, which
        # Verilator's lint flags (WIDTHTRUNC); the reduction is the same logic.
        out = [st.reg(Mux(~(p.arg ^ k).any(), p.delta, 0), signed(self.delta_width))
               for k in range(self.window)]
        return out
