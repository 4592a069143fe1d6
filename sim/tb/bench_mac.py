"""cocotb side of scripts/bench_sim.py: simulated cycles per wall-clock second of a MAC array."""
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from sim.job import SimJob
from sim.tb.common import UnitBench
from sim.tb.mac_common import beats, random_tiles


@dataclass(frozen=True)
class MacBench(SimJob):
    """Which of the two measurements runs ("preloaded" or "per_cycle"), and for how many cycles."""

    FILE: ClassVar[str] = "mac_bench.json"
    mode: str
    cycles: int


def _save(mode, cycles, seconds):
    Path(f"bench_{mode}.json").write_text(json.dumps(
        {"mode": mode, "cycles": cycles, "seconds": seconds, "cycles_per_s": cycles / seconds}))


@cocotb.test()
async def preloaded(dut):
    """Stimulus from the harness memory, Python only waits for `done`."""
    job = MacBench.read()
    if job.mode != "preloaded":
        return
    b = UnitBench(dut)
    tiles = random_tiles(b, np.random.default_rng(0), job.cycles * b.unit.rows * b.unit.cols, 64)
    v = beats(tiles)
    n_rows = len(tiles) * b.unit.rows
    t0 = time.time()
    await b.stream(v, n_out=n_rows)
    _save("preloaded", len(v["first"]) + n_rows, time.time() - t0)


@cocotb.test()
async def per_cycle(dut):
    """The raw array as toplevel; Python sets the operands on every clock edge."""
    job = MacBench.read()
    if job.mode != "per_cycle":
        return
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    rng = np.random.default_rng(0)
    words = rng.integers(0, 1 << 62, job.cycles)
    t0 = time.time()
    for k in range(job.cycles):
        dut.i__payload.value = int(words[k])
        dut.i__valid.value = 1
        await RisingEdge(dut.clk)
    _save("per_cycle", job.cycles, time.time() - t0)
