# amaranth: UnusedElaboratable=no
"""The formal proofs' specifications agree with the golden model.

test_formal_units proves each unit equal to an HDL expression written from the spec text; this
evaluates every such expression in Amaranth's simulator and compares it with the `model/` function
it stands for, on sampled inputs (each field's corners, log-uniform and random values:
`corner_ints`), so that no proof can pass against a specification that has drifted from the model.
"""
import re

import numpy as np
import pytest
from amaranth import Module, Signal, Value
from amaranth.sim import Simulator

from model.layers import loss_gradient, maxpool_backward, maxpool_forward, nitro_relu_backward, \
    nitro_relu_forward, nitro_scaling
from model.numerics import tdiv, wrap
from model.optim import integer_sgd_update
from sim.codec import leaves
from sim.tb.common import corner_ints

from test_formal_units import CASES

SAMPLES = 1500


def samples(layout, rng, nonzero: tuple[str, ...] = ()) -> dict:
    """Per input field (keyed by its name or index, None for a plain shape), SAMPLES corner-heavy
    values (`corner_ints`), shuffled so that one field's corners meet the others' other values."""
    out = {}
    for leaf in leaves(layout):
        k = leaf.path[0] if leaf.path else None
        v = corner_ints(rng, leaf.width, SAMPLES) if leaf.signed else \
            np.abs(corner_ints(rng, leaf.width + 1, SAMPLES)).clip(0, (1 << leaf.width) - 1)
        rng.shuffle(v)
        out[k] = np.where(v == 0, 1, v) if k in nonzero else v
    return out


def spec_outputs(top, x: dict) -> list[int]:
    """The case's specification, evaluated on the sampled inputs."""
    layout = top.unit.i.payload.shape()
    inp = Signal(layout)
    y = Value.cast(top.spec(inp))
    out = Signal(y.shape())
    m = Module()
    m.d.comb += out.eq(y)
    got = []

    async def bench(ctx):
        for n in range(SAMPLES):
            for k, v in x.items():
                ctx.set(inp if k is None else inp[k], int(v[n]))
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


def model_outputs(name: str, x: dict):
    """What `model/` computes for the case `name` on the same inputs."""
    p = [int(v) for v in re.findall(r"\d+", name)]
    if name.startswith("relu_fwd"):
        return nitro_relu_forward(x[None].astype(np.int8), p[0])
    if name.startswith("relu_bwd"):
        return nitro_relu_backward(x["delta"], x["s"], p[0])
    if name.startswith("lossgrad"):
        return loss_gradient(x["y_hat"], x["y"], wrap_int8=name.endswith("wrap"))
    if name.startswith("scaling16"):
        return nitro_scaling(x[None], p[1])
    if name.startswith("scale_clip"):
        return [nitro_scaling(np.array([z]), int(sf))[0] for z, sf in zip(x["z"], x["sf"])]
    if name.startswith(("div", "progdiv")):
        return tdiv(x[None] if None in x else x["n"], p[-1])
    if name.startswith("sgd10"):
        return wrap(integer_sgd_update(x["w"], x["g"], p[1], p[2])[0].astype(np.int64), 10)
    if name.startswith("maxpool_fwd"):
        k = p[0]
        win = np.stack([x[j] for j in range(k)], axis=-1).reshape(SAMPLES, 1, 1, k)
        best, arg = maxpool_forward(win, (1, k), (0, 0))
        return (best.reshape(-1).astype(np.int64) & 0xFF) | (arg.reshape(-1).astype(np.int64) << 8)
    if name.startswith("maxpool_bwd"):
        k = p[0]
        routed = maxpool_backward(x["delta"].reshape(SAMPLES, 1, 1, 1), x["arg"].reshape(SAMPLES, 1, 1, 1),
                                  (SAMPLES, 1, 1, k), (1, k), (0, 0)).reshape(SAMPLES, k).astype(np.int64)
        return [sum((int(r[j]) & 0xFFFF) << (16 * j) for j in range(k)) for r in routed]  # > 64 bits
    raise AssertionError(f"no model function for the formal case {name}")


@pytest.mark.parametrize("name", list(CASES))
def test_specification_is_the_models_function(name):
    top = CASES[name]()
    x = samples(top.unit.i.payload.shape(), np.random.default_rng(len(name)), nonzero=("sf",))
    got, exp = spec_outputs(top, x), [int(v) for v in model_outputs(name, x)]
    bad = [n for n in range(SAMPLES) if got[n] != exp[n]]
    assert len(got) == len(exp) == SAMPLES and not bad, \
        f"{name}: at {({k: int(v[bad[0]]) for k, v in x.items()})} spec {got[bad[0]]}, model {exp[bad[0]]}"


def test_a_drifted_specification_is_caught():
    """Not vacuous: a scaling spec that clips at -126 instead of the model's -127 disagrees."""
    from hw.scaling import NitroScaling
    from sim.formal import FormalTop, spec_clip, spec_tdiv

    top = FormalTop(NitroScaling(9, 16), lambda z: spec_clip(spec_tdiv(z, 9), -126, 127))
    x = samples(top.unit.i.payload.shape(), np.random.default_rng(0))
    assert spec_outputs(top, x) != [int(v) for v in model_outputs("scaling16_sf9", x)]
