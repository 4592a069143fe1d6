"""Single MAC (int8 x int16, 32-bit wrapping accumulator): corner dot products, real GEMM rows."""
import numpy as np

from sim.tb.common import UnitBench, cocotb_test, tensors
from sim.tb.mac_common import check_tiles, gemm_tiles, random_tiles, wrapping_tiles


@cocotb_test()
async def random_dot_products(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(13)
    await check_tiles(b, "corner-heavy dot products", random_tiles(b, rng, 1_000_000, max_k=64))
    await check_tiles(b, "dot products, random valid/ready", random_tiles(b, rng, 50_000),
                      valid_p=0.6, ready_p=0.4)
    await check_tiles(b, "dot products past the accumulator's range", wrapping_tiles(b, rng, 200),
                      must_wrap=True)


@cocotb_test()
async def real_forward(dut):
    b = UnitBench(dut)
    r, w = tensors().load("step1"), tensors().load("init")
    x = r["fwd/non_linearity_00"][:4].astype(np.int64)             # (4, 100) int8
    W = w["linear_encoder_01.weight"].astype(np.int64)            # (50, 100), |W| < 2^15
    await check_tiles(b, "real MNIST layer-2 forward", gemm_tiles(b, x, W.T))
