# amaranth: UnusedElaboratable=no
"""hw.stream_unit.PipelinedUnit with always_ready=True: the bare pipe the training engine uses.

It must be cycle-for-cycle the unit with a consumer that is always ready (same valid sequence,
same outputs, same latency), bit-exact against the golden model, and carry no skid FIFO. The
back-pressured variant is covered by the cocotb benches (tests/test_hw_*.py).
"""
import numpy as np
import pytest
from amaranth import Cat, Fragment, Value

from hw.relu import NitroReluForward
from hw.scaling import NitroScaling
from model.layers import nitro_relu_forward, nitro_scaling
from sim.testing import clocked

rng = np.random.default_rng(5)
CORNERS_32 = [-(1 << 31), -(1 << 31) + 1, -1, 0, 1, (1 << 31) - 1, 127 * 784 * 256, -127 * 784 * 256 - 1]
CASES = {
    "relu_fwd": (lambda **kw: NitroReluForward(4, **kw), np.arange(-128, 128),
                 lambda x: nitro_relu_forward(x, 4)),
    "scaling": (lambda **kw: NitroScaling(784 * 256, **kw),
                np.concatenate([CORNERS_32, rng.integers(-(1 << 31), 1 << 31, 200)]),
                lambda x: nitro_scaling(x, 784 * 256)),
}


def _run(unit, xs: np.ndarray, valid: np.ndarray) -> list[int]:
    """Cat(o.valid, o.payload) after every clock edge; input k is presented while valid[k]."""
    it = iter(xs.tolist())
    cycles = []
    for v in valid:
        ins = [(unit.i.valid, int(v))] + ([(unit.i.payload, next(it))] if v else [])
        if not unit.o.signature.always_ready:
            ins.append((unit.o.ready, 1))
        cycles.append(ins)
    cycles += [[(unit.i.valid, 0)]] * (unit.latency + 2)
    return clocked(unit, cycles, Cat(unit.o.valid, unit.o.payload))


@pytest.mark.parametrize("name", CASES)
def test_always_ready_is_the_unit_with_a_ready_consumer(name):
    make, xs, golden = CASES[name]
    valid = np.ones(len(xs) + 40, dtype=bool)
    valid[rng.choice(len(valid), 40, replace=False)] = False  # bubbles
    bare, full = make(always_ready=True), make()
    assert bare.i.signature.always_ready and bare.o.signature.always_ready
    seen = _run(bare, xs, valid)
    assert seen == _run(full, xs, valid)
    width = len(Value.cast(bare.o.payload))
    out_v = [s & 1 for s in seen]
    got = [s >> 1 for s in seen if s & 1]
    got = [g - (1 << width) if g >> (width - 1) else g for g in got]
    assert got == golden(xs).tolist()
    # the first output leaves `latency` edges after the first transfer
    assert out_v.index(1) == int(np.argmax(valid)) + bare.latency - 1


def _submodules(unit) -> list[str]:
    return [name for _, name, _ in Fragment.get(unit, None).subfragments]


def test_always_ready_has_no_skid_fifo():
    assert "skid" in _submodules(NitroReluForward(4))
    assert "skid" not in _submodules(NitroReluForward(4, always_ready=True))


def test_always_ready_must_be_a_bool():
    with pytest.raises(TypeError, match="always_ready"):
        NitroReluForward(4, always_ready=1)
