"""Co-simulation of the NITRO-D training engine (hw.engine; its host compiler is hw.engine.compiler).

    build.py     Amaranth -> Verilog -> Verilator build of engine + engine_tb.sv (cached)
    host.py      cocotb side: bulk load / run / read-back; EngineBackend.train_step
    cosim.py     run_cosim (the `nitro cosim` entry): golden model and engine step by step
    tb_cosim.py  the cocotb test module run inside the simulator
    synth.py     synthesize_engine (the `nitro synth` entry for the engine): LFE5U-85F
    pinout.py    its pin constraints: each AXI channel on adjacent package pins
    (the FPGA parts and speed grades: sim/device.py)
"""
