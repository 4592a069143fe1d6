"""The engine's 8x8 MAC array as synthesis elaborates it: its products on MULT18X18D instances
(hw.dsp: operands sign- or zero-extended to 18 bits, the A, B and output registers, the product's
low bits), simulated on sim.ecp5_models' model against the golden model."""
import numpy as np

from sim.tb.common import UnitBench, cocotb_test
from sim.tb.mac_common import check_tiles, random_tiles, wrapping_tiles


@cocotb_test()
async def random_tiles_dsp(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(17)
    await check_tiles(b, "corner-heavy 8x8 tiles on MULT18X18D", random_tiles(b, rng, 200_000))
    await check_tiles(b, "8x8 tiles K<=12 on MULT18X18D, random valid/ready",
                      random_tiles(b, rng, 50_000, 12), valid_p=0.7, ready_p=0.6)
    await check_tiles(b, "8x8 tiles past the accumulator's range on MULT18X18D",
                      wrapping_tiles(b, rng, 100), must_wrap=True)
