"""The streaming engine's two AXI ports against cocotbext-axi's models: AxiRam as the memory, with
random pauses on all five channels, and AxiLiteMaster on the register port, with random pauses on
its response channels. The host program (sim.engine.host, the cosim's) trains a small MLP
(16-12-10, batch 4: every op and transfer kind) for two steps and runs the inference program;
weights, outputs and predictions equal the golden model's. Handshake stability is checked every
cycle on both ports. A misaligned transfer and an unknown opcode end in ERROR with their codes."""
import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiBus, AxiRam

from hw.engine.compiler import compile_network
from hw.engine.control import ERR_BUS, ERR_OPCODE, STATUS_ERROR
from hw.engine.params import EngineParams
from hw.engine.program import PROGRAM_WORD_BITS, Command, Transfer, bus_words, load
from model.init import init_params
from model.network import Network, Trace
from model.spec import Hyper, build_mlp
from sim.engine.host import RamBackend
from sim.tb.axi_common import StabilityChecker, quiet_axi_models, stalls, start
from sim.tb.common import record

AXI_CHANNELS = {"ar": ["araddr", "arlen"], "r": ["rdata", "rlast"], "aw": ["awaddr", "awlen"],
                "w": ["wdata", "wlast"], "b": ["bresp"]}
LITE_CHANNELS = {"aw": ["awaddr"], "w": ["wdata", "wstrb"], "b": ["bresp"], "ar": ["araddr"],
                 "r": ["rdata", "rresp"]}
BATCH, SHAPE = 4, (1, 16, 16)


async def setup(dut, seed: int):
    quiet_axi_models()
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator="__"), dut.clk, dut.rst, size=1 << 20)
    for k, ch in enumerate((ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                            ram.read_if.ar_channel, ram.read_if.r_channel)):
        ch.set_pause_generator(stalls(seed + k, 0.3))
    spec = build_mlp(SHAPE, [12, 12, 12], Hyper())  # 7 runs: the steps after the first start warm
    # weights x16: at their initial scale every forward output scales to 0 and no result would
    # depend on the batch the first run reads
    net = Network(spec, {k: v * 16 for k, v in init_params(spec, np.random.RandomState(seed)).items()})
    eng = RamBackend(dut, compile_network(spec, BATCH, EngineParams(), 512), ram)
    eng.master.write_if.b_channel.set_pause_generator(stalls(seed + 7, 0.5))
    eng.master.read_if.r_channel.set_pause_generator(stalls(seed + 8, 0.5))
    checkers = [StabilityChecker(dut, "m_axi", AXI_CHANNELS), StabilityChecker(dut, "s_axil", LITE_CHANNELS)]
    await start(dut)
    return net, eng, checkers


@cocotb.test()
async def training_steps_over_cocotbext_axi(dut):
    net, eng, checkers = await setup(dut, 3)
    rng = np.random.RandomState(4)
    await eng.load_weights(net.params)
    checked = 0
    batches = [(rng.randint(-128, 128, (BATCH, *SHAPE)).astype(np.int8),
                (np.eye(10, dtype=np.int8)[rng.randint(0, 10, BATCH)] * 32).astype(np.int8))
               for _ in range(3)]
    assert eng.ep.prefetch is not None
    for step, (x, y) in enumerate(batches):
        trace = Trace()
        net.train_step(x, y, 512, trace=trace)
        hw = await eng.train_step(x, y, 512, following=(batches + [None])[step + 1])
        assert hw.warm == (step > 0), step
        for name, w in net.params.items():
            assert np.array_equal(hw.weights[name], w), (step, name)
            checked += w.size
        assert np.array_equal(hw.outputs["out.yhat"], trace["out"]), step
        checked += trace["out"].size
    x = rng.randint(-128, 128, (10, *SHAPE)).astype(np.int8)
    pred = await eng.predict(x)
    assert np.array_equal(pred["out"], net.predict(x))
    checked += pred["out"].size
    for c in checkers:
        assert not c.violations, c.violations[:3]
        assert all(c.handshakes.values()), c.handshakes  # every channel was exercised
    record("engine_axi", "weights and outputs of 3 steps (2 warm) and 10 predictions, random pauses on "
           "both ports",
           checked, dut._log)


async def run_bad(eng, dut, command: Command) -> tuple[int, int]:
    """A one-command program; (status, error_code) after the interrupt."""
    base = 0x8_0000
    words = bus_words(command.pack(), PROGRAM_WORD_BITS // 64)
    await eng.write_memory([(base // 8, np.array(words, np.uint64))])
    await eng.reg_write("prog_base_lo", base)
    await eng.reg_write("ctrl", 1)
    await with_timeout(RisingEdge(dut.irq), 20_000, "ns")
    status, code = await eng.reg_read("status"), await eng.reg_read("error_code")
    await eng.reg_write("status", status)
    return status, code


@cocotb.test()
async def errors_end_in_error_status(dut):
    net, eng, _ = await setup(dut, 5)
    await eng.reset()
    assert await run_bad(eng, dut, Command(7)) == (STATUS_ERROR, ERR_OPCODE)
    await ClockCycles(dut.clk, 4)
    misaligned = load(Transfer(0, 0, 1, 4, 0x1003, 32))
    assert await run_bad(eng, dut, misaligned) == (STATUS_ERROR, ERR_BUS)
    record("engine_axi", "error programs ending in ERROR with their code", 2, dut._log)
