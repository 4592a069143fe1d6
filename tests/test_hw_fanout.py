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
    def __init__(self, width: int) -> None:
        self.w = width
        self.d, self.q = Signal(width), Signal(N * width)

    def elaborate(self, platform):
        m = Module()
        copies = replicated_reg(m, platform, self.d, N, "c")
        m.d.comb += [self.q.word_select(k, self.w).eq(c) for k, c in enumerate(copies)]
        return m


@pytest.mark.parametrize("width", [1, 3])
def test_copies_follow_d_one_cycle_later(width):
    top = _Top(width)
    pattern = [1, 0, 5, 7, 0, 2, 1] if width > 1 else [1, 0, 1, 1, 0, 0, 1]
    seen = clocked(top, [[(top.d, v)] for v in pattern], top.q)
    assert seen == [sum(v << (k * width) for k in range(N)) for v in pattern]


@pytest.mark.parametrize("width", [1, 3])
def test_ecp5_copies_stay_distinct_flip_flops(tmp_path, width):
    top = _Top(width)
    (tmp_path / "top.v").write_text(verilog.convert(top, name="top", ports=[top.d, top.q], platform=ECP5))
    synth_ecp5("read_verilog top.v", "top", tmp_path, json_out="top.json")
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"].values()
    ffs = [c for c in cells if c["type"] == "TRELLIS_FF"]
    assert len(ffs) == N * width  # behavioural copies would be merged into one per bit
    assert len({tuple(c["connections"]["Q"]) for c in ffs}) == N * width
