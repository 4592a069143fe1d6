# amaranth: UnusedElaboratable=no
"""IntegerSGD update unit on Verilator, bit-exact against model.optim.integer_sgd_update."""
import pytest

from hw.sgd import IntegerSGDUpdate
from model.numerics import NitroError
from sim.testing import run_unit


def test_sgd_update(request):
    assert sum(run_unit("sgd", request).values()) >= 1_000_000


def test_sgd_bad_parameters():
    with pytest.raises(ValueError, match="decay_inv"):
        IntegerSGDUpdate(decay_inv=-1)
    with pytest.raises(ValueError, match="weight_width"):
        IntegerSGDUpdate(weight_width=1)
    with pytest.raises(NitroError, match="positive"):
        IntegerSGDUpdate().constants(0)
    with pytest.raises(NitroError, match="max_divisor"):
        IntegerSGDUpdate(max_divisor=1 << 20).constants((1 << 20) + 1)
