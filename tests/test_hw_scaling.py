# amaranth: UnusedElaboratable=no
"""NITRO Scaling unit on Verilator, bit-exact against model.layers.nitro_scaling."""
import numpy as np
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


def _held_run(blocks, gap):
    """ScaleClip(held_sf=True), always ready: each (sf, z values) block streamed one element a
    cycle, then `gap` idle cycles with sf still held; the outputs in order."""
    from amaranth import Cat

    from sim.testing import clocked

    dut = ScaleClip(32, (1 << 31) - 1, always_ready=True, held_sf=True)
    cycles = []
    for sf, zs in blocks:
        cycles += [[(dut.i.valid, 1), (dut.i.payload.z, int(z)), (dut.i.payload.sf, sf)] for z in zs]
        cycles += [[(dut.i.valid, 0)]] * gap
    cycles += [[(dut.i.valid, 0)]] * (dut.latency + 1)
    seen = clocked(dut, cycles, Cat(dut.o.payload, dut.o.valid))
    return [((v & 0xFF) ^ 0x80) - 0x80 for v in seen if v >> 8]


def test_scale_clip_held_sf_matches_the_golden_model():
    """The engine's lanes (sf held while elements are in flight) against model.layers.nitro_scaling:
    each SF's clip points and random values; SF changing with elements in flight (no gap) gives
    other values, so the held register is what every step reads."""
    from model.layers import nitro_scaling

    rng = np.random.default_rng(5)
    blocks = []
    for sf in (1, 3, 255, 200704, 2359296, (1 << 31) - 1, *rng.integers(1, 1 << 24, 4)):
        k = np.array([-129, -128, -127, -2, -1, 0, 1, 2, 127, 128, 129])
        near = np.clip(k[:, None] * int(sf) + np.arange(-2, 3), -(1 << 31), (1 << 31) - 1).ravel()
        blocks.append((int(sf), np.concatenate([near, rng.integers(-(1 << 31), 1 << 31, 40)])))
    want = np.concatenate([nitro_scaling(zs.astype(np.int64), sf) for sf, zs in blocks])
    latency = ScaleClip.latency_for()
    got = _held_run(blocks, latency)
    assert len(got) == len(want) == 950 and np.array_equal(got, want)
    assert not np.array_equal(_held_run(blocks, 0), want)
