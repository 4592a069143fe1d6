# amaranth: UnusedElaboratable=no
"""Formal proofs: units equal their specification for every input sequence of their declared
width (bit-level, yosys-smtbmc + yices), and the divider constants are exact at 32 and 64 bits (z3).

32-bit netlists are not bit-blasted (z3 > 12 min measured); they are covered by the z3 algorithm
proof here plus scripts/exhaustive_divider.py (all 2^32 inputs through the generated Verilog).
"""
import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from amaranth import Elaboratable, Module, Mux, Signal, signed

from hw.divider import ConstDivider, ProgDivider, tdiv_latency
from hw.lossgrad import LossGradient
from hw.maxpool import MaxPoolBackward, MaxPoolForward
from hw.relu import NitroReluBackward, NitroReluForward
from hw.scaling import NitroScaling, ScaleClip
from hw.sgd import IntegerSGDUpdate
from model.divider import divider_constants
from model.layers import INT32_MAX, RELU_MEAN_CORRECTION
from model.spec import scaling_factor
from sim.formal import FormalTop, prove, prove_divider_constants, spec_clip, spec_tdiv
from sim.units import SGD_DIVISORS

SLOPES = sorted(RELU_MEAN_CORRECTION)


def relu_fwd_spec(alpha):
    mu = RELU_MEAN_CORRECTION[alpha]

    def spec(s):
        a = (spec_clip(s, 0, 127) + spec_tdiv(spec_clip(s, -127, 0), alpha))[:8].as_signed()
        return (a - mu)[:8].as_signed()
    return spec


def relu_bwd_spec(alpha):
    def spec(p):
        g1 = (p.s >= 0) & (p.s < 127)
        ga = (p.s >= -127) & (p.s < 0)
        return Mux(g1, p.delta, Mux(ga, spec_tdiv(p.delta, alpha), spec_tdiv(p.delta, INT32_MAX)))
    return spec


def scale_clip_spec(p):
    q = abs(p.z) // p.sf
    return spec_clip(Mux(p.z < 0, -q, q), -127, 127)


def maxpool_spec(window):
    def spec(p):
        best = p[0]
        for k in range(1, window):
            best = Mux(p[k] > best, p[k], best)
        arg = window - 1
        for k in reversed(range(window - 1)):  # first index equal to the max
            arg = Mux(p[k] == best, k, arg)
        return best.as_unsigned() | (arg << len(best))
    return spec


def pinned(field, value: int):
    """`field == value` as an assumption that can hold: a constant wider than its port would make
    the assumption false and the proof vacuous."""
    assert 0 <= value < 1 << len(field), f"constant {value} does not fit a {len(field)}-bit port"
    return field == value


def prog_assume(unit, d):
    c = divider_constants(d, unit.in_width, unit.mult_width, unit.shift_width)
    return lambda p: pinned(p.mult, c.mult) & pinned(p.shift, c.shift)


def sgd_spec(d, eta, ww):
    def spec(p):
        u = spec_tdiv(p.g, d) + (spec_tdiv(p.w, eta) if eta else 0)
        return (p.w - u)[:ww].as_signed()
    return spec


def sgd_assume(unit, d):
    c = unit.d_constants(d)
    return lambda p: pinned(p.d_mult, c.mult) & pinned(p.d_shift, c.shift)


def cases():
    yield from ((f"relu_fwd_a{a}", lambda a=a: FormalTop(NitroReluForward(a), relu_fwd_spec(a)))
                for a in SLOPES)
    for a in (3, 4, 7, 20):
        yield (f"relu_bwd_a{a}_d16", lambda a=a: FormalTop(NitroReluBackward(a, 16), relu_bwd_spec(a)))
    yield ("relu_bwd_a4_d32", lambda: FormalTop(NitroReluBackward(4, 32), relu_bwd_spec(4)))
    yield ("lossgrad_wrap", lambda: FormalTop(
        LossGradient(True), lambda p: (p.y_hat - p.y)[:8].as_signed()))
    yield ("lossgrad_exact", lambda: FormalTop(LossGradient(False), lambda p: p.y_hat - p.y))
    for f in (9, 100, 258):
        yield (f"scaling16_sf{f}", lambda f=f: FormalTop(
            NitroScaling(f, 16), lambda z, f=f: spec_clip(spec_tdiv(z, f), -127, 127)))
    for w, top in ((12, 63), (11, 2047)):  # sf at run time, narrower than z or as wide
        yield (f"scale_clip{w}_sf{top}", lambda w=w, top=top: FormalTop(
            ScaleClip(w, top), scale_clip_spec, lambda p: p.sf != 0))
    for d, w in ((3, 16), (7, 16), (641, 16), (12345, 16), (100, 18)):
        yield (f"div{w}_d{d}", lambda d=d, w=w: FormalTop(
            ConstDivider(d, w), lambda n, d=d: spec_tdiv(n, d)))
    for d in (3, 7, 100, 1000):
        yield (f"progdiv12_d{d}", lambda d=d: (lambda u: FormalTop(
            u, lambda p: spec_tdiv(p.n, d), prog_assume(u, d)))(ProgDivider(12, 4095)))
    for d, eta in ((7, 0), (100, 30), (5, 3)):
        yield (f"sgd10_d{d}_eta{eta}", lambda d=d, eta=eta: (lambda u: FormalTop(
            u, sgd_spec(d, eta, 10), sgd_assume(u, d)))(
                IntegerSGDUpdate(10, 10, eta, max_divisor=1023)))
    yield ("maxpool_fwd_4", lambda: FormalTop(MaxPoolForward(4, 8), maxpool_spec(4)))
    yield ("maxpool_fwd_9", lambda: FormalTop(MaxPoolForward(9, 8), maxpool_spec(9)))
    yield ("maxpool_bwd_4", lambda: FormalTop(
        MaxPoolBackward(4, 16),
        lambda p: sum((Mux(p.arg == k, p.delta, 0)[:16].as_unsigned() << (16 * k))
                      for k in range(4))))


CASES = dict(cases())


ASSUMING = [n for n, mk in CASES.items() if mk().assume is not None]  # proofs over a subset of inputs


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("formal")
    runs = [(n, False) for n in CASES] + [(n, True) for n in ASSUMING]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        futs = {(n, c): ex.submit(prove, n, CASES[n](), "yices", root / f"{n}{'_cover' if c else ''}", c)
                for n, c in runs}
        return {k: f.result() for k, f in futs.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_bit_level_proof(name, results):
    r = results[name, False]
    print(f"[formal] {name}: {'PASS' if r.passed else 'FAIL'} in {r.seconds:.1f} s")
    assert r.passed, r.log


@pytest.mark.parametrize("name", ASSUMING)
def test_a_proof_under_assumptions_is_not_vacuous(name, results):
    """Assumptions no input meets would make any assertion pass: some input must reach the
    checked output under them."""
    r = results[name, True]
    assert r.passed and "Reached cover statement" in r.log, r.log


def test_bit_level_proof_finds_a_bug():
    """The harness is not vacuous: a divider built with a rounded-down multiplier fails."""
    u = ConstDivider(7, 12)
    u.consts = type(u.consts)(7, 12, u.consts.mult - 1, u.consts.shift)
    # the datapath's structure (shift-add or DSP) depends on the multiplier's bits
    u.latency = tdiv_latency(12, u.consts.mult, u.consts.mult_width)
    r = prove("div12_bug", FormalTop(u, lambda n: spec_tdiv(n, 7)))
    assert not r.passed and "Assert failed" in r.log, r.log


class SignFromTheInput(Elaboratable):
    """A divider whose output takes the sign of the input in the same cycle, not of the one it
    divided: right whenever the input is held."""

    def __init__(self) -> None:
        self.inner = ConstDivider(7, 12)
        self.i, self.latency = self.inner.i, self.inner.latency
        self.o = SimpleNamespace(valid=Signal(), ready=Signal(), payload=Signal(signed(12)))

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = q = self.inner
        mag = Mux(q.o.payload < 0, -q.o.payload, q.o.payload)
        m.d.comb += [self.o.valid.eq(q.o.valid), q.o.ready.eq(self.o.ready),
                     self.o.payload.eq(Mux(self.i.payload < 0, -mag, mag))]
        return m


def test_bit_level_proof_checks_the_pipeline():
    """The input changes every cycle: a unit that mixes an element with the one beside it in the
    pipe fails (with an input held constant it would pass)."""
    r = prove("div12_sign", FormalTop(SignFromTheInput(), lambda n: spec_tdiv(n, 7)))
    assert not r.passed and "Assert failed" in r.log, r.log


LAYER_SF = [scaling_factor(f) for f in (784, 100, 50, 200, 3000, 3072, 9, 27, 1152, 2304, 4608, 3584, 512,
                               1024, 2048, 4096)]
DECAY = [3000, 8000, 10000, 12000, 25000, 30000]


@pytest.mark.parametrize("width", [32, 64])
def test_z3_divider_constants(width):
    """Every divisor the paper's networks use, plus awkward ones, at 32 and 64 bits."""
    divisors = sorted({*SGD_DIVISORS, *LAYER_SF, *DECAY, 1, 2, 3, 7, 10, 641, 6700417,
                       (1 << 31) - 1, 1 << 31, (1 << 32) - 1, (1 << 32) + 1})
    total = 0.0
    for d in divisors:
        c = divider_constants(d, width)
        ok, sec = prove_divider_constants(d, width, c.mult, c.shift)
        total += sec
        assert ok, f"z3 found a counterexample for d={d}, width={width}: {c}"
    print(f"[formal] z3: {len(divisors)} divisors exact at {width} bits in {total:.2f} s")


def test_z3_rejects_wrong_constants():
    c = divider_constants(7, 32)
    assert not prove_divider_constants(7, 32, c.mult - 1, c.shift)[0]
    assert not prove_divider_constants(7, 32, c.mult, c.shift - 1)[0]


def test_an_assumption_no_input_meets_fails_the_cover(tmp_path):
    """What the cover runs catch: under an assumption nothing meets, the assertion 'passes' and
    the cover is not reached."""
    top = lambda: FormalTop(ScaleClip(12, 63), scale_clip_spec, lambda p: (p.sf == 0) & (p.sf != 0))  # noqa: E731
    assert prove("void", top(), "yices", tmp_path / "assert").passed
    assert not prove("void", top(), "yices", tmp_path / "cover", cover=True).passed
