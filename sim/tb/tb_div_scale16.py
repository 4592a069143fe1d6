"""16-bit constant dividers and scaling units: every int16 input (exhaustive)."""
import numpy as np

from hw.scaling import NitroScaling
from model.layers import nitro_scaling
from model.numerics import tdiv_scalar
from sim.tb.common import UnitBench, cocotb_test

ALL_INT16 = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)


def model(n, u):
    return nitro_scaling(n, u.factor) if isinstance(u, NitroScaling) else tdiv_scalar(n, u.divisor)


@cocotb_test()
async def appendix_a(dut):
    """Spec Appendix A's tdiv numerators (the model's tests pin the spec's quotients)."""
    b = UnitBench(dut)
    await b.check("spec Appendix A tdiv rows", np.array([-7, 7, 0, -8]), b.per_unit(model))


@cocotb_test()
async def exhaustive(dut):
    b = UnitBench(dut)
    await b.check("all int16", ALL_INT16, b.per_unit(model))
    await b.check("all int16, random valid/ready", ALL_INT16, b.per_unit(model), valid_p=0.5, ready_p=0.3,
                  seed=11)
