"""MAC arrays of the other shapes (6x6: a row count that is not a power of two) and the
configurations `nitro rtl` exports (4x4 and 8x8, int8 x int16), 32-bit wrap: short tiles back to
back, the next admitted while the buffer still drains."""
import numpy as np

from sim.tb.common import UnitBench, cocotb_test
from sim.tb.mac_common import check_tiles, random_tiles, wrapping_tiles


@cocotb_test()
async def short_tiles(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(16)
    shape = f"{b.unit.rows}x{b.unit.cols}"
    await check_tiles(b, f"{shape} tiles K<=12", random_tiles(b, rng, 100_000, 12))
    await check_tiles(b, f"{shape} tiles K<=12, consumer ready 90 %", random_tiles(b, rng, 100_000, 12),
                      ready_p=0.9)
    await check_tiles(b, f"{shape} tiles past the accumulator's range", wrapping_tiles(b, rng, 24),
                      must_wrap=True, ready_p=0.9)
