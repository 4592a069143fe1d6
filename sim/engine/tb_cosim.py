"""cocotb test module: the engine co-simulation loop (configured by NITRO_COSIM_* variables)."""
import cocotb

from sim.engine.cosim import cosim_main


@cocotb.test()
async def cosim(dut):
    await cosim_main(dut)
