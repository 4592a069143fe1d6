"""4x4 MAC array, int8 x int32 (reference weight-gradient widths), 32-bit wrap."""
import numpy as np

from sim.tb.common import UnitBench, cocotb_test, tensors
from sim.tb.mac_common import check_tiles, gemm_tiles, random_tiles, wrapping_tiles


@cocotb_test()
async def random_tiles_wrap(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(14)
    await check_tiles(b, "corner-heavy 4x4 tiles", random_tiles(b, rng, 1_000_000))
    await check_tiles(b, "4x4 tiles, random valid/ready", random_tiles(b, rng, 100_000),
                      valid_p=0.5, ready_p=0.3)
    await check_tiles(b, "4x4 tiles K<=10, consumer ready 90 %", random_tiles(b, rng, 100_000, 10),
                      ready_p=0.9)
    await check_tiles(b, "4x4 tiles past the accumulator's range", wrapping_tiles(b, rng, 200),
                      must_wrap=True)


@cocotb_test()
async def real_weight_gradient(dut):
    """G = delta.T @ x of the MNIST encoder layer 2, as x.T (int8) @ delta (int32) tiles."""
    b = UnitBench(dut)
    r = tensors().load("step1")
    x = r["fwd/non_linearity_00"].astype(np.int64)               # (32, 100) int8
    delta = r["bwd_in/linear_encoder_01"].astype(np.int64)        # (32, 50) int32
    await check_tiles(b, "real MNIST weight gradient x.T @ delta", gemm_tiles(b, x.T, delta))
