"""NITRO-ReLU forward, all slope inverses in one bank: exhaustive int8, random, real MNIST tensors."""
import numpy as np

from model.layers import nitro_relu_forward
from sim.tb.common import ALL_INT8, MLP_STEPS, UnitBench, cocotb_test, tensors

def model(s, u):
    return nitro_relu_forward(s, u.slope_inv)


@cocotb_test()
async def exhaustive(dut):
    b = UnitBench(dut)
    await b.check("exhaustive int8", ALL_INT8, b.per_unit(model))
    # back-pressure: random valid and ready, all inputs 16 times
    await b.check("exhaustive int8, random valid/ready", np.tile(ALL_INT8, 16), b.per_unit(model),
                  valid_p=0.6, ready_p=0.4, seed=7)


@cocotb_test()
async def random_corners(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(1)
    # the corners of this unit are the clip and branch points; weight them up
    corners = np.array([-128, -127, -126, -5, -4, -3, -1, 0, 1, 125, 126, 127], dtype=np.int64)
    s = np.where(rng.random(1 << 20) < 0.5, rng.choice(corners, 1 << 20),
                 rng.integers(-128, 128, 1 << 20))
    await b.check("random int8 (corner-weighted)", s, b.per_unit(model))


@cocotb_test()
async def real_tensors(dut):
    b = UnitBench(dut)
    src = tensors()
    s = np.concatenate([
        src.load(part, which)[k].ravel().astype(np.int64)
        for part, which in MLP_STEPS for k in ("fwd/scaling_00", "fwd/scaling_01")
    ])
    await b.check("real MNIST scaling outputs", s, b.per_unit(model), ready_p=0.7, seed=3)
