"""cocotb test module: a reference vector set on the engine (configured by conform.ConformRun)."""
import cocotb

from sim.engine.conform import conform_main


@cocotb.test()
async def conform(dut):
    await conform_main(dut)
