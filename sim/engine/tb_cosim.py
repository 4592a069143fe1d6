"""cocotb test module: the engine co-simulation loop (configured by cosim.CosimRun in its folder)."""
import cocotb

from sim.engine.cosim import cosim_main


@cocotb.test()
async def cosim(dut):
    await cosim_main(dut)
