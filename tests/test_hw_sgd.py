# amaranth: UnusedElaboratable=no
"""IntegerSGD update unit on Verilator, bit-exact against model.optim.integer_sgd_update."""
import pytest

from hw.sgd import IntegerSGDUpdate
from model.numerics import NitroError
from sim.testing import run_unit


def test_sgd_update(request):
    assert sum(run_unit("sgd", request).values()) >= 1_000_000


def test_engine_sgd_update_runtime_eta(request):
    """The engine's pipeline: the same datapath with the decay inverse programmed per weight."""
    assert sum(run_unit("sgd_engine", request).values()) >= 1_000_000


def test_sgd_bad_parameters():
    with pytest.raises(ValueError, match="decay_inv"):
        IntegerSGDUpdate(decay_inv=-1)
    with pytest.raises(ValueError, match="weight_width"):
        IntegerSGDUpdate(weight_width=1)
    with pytest.raises(NitroError, match="positive"):
        IntegerSGDUpdate().d_constants(0)
    with pytest.raises(NitroError, match="exceeds the max"):
        IntegerSGDUpdate(max_divisor=1 << 20).d_constants((1 << 20) + 1)
    with pytest.raises(NitroError, match="fixed at generation"):
        IntegerSGDUpdate(decay_inv=3000).e_constants(3000)
    with pytest.raises(NitroError, match="exceeds the max"):
        IntegerSGDUpdate(16, 32, None, max_eta=1000).e_constants(1001)
    assert IntegerSGDUpdate(16, 32, None).e_constants(0) == (0, 0)
