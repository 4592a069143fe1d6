"""Constant dividers at 32 bits (scaling factors, decay inverses, awkward divisors)."""
import numpy as np

from model.numerics import tdiv_scalar
from sim.tb.common import UnitBench, cocotb_test, corner_ints, tensors


def model(n, u):
    return tdiv_scalar(n, u.divisor)


@cocotb_test()
async def corners(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(4)
    n = corner_ints(rng, 32, 1_000_000, pivots=[u.divisor for u in b.units])
    await b.check("32-bit corners (+-k*d+-2, extremes, log-uniform)", n, b.per_unit(model), seed=5)


@cocotb_test()
async def real_gradients(dut):
    b = UnitBench(dut)
    r = tensors().load("step1")
    n = np.concatenate([r[k].ravel() for k in ("wgrad/linear_encoder_00", "wgrad/linear_encoder_01",
                                                "fwd/linear_encoder_00")]).astype(np.int64)
    await b.check("real MNIST gradients / GEMM outputs, random valid/ready", n, b.per_unit(model),
                  valid_p=0.75, ready_p=0.75)
