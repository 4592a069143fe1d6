# amaranth: UnusedElaboratable=no
"""MaxPool window units on Verilator, bit-exact against model.layers.maxpool_forward/backward."""
import pytest

from hw.maxpool import MaxPoolBackward, MaxPoolForward
from sim.testing import run_unit


def test_maxpool_forward(request):
    assert sum(run_unit("maxpool_fwd", request).values()) >= 1_000_000


def test_maxpool_backward(request):
    assert sum(run_unit("maxpool_bwd", request).values()) >= 1_000_000


@pytest.mark.parametrize("cls, kw, msg", [
    (MaxPoolForward, {"window": 0}, "window"), (MaxPoolForward, {"width": 1}, "width"),
    (MaxPoolBackward, {"window": 0}, "window"), (MaxPoolBackward, {"delta_width": 0}, "delta_width"),
])
def test_maxpool_bad_parameters(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**kw)
