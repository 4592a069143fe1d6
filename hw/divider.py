"""Truncating dividers: by a generation-time constant, and runtime-programmable (IntegerSGD's lr_inv*amp).

Algorithm (constants from `model.divider`, which also states the exactness condition):
    q = sign(n) * ((|n| * mult) >> shift)          truncation toward zero for every signed input
Pipeline levels (each a register; every level is at most one ~36-bit carry chain or three LUT
levels, for 200 MHz on an ECP5-85 speed 6):
    1      sign and one's complement m = n ^ sign (in_width-1 bits); |n| = m + sign, so
           |n|*mult = m*mult + sign*mult: the +1 of the negation becomes one more addend
    2, 3   limb products m_i * mult_j of 17-bit limbs in MULT18X18Ds with input and output
           registers (hw.dsp), or, for a constant mult with few set bits, shifted copies of m
           (no levels)
    +1     carry-save (3:2) reduction of the addends to two rows   (when there are more than two)
    +k     the final add in k pieces of <= CPA_CHUNK bits, the carry registered between pieces
    +2     runtime shift: coarse (multiples of 8), then fine      (programmable divider only)
    +1     conditional negation
"""
from __future__ import annotations

from math import ceil

from amaranth import Cat, Const, Module, Mux, Value, signed, unsigned
from amaranth.lib import data

from model.divider import DividerConstants, divider_constants
from model.numerics import NitroError

from .dsp import registered_mul
from .stream_unit import PipelinedUnit, Stages, check_int

LIMB = 17  # unsigned operand bits of one MULT18X18D (18-bit signed ports)
FINE_SHIFT_BITS = 3  # the runtime shift is split into a coarse (multiples of 8) and a fine stage
CPA_CHUNK = 36  # widest carry chain in one pipeline level
CSA_ROUNDS_PER_LEVEL = 3  # 3:2 compressor rounds (one LUT level each) per pipeline level
SHIFT_ADD_MAX_BITS = 4  # a constant mult with at most this many set bits is built from shifts


def _limbs(width: int) -> list[tuple[int, int]]:
    """(offset, width) of the LIMB-bit pieces of an unsigned `width`-bit operand."""
    return [(o, min(LIMB, width - o)) for o in range(0, width, LIMB)]


def _plan(w: int, mult: int | None, mult_width: int) -> dict:
    """How tdiv_datapath builds the product for these parameters (mult None = runtime)."""
    mw = max(w - 1, 1)  # bits of the one's complement magnitude
    if mult is not None and bin(mult).count("1") <= SHIFT_ADD_MAX_BITS:
        kind, n_terms = "shift", bin(mult).count("1") + 1
    else:
        parts = [(mo, mwid, co, cw) for mo, mwid in _limbs(mw) for co, cw in _limbs(mult_width)
                 if mult is None or (mult >> co) & ((1 << cw) - 1)]
        kind, n_terms = "dsp", len(parts) + 1
    rounds, n = 0, n_terms
    while n > 2:
        n -= n // 3
        rounds += 1
    width = mw + mult_width
    chunks = ceil(width / CPA_CHUNK) if n_terms > 1 else 0
    levels = (1 + (3 if kind == "dsp" else 0) + ceil(rounds / CSA_ROUNDS_PER_LEVEL) + chunks
              + (2 if mult is None else 0) + 1)
    return {"kind": kind, "mag_width": mw, "width": width, "rounds": rounds, "chunks": chunks,
            "levels": levels}


def tdiv_latency(w: int, mult: int | None, mult_width: int) -> int:
    """Register levels of `tdiv_datapath` (mult None: runtime constants)."""
    return _plan(w, mult, mult_width)["levels"]


def _csa(rows: list[Value], width: int) -> list[Value]:
    """One round of 3:2 compressors over `rows` (width-bit, wrapping): fewer rows, same sum."""
    out = []
    for k in range(0, len(rows) - 2, 3):
        a, b, c = rows[k:k + 3]
        out.append((a ^ b ^ c)[:width])
        out.append((((a & b) | (a & c) | (b & c)) << 1)[:width])
    out += rows[len(rows) - len(rows) % 3:] if len(rows) % 3 else []
    return out


def pipelined_sum(st: Stages, terms: list[tuple[Value, int]], width: int) -> tuple[Value, int]:
    """sum(value << offset) mod 2^width, unsigned; returns (sum, register levels used)."""
    rows = [(Value.cast(v).as_unsigned() << o)[:width] for v, o in terms]
    levels = 0
    if len(rows) == 1:
        return rows[0], 0
    rounds = 0
    while len(rows) > 2:
        rows = _csa(rows, width)
        rounds += 1
        if rounds % CSA_ROUNDS_PER_LEVEL == 0 or len(rows) <= 2:
            rows = [st.reg(r, unsigned(width)) for r in rows]
            levels += 1
    x, y = rows
    nch = ceil(width / CPA_CHUNK)
    bounds = [(k * width // nch, (k + 1) * width // nch) for k in range(nch)]
    done: list[Value] = []
    carry, base = Const(0, 1), 0
    for lo, hi in bounds:
        s = st.reg(x[lo - base:hi - base] + y[lo - base:hi - base] + carry, unsigned(hi - lo + 1))
        done = [st.reg(d) for d in done] + [s[:hi - lo]]
        carry = s[hi - lo]
        if hi < width:  # the rest of both rows waits one level for the carry
            x, y, base = st.reg(x[hi - base:]), st.reg(y[hi - base:]), hi
        levels += 1
    return Cat(*done), levels


def tdiv_datapath(
    st: Stages, n: Value, mult: int | Value, shift: int | Value, mult_width: int
) -> tuple[Value, int]:
    """Build tdiv(n, d) with exact constants (mult, shift); returns (quotient signed(len(n)), levels).

    mult/shift are ints (generation-time divisor: constant limbs, constant slice) or Values
    (runtime divisor: they must be stable with `n`, i.e. travel in the same payload).
    """
    w = len(n)
    variable = isinstance(shift, Value)
    plan = _plan(w, None if variable else mult, mult_width)
    mw, width = plan["mag_width"], plan["width"]
    levels = 1
    n = n.as_signed()
    neg = st.reg(n < 0)
    mag = st.reg((n ^ Mux(n < 0, -1, 0))[:mw], unsigned(mw))  # one's complement: |n| - neg
    if variable:
        mult, shift = st.reg(mult), st.reg(shift)
    if plan["kind"] == "dsp":
        terms = []
        for mo, mwid, co, cw in [(mo, mwid, co, cw) for mo, mwid in _limbs(mw)
                                 for co, cw in _limbs(mult_width)]:
            if variable:
                factor = mult[co:co + cw]
            else:
                factor = (mult >> co) & ((1 << cw) - 1)
                if not factor:
                    continue
            # each product gets a fabric register: the route out of the DSP column is a stage
            # of its own
            pp = registered_mul(st.m, st.platform, mag[mo:mo + mwid], factor,
                                name=st.unique(f"pp{mo}_{co}"))
            terms.append((st.reg(pp, name=st.unique(f"pp{mo}_{co}_f")), mo + co))
        terms.append((st.delay(Mux(neg, mult, 0), 3, name="corr"), 0))  # sign * mult
        neg = st.delay(neg, 3, name="neg")
        if variable:
            shift = st.delay(shift, 3, name="shift")
        levels += 3
    else:
        terms = [(mag, k) for k in range(mult.bit_length()) if (mult >> k) & 1]
        terms.append((Mux(neg, mult, 0), 0))
    total, sl = pipelined_sum(st, terms, width)
    levels += sl
    neg = st.delay(neg, sl, name="neg_s")
    if variable:
        shift = st.delay(shift, sl, name="shift_s")
        levels += 2
        coarse = shift[FINE_SHIFT_BITS:]
        total = st.reg(total >> (coarse << FINE_SHIFT_BITS), unsigned(width))
        neg, shift = st.reg(neg), st.reg(shift[:FINE_SHIFT_BITS])
        total = st.reg((total >> shift)[:w], unsigned(w))
        neg = st.reg(neg)
        qmag = total
    else:
        qmag = total[shift:shift + w]
    levels += 1
    q = st.reg(Mux(neg, -qmag, qmag), signed(w))
    assert levels == plan["levels"], (levels, plan)
    return q, levels


class ConstDivider(PipelinedUnit):
    """tdiv(n, divisor) for every signed `in_width`-bit n; divisor fixed at generation.

    Ports: i.payload signed(in_width); o.payload signed(in_width). Latency `tdiv_latency` (8 for
    32-bit inputs and a DSP-built multiplier, 3-4 for a power-of-two divisor).
    """

    def __init__(self, divisor: int, in_width: int = 32, *, always_ready: bool = False) -> None:
        self.divisor = check_int("divisor", divisor, 1)
        self.in_width = check_int("in_width", in_width, 2, 64)
        self.consts: DividerConstants = divider_constants(divisor, in_width)
        self.latency = tdiv_latency(in_width, self.consts.mult, self.consts.mult_width)
        super().__init__(signed(in_width), signed(in_width), always_ready=always_ready)

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
    """tdiv(n, d) with d chosen at run time through (mult, shift) carried in each payload.

    Ports: i.payload {n: signed(in_width), mult: unsigned(mult_width), shift: unsigned(shift_width)};
    o.payload signed(in_width). `constants(d)` gives the host-side values (model.divider).
    Latency `tdiv_latency(in_width, None, mult_width)` (10 at 32 bits).
    """

    def __init__(self, in_width: int = 32, max_divisor: int = (1 << 32) - 1, *,
                 always_ready: bool = False) -> None:
        self.in_width = check_int("in_width", in_width, 2, 64)
        self.max_divisor = check_int("max_divisor", max_divisor, 1)
        self.mult_width, self.shift_width = prog_divider_widths(in_width, max_divisor)
        self.latency = self.latency_for(in_width, max_divisor)
        super().__init__(self.in_layout(in_width, self.mult_width, self.shift_width), signed(in_width),
                         always_ready=always_ready)

    @staticmethod
    def latency_for(in_width: int, max_divisor: int) -> int:
        """The latency of such a divider, without building one."""
        return tdiv_latency(in_width, None, prog_divider_widths(in_width, max_divisor)[0])

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
