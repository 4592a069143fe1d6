"""pytest side of the unit testbenches: one cached build per simulated design, results reported."""
from __future__ import annotations

import fcntl
import json
import os

import pytest

from model.fileio import write_atomic

from .runner import BUILD_ROOT, Built, build_component, build_unit, run_tb
from .tensors import TensorSource

_BUILDS: dict[str, Built] = {}


def built(name: str) -> Built:
    from .units import SIM_TOPS

    if name not in _BUILDS:
        if name in SIM_TOPS:
            _BUILDS[name] = build_component(name, SIM_TOPS[name].factory(), SIM_TOPS[name].harness)
        else:
            _BUILDS[name] = build_unit(name)
    return _BUILDS[name]


def run_unit(name: str, request: pytest.FixtureRequest | None = None, testcase: str | None = None,
             tb_module: str | None = None, tensors: TensorSource | None = None) -> dict:
    """Build (cached) and run the cocotb testbench sim.tb.tb_<name>; print and return counts.

    A run that checked no vector against the golden model fails: it could not have caught anything.
    """
    b = built(name)
    from .units import SIM_UNITS

    tb = tb_module or SIM_UNITS[name].tb or f"sim.tb.tb_{name}"
    # one folder per xdist worker: two workers may run testcases of the same build at once
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    tdir = ("run" if testcase is None else f"run_{testcase}") + (f"-{worker}" if worker else "")
    try:
        counts = run_tb(b, tb, tdir, testcase=testcase, tensors=tensors)
    except SystemExit as e:  # cocotb's runner exits on a failed test
        log = (b.build_dir / tdir / "sim.log")
        tail = log.read_text()[-6000:] if log.exists() else "(no log)"
        raise AssertionError(f"cocotb testbench {tb} failed ({e}):\n{tail}") from None
    if sum(counts.values()) == 0:
        raise AssertionError(f"cocotb testbench {tb}{'' if testcase is None else '::' + testcase} "
                             f"checked 0 vectors against the golden model (no testcase ran?)")
    report(name, counts, request)
    return counts


def report(name: str, counts: dict, request) -> None:
    total = sum(counts.values())
    line = f"[vectors] {name}: {total} total; " + ", ".join(f"{k}: {v}" for k, v in counts.items())
    print(line)
    summary = BUILD_ROOT / "vector_counts.json"
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    with open(BUILD_ROOT / ".vector_counts.lock", "w") as lock:  # xdist workers add to one file
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(summary.read_text()) if summary.exists() else {}
        data[name] = {**data.get(name, {}), **counts}  # a unit's testcases run from several tests
        write_atomic(summary, json.dumps(data, indent=1).encode())
    if request is not None:
        request.node.user_properties.append(("vectors", total))
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:  # shown even under output capture (not on xdist workers)
            tr.write_line(line)


def simulate(dut, bench) -> None:
    """Run the testbench `bench` (an async function of the simulator context) on `dut` in the
    Amaranth simulator, with one clock."""
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def clocked(dut, cycles: list[list[tuple]], probe) -> list[int]:
    """Run `dut` in the Amaranth simulator: one list of (signal, value) inputs per clock cycle
    (signals not named keep their values); returns `probe`'s value after each clock edge."""
    out = []

    async def bench(ctx):
        for inputs in cycles:
            for sig, value in inputs:
                ctx.set(sig, value)
            await ctx.tick()
            out.append(ctx.get(probe))

    simulate(dut, bench)
    return out
