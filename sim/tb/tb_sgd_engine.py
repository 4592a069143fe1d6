"""The engine's IntegerSGD pipeline (int16 weights, int32 gradients, D and eta both programmed per
weight): corners, every decay inverse class, a real MNIST step with each layer's eta."""
import numpy as np

from sim.tb.common import UnitBench, cocotb_test
from sim.tb.tb_sgd import SPEC_ROWS, build, corner_operands, real_operands

ETAS = [0, 1, 2, 3, 3000, 12000, 30000, (1 << 16) - 1]


@cocotb_test()
async def spec_rows(dut):
    """Spec 4.1's (W, G, D, eta) rows, each with its own eta (the model's tests pin the values)."""
    b = UnitBench(dut)
    v, golden = build(b, *SPEC_ROWS)
    await b.check("spec 4.1 rows with their eta", v, golden)


@cocotb_test()
async def corners(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(21)
    n = 1_000_000
    w, g, d = corner_operands(rng, 16, n)
    eta = rng.choice(np.concatenate([ETAS, rng.integers(1, 1 << 16, 56)]), n)
    v, golden = build(b, w, g, d, eta)
    await b.check("16-bit W x 32-bit G corners x divisors x runtime eta", v, golden, seed=5)


@cocotb_test()
async def real_step(dut):
    b = UnitBench(dut)
    v, golden = build(b, *real_operands())
    await b.check("real MNIST step (W, G, D, eta), random valid/ready", v, golden, valid_p=0.8,
                  ready_p=0.6)
