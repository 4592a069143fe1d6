"""NITRO Scaling, the paper's scaling factors at 32 bits: corners, real GEMM outputs."""
import numpy as np

from model.layers import nitro_scaling
from sim.tb.common import UnitBench, cocotb_test, corner_ints, real_gemm_outputs


def model(z, u):
    return nitro_scaling(z, u.factor)


@cocotb_test()
async def appendix_a(dut):
    """Spec Appendix A's rows for SF = 200704 (the model's tests pin the spec's values)."""
    b = UnitBench(dut)
    z = np.array([25_000_000, 30_000_000, -200_705, -200_703, -401_408, -30_000_000, 200_703])
    await b.check("spec Appendix A rows", z, b.per_unit(model))


@cocotb_test()
async def corners(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(3)
    factors = [u.factor for u in b.units]
    z = corner_ints(rng, 32, 1_000_000, pivots=factors)
    await b.check("32-bit corners (+-k*SF+-2, clip points)", z, b.per_unit(model))


@cocotb_test()
async def real_tensors(dut):
    b = UnitBench(dut)
    z = np.concatenate(real_gemm_outputs())
    await b.check("real MNIST GEMM outputs, random valid/ready", z, b.per_unit(model), valid_p=0.8,
                  ready_p=0.6)
