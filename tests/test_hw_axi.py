# amaranth: UnusedElaboratable=no
"""AXI4 DMA and the AXI4-Lite register file on Verilator against cocotbext-axi's models (issue 13:
the protocol test of both AXI ports), and their parameter checks."""
import random
from dataclasses import fields

import pytest

from hw.axi import axi4, axilite, burst_split
from hw.dma import BurstSplitter, DmaReader, DmaWriter
from hw.engine.control import MAP_VERSION, PARAMS_BASE, control_map
from hw.engine.params import CNN_WEIGHT_BITS, engine_with_weights
from hw.regs import Constant, Register, RegisterMap
from sim.testing import run_unit, simulate


@pytest.mark.parametrize("name", ["dma64", "dma128"])
def test_dma_copies_through_axi4(request, name):
    counts = run_unit(name, request, tb_module="sim.tb.tb_dma")
    assert counts["beats copied, 40 % random stalls on every channel"] > 1000
    assert counts["beats copied through a full read buffer"] > 100
    assert counts["beats copied to a slave that takes AW only once W is offered"] > 1000


def test_control_registers_over_axilite(request):
    counts = run_unit("control_regs", request, tb_module="sim.tb.tb_regs")
    assert counts["register reads/writes checked"] > 50
    # the start pulse (2 checks), then 5 for each of the status register's two bits
    assert counts["start pulse, w1c status and interrupt sequence"] == 2 + 5 * 2


def test_engine_ports_against_cocotbext_axi(request):
    """The whole streaming engine with AxiRam (random pauses on every channel; in training, AW
    taken only once W is offered) and AxiLiteMaster: three training steps (the last two starting
    warm) and the inference program bit-identical to the golden model; seven error programs
    ending in ERROR with their codes once the port is quiet; programs compiled for three other
    engines refused by the host before they run, each naming the parameter that differs."""
    counts = run_unit("engine_axi", request, tb_module="sim.tb.tb_engine_axi")
    assert counts["weights and outputs of 3 steps (2 warm) and 10 predictions, random pauses on "
                  "both ports, AW taken only once W is offered"] > 500
    assert counts["error programs ending in ERROR with their code, the port quiet"] == 7
    assert counts["programs compiled for another engine refused"] == 3


def test_port_and_map_parameters_are_checked():
    with pytest.raises(ValueError, match="data width"):
        axi4(data_width=48)
    with pytest.raises(ValueError, match="read or its write"):
        axi4(read=False, write=False)
    with pytest.raises(ValueError, match="32 or 64"):
        axilite(data_width=16)
    with pytest.raises(ValueError, match="max_burst"):
        DmaReader(max_burst=12)
    with pytest.raises(ValueError, match="max_outstanding"):
        DmaWriter(max_outstanding=0)
    with pytest.raises(ValueError, match="duplicate"):
        RegisterMap((Register("a", 0, "rw"), Register("b", 0, "ro")))
    with pytest.raises(ValueError, match="not a word"):
        RegisterMap((Register("a", 2, "rw"),))
    with pytest.raises(ValueError, match="access"):
        RegisterMap((Register("a", 0, "rx"),))
    with pytest.raises(ValueError, match="irq needs"):
        RegisterMap((Register("s", 0, "ro"), Register("e", 4, "rw")), irq=("s", "e"))
    with pytest.raises(ValueError, match="C identifier"):
        RegisterMap((Register("Ctrl", 0, "rw"),))
    with pytest.raises(ValueError, match="'a_value' twice"):  # A_VALUE: register a's and the constant
        RegisterMap((Register("a", 0, "const"),), constants=(Constant("a_value", 1),))
    with pytest.raises(ValueError, match="32-bit"):
        RegisterMap((Register("a", 0, "rw"),), constants=(Constant("minus", -1),))
    table = control_map().markdown()
    assert "| 0x010 | ctrl | pulse | 1 |" in table and "| err_align | 0x3 |" in table
    assert table.count("\n| 0x") == len(control_map().registers)


def test_dma_on_the_verilated_memory_model(request):
    """The long-run memory model: results bit-identical under ideal, high-latency, reduced-bandwidth
    and randomly stalling memory (two seeds); the run lengths differ as they must."""
    counts = run_unit("dma64_mem", request, tb_module="sim.tb.tb_dma_mem")
    assert counts["beats copied, identical under 5 memory settings"] > 5 * 5000


def _split_in_sim(cmds: list[tuple[int, int]], p_stall: float, seed: int, beat: int = 8,
                  max_burst: int = 16) -> tuple[list[tuple[int, int, int]], int]:
    """The BurstSplitter in Amaranth's simulator fed `cmds` (addr, beats) back to back, its burst
    output stalled with probability `p_stall`: the bursts (cycle, addr, beats) and the count of
    `misaligned` pulses."""

    dut = BurstSplitter(32, beat * 8, max_burst)
    rng, out, bad = random.Random(seed), [], [0]

    async def bench(ctx):
        k, cycle = 0, 0
        while k < len(cmds) or ctx.get(dut.active):
            ready = rng.random() >= p_stall
            ctx.set(dut.burst.ready, ready)
            ctx.set(dut.cmd.valid, k < len(cmds))
            if k < len(cmds):
                ctx.set(dut.cmd.payload.addr, cmds[k][0])
                ctx.set(dut.cmd.payload.beats, cmds[k][1])
            took = k < len(cmds) and ctx.get(dut.cmd.ready)
            if ctx.get(dut.burst.valid) and ready:
                out.append((cycle, ctx.get(dut.burst.payload.addr), ctx.get(dut.burst.payload.len) + 1))
            bad[0] += ctx.get(dut.misaligned)
            await ctx.tick()
            k, cycle = k + took, cycle + 1
            assert cycle < 100 * len(cmds) + 100, "the splitter stopped"

    simulate(dut, bench)
    return out, bad[0]


@pytest.mark.parametrize("p_stall", [0.0, 0.3])
def test_burst_splitter_against_the_burst_rule(p_stall):
    """Random commands (short rows, starts just below a 4 KiB boundary, long ones, empty and
    misaligned ones) give exactly the bursts of `burst_split`, in order, under output stalls."""
    rng, beat = random.Random(7), 8
    cmds = []
    for _ in range(300):
        addr = rng.choice([rng.randrange(0, 1 << 20, beat), (rng.randrange(1, 256) << 12) - beat * rng.randint(1, 5)])
        cmds.append((addr, rng.choice([0, 1, 2, 3, rng.randint(4, 40), rng.randint(40, 300)])))
    cmds += [(0x1001, 4), (0x2000, 3)]
    got, bad = _split_in_sim(cmds, p_stall, seed=1)
    want = [b for a, n in cmds if a % beat == 0 for b in burst_split(a, n, beat, 16)]
    assert len(want) > 400 and [(a, n) for _, a, n in got] == want
    assert bad == 1


def test_burst_splitter_issues_a_short_command_per_cycle():
    """Rows of a strided transfer (one burst each) leave one burst per cycle; a command cut into
    bursts takes three cycles per burst."""
    short = [(0x10000 + 256 * r, 2) for r in range(64)]
    got, _ = _split_in_sim(short, 0.0, seed=1)
    assert len(got) == 64 and got[-1][0] - got[0][0] == 63
    long_, _ = _split_in_sim([(0x20000, 16 * 8)], 0.0, seed=1)
    assert len(long_) == 8 and long_[-1][0] - long_[0][0] == 3 * 7


@pytest.mark.parametrize("p_in, p_out", [(0.0, 0.0), (0.3, 0.4)])
def test_register_slice_passes_every_beat_in_order(p_in, p_out):
    """RegisterSlice (every channel of AxiRegisterSlice) under random valid and ready: every beat
    leaves once, in order, `o.valid` held until taken with its payload unchanged; with neither
    side pausing, one beat per cycle after one cycle of latency."""

    from hw.stream_unit import RegisterSlice

    dut, rng = RegisterSlice(16), random.Random(3)
    beats = [rng.randrange(1 << 16) for _ in range(400)]
    out, cycles = [], [0]

    async def bench(ctx):
        k, held = 0, None
        while len(out) < len(beats):
            offer = k < len(beats) and rng.random() >= p_in
            ready = rng.random() >= p_out
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, beats[k] if offer else 0)
            ctx.set(dut.o.ready, ready)
            took = offer and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                data = ctx.get(dut.o.payload)
                assert held is None or held == data, "o.payload changed while o.valid waited"
                held = None if ready else data
                if ready:
                    out.append(data)
            else:
                assert held is None, "o.valid fell before its beat was taken"
            await ctx.tick()
            k, cycles[0] = k + took, cycles[0] + 1
            assert cycles[0] < 20 * len(beats), "the slice stopped"

    simulate(dut, bench)
    assert out == beats
    if p_in == p_out == 0.0:
        assert cycles[0] == len(beats) + 1


def _valid_never_reads_ready(dut, pairs, inputs, cycles: int = 800, seed: int = 1) -> dict:
    """AXI's rule that a VALID must not depend on its READY (IHI 0022 A3.1.1), in the Amaranth
    simulator: every cycle, each READY is set 0 then 1 within the cycle and its VALID must not
    change; then every input in `inputs` (the READYs included) takes a random value for the
    cycle. Returns the cycles each VALID was high."""
    rng, high = random.Random(seed), {name: 0 for name, _, _ in pairs}

    async def bench(ctx):
        for _ in range(cycles):
            for name, valid, ready in pairs:
                seen = set()
                for r in (0, 1):
                    ctx.set(ready, r)
                    seen.add(ctx.get(valid))
                assert len(seen) == 1, f"{name}: VALID follows READY in the same cycle"
                high[name] += seen.pop()
            for sig, values in inputs:
                ctx.set(sig, rng.choice(values))
            await ctx.tick()

    simulate(dut, bench)
    return high


def test_valid_never_reads_ready():
    """The DMA's AR, AW and W (behind DmaLoopback's port slice and bare), and the register file's
    R and B: their VALIDs, under random commands and random bus inputs, never follow the READY
    of the same cycle, and each of them was high at some point."""
    from hw.dma import DmaLoopback
    from hw.engine.control import ControlRegisters

    def bus_inputs(bus):  # the inputs of the channels the port has
        values = {"arready": [0, 1], "rvalid": [0, 1], "rlast": [0, 1], "awready": [0, 1],
                  "wready": [0, 1], "bvalid": [0, 0, 1]}
        return [(getattr(bus, name), v) for name, v in values.items() if hasattr(bus, name)]

    def command_inputs(*cmds):
        return [x for c in cmds for x in ((c.valid, [0, 1]), (c.payload.beats, [1, 3, 16, 40]),
                                          (c.payload.addr, [0x1000, 0x2ff8, 0x40000]))]

    loop, rd, wr = DmaLoopback(32, 64, max_burst=16, max_outstanding=4), DmaReader(32, 64), DmaWriter(32, 64)
    for dma, bus, chans, inputs in (
            (loop, loop.m_axi, ("ar", "aw", "w"), command_inputs(loop.rd_cmd, loop.wr_cmd)),
            (rd, rd.bus, ("ar",), command_inputs(rd.cmd) + [(rd.data.ready, [0, 1])]),
            (wr, wr.bus, ("aw", "w"), command_inputs(wr.cmd) + [(wr.data.valid, [0, 1])])):
        pairs = [(ch, getattr(bus, f"{ch}valid"), getattr(bus, f"{ch}ready")) for ch in chans]
        high = _valid_never_reads_ready(dma, pairs, bus_inputs(bus) + inputs)
        assert all(high.values()), (type(dma).__name__, high)
    regs = ControlRegisters()
    bus = regs.bus
    high = _valid_never_reads_ready(
        regs, [("r", bus.rvalid, bus.rready), ("b", bus.bvalid, bus.bready)],
        [(bus.awvalid, [0, 1]), (bus.wvalid, [0, 1]), (bus.arvalid, [0, 1]),
         (bus.awaddr, [0x010, 0x018, 0x030, 0x100]), (bus.araddr, [0x000, 0x014, 0x040, 0x100]),
         (bus.wdata, [0, 1, 3]), (bus.wstrb, [0xF, 0x1])])
    assert all(high.values()), high


# the parameter block of map version 5: drivers hold these offsets
V5_FIELDS = ("rows", "cols", "act_bits", "weight_bits", "delta_bits", "acc_bits", "slope_inv",
             "amem_c_depth", "amem_r_depth", "wmem_depth", "wtmem_depth", "dmem_depth", "smem_depth",
             "ymem_depth", "cmem_depth", "pmem_depth", "bus_bits", "max_divisor", "max_eta",
             "max_scale", "wait_cycles")


def test_the_parameter_block_is_pinned_to_its_map_version():
    """Every generation parameter is a constant register holding its value, at the offset map
    version 5 gave it: a field of EngineParams added or moved fails here until MAP_VERSION (and
    this list) changes with it."""
    p = engine_with_weights(CNN_WEIGHT_BITS)
    regs = control_map(p)
    assert MAP_VERSION == 5 and regs["version"].reset == 5
    assert tuple(f.name for f in fields(p)) == V5_FIELDS
    for k, name in enumerate(V5_FIELDS):
        r = regs[f"param_{name}"]
        assert (r.offset, r.access, r.reset) == (PARAMS_BASE + 4 * k, "const", getattr(p, name))
