"""The engine's 8x8 MAC array (int8 x int24: the delta operand of the weight gradients is cut
into a 17-bit and a 7-bit limb), 32-bit wrap: corner-heavy random tiles and a real MNIST forward
GEMM."""
import numpy as np

from sim.tb.common import UnitBench, cocotb_test, tensors
from sim.tb.mac_common import check_tiles, gemm_tiles, random_tiles, wrapping_tiles


@cocotb_test()
async def random_tiles_wrap(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(15)
    await check_tiles(b, "corner-heavy 8x8 tiles", random_tiles(b, rng, 1_000_000))
    await check_tiles(b, "8x8 tiles K<=4, random valid/ready", random_tiles(b, rng, 50_000, 4),
                      valid_p=0.7, ready_p=0.3)
    # short tiles back to back (the next admitted while the buffer still drains), a consumer
    # that sometimes stalls
    await check_tiles(b, "8x8 tiles K<=12, consumer ready 90 %", random_tiles(b, rng, 200_000, 12),
                      ready_p=0.9)
    await check_tiles(b, "8x8 tiles past the accumulator's range", wrapping_tiles(b, rng, 200),
                      must_wrap=True)


@cocotb_test()
async def real_forward(dut):
    """z = x @ W.T of the MNIST encoder layer 1 (784 inputs), full K per tile."""
    b = UnitBench(dut)
    r, w = tensors().load("step1"), tensors().load("init")
    x = r["fwd/flatten_00"][:16].astype(np.int64)                 # (16, 784) int8
    W = w["linear_encoder_00.weight"][:40].astype(np.int64)       # (40, 784)
    await check_tiles(b, "real MNIST layer-1 forward", gemm_tiles(b, x, W.T))
