# amaranth: UnusedElaboratable=no
"""MAC and MAC arrays on Verilator, bit-exact against model.gemm.matmul wrapped to 32 bits."""
import re

import pytest

from hw.mac import Mac, MacArray
from sim.testing import run_unit


@pytest.mark.parametrize("name", ["mac", "mac4x4_w32", "mac8x8"])
def test_mac_array(name, request):
    counts = run_unit(name, request)
    assert sum(v for k, v in counts.items() if "multiply" in k) >= 1_000_000


def test_mac_array_on_the_ecp5_multipliers(request):
    """The netlist synthesis gets: every product on a MULT18X18D instance (two per PE, the delta
    operand cut into limbs), on the primitive's simulation model."""
    from sim.runner import build_plan

    v = build_plan("mac8x8_ecp5")[1]
    assert len(re.findall(r"^\s+MULT18X18D #\(", v, re.M)) == 2 * 64
    assert re.search(r"^\s+TRELLIS_FF #\(", v, re.M)  # hw.fanout's replicated registers
    assert sum(run_unit("mac8x8_ecp5", request).values()) >= 250_000


@pytest.mark.parametrize("name", ["mac6x6", "mac4x4", "mac8x8_b16"])
def test_mac_array_shapes(name, request):
    """6x6 (rows not a power of two) and rtl's exported 4x4 and 8x8 (int8 x int16)."""
    assert sum(run_unit(name, request).values()) >= 200_000


@pytest.mark.parametrize("kw, msg", [
    ({"rows": 0}, "rows"), ({"cols": 65}, "cols"), ({"a_width": 1}, "a_width"),
    ({"acc_width": 16}, "narrower than one"),
])
def test_mac_array_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        MacArray(**kw)
    if "rows" not in kw and "cols" not in kw:
        with pytest.raises(ValueError, match=msg):
            Mac(**kw)
