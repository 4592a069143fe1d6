# amaranth: UnusedElaboratable=no
"""NITRO-ReLU units on Verilator, bit-exact against model.layers (cocotb: sim/tb/tb_relu_*.py)."""
import pytest

from hw.relu import NitroReluBackward, NitroReluForward
from model.numerics import NitroError
from sim.testing import run_unit


def test_relu_forward_all_slopes(request):
    counts = run_unit("relu_fwd", request)
    assert sum(counts.values()) >= 1_000_000


def test_relu_backward_all_slopes(request):
    counts = run_unit("relu_bwd", request)
    assert sum(counts.values()) >= 1_000_000


@pytest.mark.parametrize("alpha", [0, 1, 2, 6, 32, -4])
def test_unsupported_slope_rejected(alpha):
    with pytest.raises(NitroError, match="slope inverse"):
        NitroReluForward(alpha)
    with pytest.raises(NitroError, match="slope inverse"):
        NitroReluBackward(alpha)


@pytest.mark.parametrize("width", [1, 33, 64])
def test_backward_delta_width_rejected(width):
    with pytest.raises(ValueError, match="delta_width"):
        NitroReluBackward(4, width)
