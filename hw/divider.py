"""Truncating dividers: by a generation-time constant, and runtime-programmable (IntegerSGD's lr_inv*amp).

Algorithm (constants from `model.divider`, which also states the exactness condition):
    q = sign(n) * ((|n| * mult) >> shift)          truncation toward zero for every signed input
Pipeline levels (each a register):
    1  sign and magnitude |n| (unsigned in_width bits: |most negative| fits)
    2  partial products |n|_i * mult_j of 17-bit limbs (one ECP5 MULT18X18D each)
    3  sum of the partial products        (skipped when there is a single partial product)
    4  coarse part of a runtime shift     (programmable divider only: a barrel shifter in two halves)
    5  >> shift and conditional negation
"""
from __future__ import annotations

from amaranth import Const, Module, Mux, Value, signed, unsigned
from amaranth.lib import data

from model.divider import DividerConstants, divider_constants
from model.numerics import NitroError

from .stream_unit import PipelinedUnit, Stages, check_int

LIMB = 17  # unsigned operand bits of one MULT18X18D (18-bit signed ports)
FINE_SHIFT_BITS = 3  # the runtime shift is split into a coarse (multiples of 8) and a fine stage


def _limbs(width: int) -> list[tuple[int, int]]:
    """(offset, width) of the LIMB-bit pieces of an unsigned `width`-bit operand."""
    return [(o, min(LIMB, width - o)) for o in range(0, width, LIMB)]


def _partial_products(w: int, mult: int | None, mult_width: int) -> list[tuple[int, int, int, int]]:
    """(operand offset, width, mult offset, width) of the limb products; mult None = runtime."""
    return [
        (mo, mw, co, cw) for mo, mw in _limbs(w) for co, cw in _limbs(mult_width)
        if mult is None or (mult >> co) & ((1 << cw) - 1)
    ]


def tdiv_latency(w: int, mult: int | None, mult_width: int) -> int:
    """Register levels of `tdiv_datapath` (mult None: runtime constants)."""
    single = len(_partial_products(w, mult, mult_width)) == 1
    return 3 + (not single) + (mult is None)


def tdiv_datapath(
    st: Stages, n: Value, mult: int | Value, shift: int | Value, mult_width: int
) -> tuple[Value, int]:
    """Build tdiv(n, d) with exact constants (mult, shift); returns (quotient signed(len(n)), levels).

    mult/shift are ints (generation-time divisor: constant limbs, constant slice) or Values
    (runtime divisor: they must be stable with `n`, i.e. travel in the same payload).
    """
    w = len(n)
    variable = isinstance(shift, Value)
    levels = 1
    neg = st.reg(n < 0)
    mag = st.reg(abs(n), unsigned(w))
    if variable:
        mult, shift = st.reg(mult), st.reg(shift)
    # Level 2: limb products, registered right at the DSP output.
    parts = []
    for mo, mw, co, cw in _partial_products(w, None if variable else mult, mult_width):
        if variable:
            factor = mult[co:co + cw]
        else:
            factor = Const((mult >> co) & ((1 << cw) - 1), unsigned(cw))
        parts.append((mo + co, mag[mo:mo + mw] * factor))
    levels += 1
    neg, parts = st.reg(neg), [(o, st.reg(p)) for o, p in parts]
    if variable:
        shift = st.reg(shift)
    if len(parts) == 1:
        prod = parts[0][1] << parts[0][0]
    else:
        levels += 1
        total = sum((p << o for o, p in parts), Const(0, unsigned(1)))
        prod = st.reg(total[:w + mult_width], unsigned(w + mult_width))
        neg = st.reg(neg)
        if variable:
            shift = st.reg(shift)
    if variable:
        levels += 1
        coarse = shift[FINE_SHIFT_BITS:]
        prod = st.reg(prod >> (coarse << FINE_SHIFT_BITS), unsigned(len(prod)))
        neg, shift = st.reg(neg), st.reg(shift[:FINE_SHIFT_BITS])
        qmag = (prod >> shift)[:w]
    else:
        qmag = (prod >> shift)[:w]
    levels += 1
    q = st.reg(Mux(neg, -qmag, qmag), signed(w))
    return q, levels


class ConstDivider(PipelinedUnit):
    """tdiv(n, divisor) for every signed `in_width`-bit n; divisor fixed at generation. Latency 3-4.

    Ports: i.payload signed(in_width); o.payload signed(in_width).
    """

    def __init__(self, divisor: int, in_width: int = 32) -> None:
        self.divisor = check_int("divisor", divisor, 1)
        self.in_width = check_int("in_width", in_width, 2, 64)
        self.consts: DividerConstants = divider_constants(divisor, in_width)
        self.latency = tdiv_latency(in_width, self.consts.mult, self.consts.mult_width)
        super().__init__(signed(in_width), signed(in_width))

    def datapath(self, m: Module, st: Stages, payload):
        q, levels = tdiv_datapath(
            st, payload, self.consts.mult, self.consts.shift, self.consts.mult_width
        )
        assert levels == self.latency
        return q


def prog_divider_widths(in_width: int, max_divisor: int) -> tuple[int, int]:
    """(mult_width, shift_width) that hold exact constants of every divisor in 1..max_divisor."""
    # Granlund-Montgomery: mult < 2^(in_width+1) and shift <= in_width + ceil(log2 d) always suffice.
    return in_width + 1, (in_width + (max_divisor - 1).bit_length()).bit_length()


class ProgDivider(PipelinedUnit):
    """tdiv(n, d) with d chosen at run time through (mult, shift) carried in each payload. Latency 4-5.

    Ports: i.payload {n: signed(in_width), mult: unsigned(mult_width), shift: unsigned(shift_width)};
    o.payload signed(in_width). `constants(d)` gives the host-side values (model.divider).
    """

    def __init__(self, in_width: int = 32, max_divisor: int = (1 << 32) - 1) -> None:
        self.in_width = check_int("in_width", in_width, 2, 64)
        self.max_divisor = check_int("max_divisor", max_divisor, 1)
        self.mult_width, self.shift_width = prog_divider_widths(in_width, max_divisor)
        self.latency = tdiv_latency(in_width, None, self.mult_width)
        super().__init__(self.in_layout(in_width, self.mult_width, self.shift_width), signed(in_width))

    @staticmethod
    def in_layout(in_width: int, mult_width: int, shift_width: int) -> data.StructLayout:
        return data.StructLayout({
            "n": signed(in_width), "mult": unsigned(mult_width), "shift": unsigned(shift_width),
        })

    def constants(self, divisor: int) -> DividerConstants:
        """Exact constants for `divisor`, checked against this instance's widths (NitroError if none)."""
        if isinstance(divisor, int) and divisor > self.max_divisor:
            raise NitroError(f"divisor {divisor} exceeds the declared max_divisor {self.max_divisor}")
        return divider_constants(divisor, self.in_width, self.mult_width, self.shift_width)

    def datapath(self, m: Module, st: Stages, payload):
        q, levels = tdiv_datapath(st, payload.n, payload.mult, payload.shift, self.mult_width)
        assert levels == self.latency
        return q
