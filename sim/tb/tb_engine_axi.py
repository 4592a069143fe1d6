"""The streaming engine's two AXI ports against cocotbext-axi's models: AxiRam as the memory, with
random pauses on all five channels, and AxiLiteMaster on the register port, with random pauses on
all five of its channels too (so a write's address and data arrive apart, in either order). The
host program (sim.engine.host, the cosim's) trains a small MLP (16-12-10, batch 4: every op and
transfer kind) for two steps and runs the inference program; weights, outputs and predictions
equal the golden model's. Handshake stability is checked every cycle on both ports.
Errors: an unknown opcode, a misaligned transfer or program address, and SLVERR on a read and
on a write response (a faulty region of the RAM) each end in ERROR with their code, only after
every transfer the program started has ended (the memory port stays quiet after the interrupt,
and a STORE queued before the bad command has all its responses); the next START runs."""
import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiBus, AxiRam

from hw.engine.compiler import compile_network
from hw.axi import burst_split
from hw.engine.control import ERR_ALIGN, ERR_BUS, ERR_OPCODE, STATUS_DONE, STATUS_ERROR, control_map
from hw.engine.params import CNN_WEIGHT_BITS, SEL_AMEM_C, EngineParams, engine_with_weights
from hw.engine.program import (
    PROGRAM_WORD_BITS, SOP_END, Command, Transfer, beats_per_word, bus_words, load, store,
)
from model.init import init_params
from model.network import Network, Trace
from model.numerics import NitroError
from model.spec import Hyper, build_mlp
from sim.engine.host import RamBackend
from sim.tb.axi_common import (
    AXI4_FIELDS, AXI4_LITE_FIELDS, StabilityChecker, aw_after_w, pause_all, quiet_axi_models, start,
)
from sim.tb.common import record

BATCH, SHAPE = 4, (1, 16, 16)
READ_FAULT, WRITE_FAULT = range(0x9_0000, 0xA_0000), range(0xA_0000, 0xB_0000)  # SLVERR there


async def setup(dut, seed: int, w_first: bool = False):
    """The engine's memory (random pauses on every channel; with `w_first`, AW pauses until W is
    offered instead: `aw_after_w`), its host, and the ports' stability checkers."""
    quiet_axi_models()
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator="__"), dut.clk, dut.rst, size=1 << 20)
    pause_all(ram, seed, 0.3)
    if w_first:
        aw_after_w(dut, "m_axi", ram)
    spec = build_mlp(SHAPE, [12, 12, 12], Hyper())  # 7 runs: the steps after the first start warm
    # weights x16: at their initial scale every forward output scales to 0 and no result would
    # depend on the batch the first run reads
    net = Network(spec, {k: v * 16 for k, v in init_params(spec, np.random.RandomState(seed)).items()})
    eng = RamBackend(dut, compile_network(spec, BATCH, EngineParams(), 512), ram)
    pause_all(eng.master, seed + 7, 0.5)
    checkers = [StabilityChecker(dut, "m_axi", AXI4_FIELDS), StabilityChecker(dut, "s_axil", AXI4_LITE_FIELDS)]
    await start(dut)
    _fault(ram.read_if, "_read", READ_FAULT)
    _fault(ram.write_if, "_write", WRITE_FAULT)
    return net, eng, checkers


def _fault(interface, method: str, region: range) -> None:
    """AxiRam answers SLVERR for an access that raises: make `region` raise."""
    inner = getattr(interface, method)

    async def access(address, *args):
        if address in region:
            raise OSError(f"faulty region: {address:#x}")
        return await inner(address, *args)
    setattr(interface, method, access)


@cocotb.test()
async def training_steps_over_cocotbext_axi(dut):
    net, eng, checkers = await setup(dut, 3, w_first=True)
    rng = np.random.RandomState(4)
    await eng.load_weights(net.params)
    checked = 0
    batches = [(rng.randint(-128, 128, (BATCH, *SHAPE)).astype(np.int8),
                (np.eye(10, dtype=np.int8)[rng.randint(0, 10, BATCH)] * 32).astype(np.int8))
               for _ in range(3)]
    assert eng.ep.prefetch is not None
    for step, (x, y) in enumerate(batches):
        trace = Trace()
        before = {k: v.copy() for k, v in net.params.items()}
        net.train_step(x, y, 512, trace=trace)
        # what is compared depends on the step: outputs that vary, weights the step moved
        assert len(np.unique(trace["out"])) > 1 and any(
            np.any(before[k] != w) for k, w in net.params.items()), step
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
           "both ports, AW taken only once W is offered",
           checked, dut._log)


@cocotb.test()
async def a_host_refuses_another_engine(dut):
    """The host reads the ID/parameter block before it runs anything: a program compiled for
    another engine (the CNN engine's int24 weights, a 128-bit memory port, an int16 engine with a
    512-word WMEM) is refused, naming the parameter that differs; the program's own engine passes."""
    _, eng, _ = await setup(dut, 6)
    await eng.reset()
    refused = 0
    for other, reg in ((engine_with_weights(CNN_WEIGHT_BITS), "param_weight_bits"),
                       (EngineParams(bus_bits=128), "param_bus_bits"),
                       (EngineParams(wmem_depth=512), "param_wmem_depth")):
        eng.regs = control_map(other)
        try:
            await eng.check_engine()
        except NitroError as e:
            assert f"its {reg} register reads" in str(e), str(e)
            refused += 1
    eng.regs = control_map(eng.p)
    await eng.check_engine()
    record("engine_axi", "programs compiled for another engine refused", refused, dut._log)


async def run_bad(eng, dut, checkers, commands: list[Command], base: int = 0x8_0000) -> tuple[int, int, dict]:
    """A program of `commands` at `base`; (status, error_code, the memory port's handshakes per
    channel during the run) after the interrupt, once the port has been quiet for 64 cycles."""
    words = [w for c in commands for w in bus_words(c.pack(), PROGRAM_WORD_BITS // 64)]
    await eng.write_memory([(base // 8, np.array(words, np.uint64))])
    await eng.reg_write("prog_base_lo", base)
    before = dict(checkers[0].handshakes)

    async def interrupt():
        await RisingEdge(dut.irq)
    irq = cocotb.start_soon(interrupt())  # waiting before START: an error may end it in 3 cycles
    await eng.reg_write("ctrl", 1)
    await with_timeout(irq, 50_000, "ns")
    during = {ch: n - before[ch] for ch, n in checkers[0].handshakes.items()}
    await ClockCycles(dut.clk, 64)
    assert checkers[0].handshakes == {ch: before[ch] + n for ch, n in during.items()}, \
        "the memory port moved after the interrupt"
    status, code = await eng.reg_read("status"), await eng.reg_read("error_code")
    await eng.reg_write("status", status)
    return status, code, during


def _beats(t: Transfer, p: EngineParams) -> int:
    return t.rows * t.row_words * beats_per_word(p, t.sel)


def _bursts(t: Transfer, p: EngineParams) -> int:
    beats = t.row_words * beats_per_word(p, t.sel)
    return sum(len(list(burst_split(t.ext + r * t.stride, beats, p.bus_bits // 8, 16)))
               for r in range(t.rows))


@cocotb.test()
async def errors_end_in_error_status(dut):
    net, eng, checkers = await setup(dut, 5)
    await eng.reset()
    p, end = EngineParams(), Command(SOP_END)
    checked = 0

    def ended_in_error(ok: bool, what: str) -> None:
        nonlocal checked
        assert ok, what
        checked += 1

    status, code, _ = await run_bad(eng, dut, checkers, [Command(7)])
    ended_in_error((status, code) == (STATUS_ERROR, ERR_OPCODE), "unknown opcode")
    # a STORE queued before the bad command: its responses all come before the interrupt
    queued = Transfer(SEL_AMEM_C, 0, 6, 4, 0x4_0000, 0x1000 - 16)  # row 1 crosses 4 KiB
    status, code, moved = await run_bad(eng, dut, checkers, [store(queued), Command(7)])
    ended_in_error((status, code) == (STATUS_ERROR, ERR_OPCODE) and moved["b"] == _bursts(queued, p) > 6,
                   "a queued STORE's responses before the interrupt")
    # misaligned: refused before any transfer (only the command's own fetch reads)
    status, code, moved = await run_bad(eng, dut, checkers, [load(Transfer(0, 0, 1, 4, 0x1003, 32))])
    ended_in_error((status, code, moved["ar"], moved["aw"]) == (STATUS_ERROR, ERR_ALIGN, 1, 0),
                   "a misaligned transfer")
    status, code, moved = await run_bad(eng, dut, checkers, [end], base=0x8_0004)
    ended_in_error((status, code, moved["ar"]) == (STATUS_ERROR, ERR_ALIGN, 0), "a misaligned program")
    # SLVERR on a LOAD's reads and on a STORE's write responses
    bad_load = Transfer(SEL_AMEM_C, 0, 2, 4, READ_FAULT[0], 256)
    status, code, moved = await run_bad(eng, dut, checkers, [load(bad_load), end])
    fetch = PROGRAM_WORD_BITS // p.bus_bits  # the LOAD command's beats; END is never fetched
    ended_in_error((status, code, moved["r"]) == (STATUS_ERROR, ERR_BUS, fetch + _beats(bad_load, p)),
                   "SLVERR on a LOAD")
    # SLVERR on the program's own fetch: its beats read as 0, which is END, yet the run is an error
    status, code, moved = await run_bad(eng, dut, checkers, [end], base=READ_FAULT[0])
    ended_in_error((status, code, moved["ar"]) == (STATUS_ERROR, ERR_BUS, 1), "SLVERR on a fetch")
    bad_store = Transfer(SEL_AMEM_C, 0, 2, 4, WRITE_FAULT[0], 256)
    status, code, moved = await run_bad(eng, dut, checkers, [store(bad_store), end])
    ended_in_error((status, code) == (STATUS_ERROR, ERR_BUS) and moved["b"] == _bursts(bad_store, p),
                   "SLVERR on a STORE")
    # START clears the error: a good program runs
    status, code, _ = await run_bad(eng, dut, checkers, [end])
    assert (status, code) == (STATUS_DONE, 0)
    for c in checkers:
        assert not c.violations, c.violations[:3]
    record("engine_axi", "error programs ending in ERROR with their code, the port quiet", checked,
           dut._log)
