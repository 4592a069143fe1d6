# amaranth: UnusedElaboratable=no
"""Loss-gradient unit on Verilator, bit-exact against model.layers.loss_gradient."""
import pytest

from hw.lossgrad import LossGradient
from sim.testing import run_unit


def test_loss_gradient(request):
    counts = run_unit("lossgrad", request)
    assert counts["all int8 pairs"] == 1 << 16
    assert sum(counts.values()) >= 1_000_000


def test_loss_gradient_bad_parameter():
    with pytest.raises(TypeError, match="wrap_int8"):
        LossGradient(1)
