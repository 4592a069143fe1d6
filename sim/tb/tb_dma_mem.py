"""The DMA on the Verilated AXI4 memory model (sim/axi_mem.sv inside sim/dma_tb.sv): the same random
copies under four memory settings (ideal; high latency; reduced bandwidth; random stalls on every
channel with two seeds). The memory image after every run equals the expected copy, bit for bit,
and so every run equals every other; the cycle counts are recorded. cocotb writes files and waits
for three edges per run: no Python per simulated cycle."""
import json
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, with_timeout

from sim.tb.axi_common import top
from sim.tb.common import record
from sim.tb.tb_dma import copies

WORDS = 1 << 17  # dma_tb's memory
# name -> (latency, gap, stall %, seed)
SETTINGS = {"ideal": (1, 0, 0, 1), "latency 100": (100, 0, 0, 1), "half bandwidth": (8, 1, 0, 1),
            "stalls 30 % seed 1": (8, 0, 30, 1), "stalls 30 % seed 2": (8, 0, 30, 2)}


def write_hex(path: Path, words, digits: int) -> None:
    path.write_text("".join(f"{int(w):0{digits}x}\n" for w in words))


async def pulse(go, done, budget_cycles: int) -> None:
    """Raise `go` and wait for `done` (an error when it does not come: a hung DMA fails the test)."""
    go.value = 1
    await with_timeout(RisingEdge(done), budget_cycles * 10, "ns")
    go.value = 0


@cocotb.test()
async def copies_under_memory_settings(dut):
    unit = top()
    beat = unit.reader.data_width // 8
    aw = unit.reader.addr_width
    rng = random.Random(5)
    jobs = copies(rng, beat, 60)
    image = np.frombuffer(rng.randbytes(WORDS * beat), dtype=np.uint64).copy()
    words = image.view(np.uint8)
    expected = words.copy()
    for src, dst, beats in jobs:
        expected[dst:dst + beats * beat] = words[src:src + beats * beat]
    write_hex(Path("mem.hex"), image, 16)
    write_hex(Path("rd_cmds.hex"), [s | (b << aw) for s, _, b in jobs], 14)
    write_hex(Path("wr_cmds.hex"), [d | (b << aw) for _, d, b in jobs], 14)
    dut.n_cmds.value = len(jobs)
    beats = sum(b for _, _, b in jobs)
    cycles = {}
    for name, (latency, gap, stall, seed) in SETTINGS.items():
        dut.latency.value, dut.gap.value, dut.stall_pct.value, dut.seed.value = latency, gap, stall, seed
        await pulse(dut.load_go, dut.load_done, 100)
        await pulse(dut.run_go, dut.run_done, 40 * beats + 100 * latency * len(jobs))
        await pulse(dut.dump_go, dut.dump_done, 100)
        got = np.array([int(line, 16) for line in Path("mem_out.hex").read_text().split()],
                       dtype=np.uint64).view(np.uint8)
        bad = np.flatnonzero(got != expected)
        assert not bad.size, f"{name}: {bad.size} bytes differ, first at byte {bad[0]:#x}"
        assert not dut.error.value, name
        cycles[name] = int(dut.run_cycles.value)
    assert cycles["ideal"] < min(v for k, v in cycles.items() if k != "ideal")
    assert cycles["half bandwidth"] >= 2 * beats  # one R beat every other cycle at best
    Path("cycles.json").write_text(json.dumps({"beats": beats, "cycles": cycles}))
    record("dma64_mem", "beats copied, identical under 5 memory settings", beats * len(SETTINGS), dut._log)
