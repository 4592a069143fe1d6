# amaranth: UnusedElaboratable=no
"""hw.fanout.replicated_reg: cycle-exact copies in simulation, distinct flip-flops after yosys for ECP5."""
import json

import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.back import verilog

from hw.fanout import replicated_reg
from sim.synth import ECP5, synth_ecp5
from sim.testing import clocked

N = 6


class _Top(Elaboratable):
    def __init__(self) -> None:
        self.d, self.q = Signal(), Signal(N)

    def elaborate(self, platform):
        m = Module()
        copies = replicated_reg(m, platform, self.d, N, "c")
        m.d.comb += [self.q[k].eq(c) for k, c in enumerate(copies)]
        return m


def test_copies_follow_d_one_cycle_later():
    top = _Top()
    pattern = [1, 0, 1, 1, 0, 0, 1]
    seen = clocked(top, [[(top.d, bit)] for bit in pattern], top.q)
    assert seen == [(1 << N) - 1 if b else 0 for b in pattern]


def test_ecp5_copies_stay_distinct_flip_flops(tmp_path):
    top = _Top()
    (tmp_path / "top.v").write_text(verilog.convert(top, name="top", ports=[top.d, top.q], platform=ECP5))
    synth_ecp5("read_verilog top.v", "top", tmp_path, json_out="top.json")
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"].values()
    ffs = [c for c in cells if c["type"] == "TRELLIS_FF"]
    assert len(ffs) == N  # behavioural copies would be merged into one
    assert len({tuple(c["connections"]["Q"]) for c in ffs}) == N


def test_only_single_bits():
    m = Module()
    with pytest.raises(ValueError, match="single bits"):
        replicated_reg(m, None, Signal(2), 2, "x")
