# amaranth: UnusedElaboratable=no
"""NITRO Scaling unit on Verilator, bit-exact against model.layers.nitro_scaling."""
import pytest

from hw.scaling import NitroScaling, ScaleClip
from sim.testing import run_unit


def test_scaling_paper_factors(request):
    assert sum(run_unit("scaling", request).values()) >= 1_000_000


def test_scale_clip_runtime_factors(request):
    assert sum(run_unit("scale_clip", request).values()) >= 1_000_000


@pytest.mark.parametrize("args, exc, msg", [
    ((0,), ValueError, "factor"), ((-200704,), ValueError, "factor"), ((1.5,), TypeError, "factor"),
    ((256, 1), ValueError, "in_width"),
])
def test_scaling_bad_parameters(args, exc, msg):
    with pytest.raises(exc, match=msg):
        NitroScaling(*args)


@pytest.mark.parametrize("kwargs, msg", [({"in_width": 8}, "in_width"), ({"max_scale": 0}, "max_scale")])
def test_scale_clip_bad_parameters(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        ScaleClip(**kwargs)
