# amaranth: UnusedElaboratable=no
"""NITRO Scaling unit on Verilator, bit-exact against model.layers.nitro_scaling."""
import pytest

from hw.scaling import NitroScaling
from sim.testing import run_unit


def test_scaling_paper_factors(request):
    assert sum(run_unit("scaling", request).values()) >= 1_000_000


@pytest.mark.parametrize("args, exc, msg", [
    ((0,), ValueError, "factor"), ((-200704,), ValueError, "factor"), ((1.5,), TypeError, "factor"),
    ((256, 1), ValueError, "in_width"),
])
def test_scaling_bad_parameters(args, exc, msg):
    with pytest.raises(exc, match=msg):
        NitroScaling(*args)
