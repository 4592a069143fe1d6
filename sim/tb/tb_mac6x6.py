"""6x6 MAC array (a row count that is not a power of two), int8 x int16, 32-bit wrap: short tiles
back to back, the next admitted while the buffer still drains."""
import numpy as np

from sim.tb.common import UnitBench, cocotb_test
from sim.tb.mac_common import check_tiles, random_tiles


@cocotb_test()
async def short_tiles(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(16)
    await check_tiles(b, "6x6 tiles K<=12", random_tiles(b, rng, 100_000, 12))
    await check_tiles(b, "6x6 tiles K<=12, consumer ready 90 %", random_tiles(b, rng, 100_000, 12),
                      ready_p=0.9)
