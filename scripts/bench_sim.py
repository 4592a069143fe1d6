"""Simulated cycles/s of the 4x4 MAC array on Verilator: stimulus preloaded into a memory (the
unit testbenches' method) vs operands driven from Python on every cycle. Writes
benchmarks/hw/bench_sim.json.

    python scripts/bench_sim.py [--cycles 200000]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from amaranth.back import verilog  # noqa: E402
from cocotb_tools.runner import get_runner  # noqa: E402

from model.fileio import write_atomic  # noqa: E402
from sim.runner import LINT_WAIVERS, build_root, build_unit, run_tb, setup_verilator  # noqa: E402
from sim.units import SIM_UNITS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "hw" / "bench_sim.json")
    args = ap.parse_args()
    setup_verilator()
    env = {"BENCH_CYCLES": str(args.cycles)}
    # preloaded: the testbench harness around the array
    built = build_unit("mac4x4_w32")
    run_tb(built, "sim.tb.bench_mac", "bench_pre", extra_env={**env, "BENCH_MODE": "preloaded"})
    pre = json.loads((built.build_dir / "bench_pre" / "bench_preloaded.json").read_text())
    # per cycle: the bare array as toplevel
    bdir = build_root() / "bench_mac4x4_raw"
    bdir.mkdir(parents=True, exist_ok=True)
    (bdir / "dut.v").write_text(verilog.convert(SIM_UNITS["mac4x4_w32"].factory(), name="dut"))
    r = get_runner("verilator")
    r.build(sources=[bdir / "dut.v"], hdl_toplevel="dut", build_dir=bdir, build_args=LINT_WAIVERS,
            log_file=bdir / "build.log")
    tdir = bdir / "run"
    shutil.rmtree(tdir, ignore_errors=True)
    import os
    os.environ.update({**env, "BENCH_MODE": "per_cycle", "NITRO_UNIT": "mac4x4_w32"})
    r.test(test_module="sim.tb.bench_mac", hdl_toplevel="dut", hdl_toplevel_lang="verilog",
           build_dir=bdir, test_dir=tdir, log_file=bdir / "run.log")
    per = json.loads((tdir / "bench_per_cycle.json").read_text())
    result = {"design": "MacArray 4x4, int8 x int32, 32-bit acc", "preloaded": pre,
              "per_cycle_python": per, "speedup": round(pre["cycles_per_s"] / per["cycles_per_s"], 1),
              "host": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
