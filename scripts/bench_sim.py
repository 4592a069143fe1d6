"""Simulated cycles/s of the 4x4 MAC array on Verilator: stimulus preloaded into a memory (the
unit testbenches' method) vs operands driven from Python on every cycle. Writes
benchmarks/hw/bench_sim.json.

    python scripts/bench_sim.py [--cycles 200000]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.fileio import write_atomic  # noqa: E402
from scripts.provenance import host, today  # noqa: E402
from sim.runner import build_component, build_unit, run_tb  # noqa: E402
from sim.tb.bench_mac import MacBench  # noqa: E402
from sim.units import SIM_UNITS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "hw" / "bench_sim.json")
    args = ap.parse_args()
    # preloaded: the testbench harness around the array
    built = build_unit("mac4x4_w32")
    run_tb(built, "sim.tb.bench_mac", "bench_pre", jobs=(MacBench("preloaded", args.cycles),))
    pre = json.loads((built.build_dir / "bench_pre" / "bench_preloaded.json").read_text())
    # per cycle: the bare array as toplevel
    raw = build_component("mac4x4_w32_raw", SIM_UNITS["mac4x4_w32"].factory())
    run_tb(raw, "sim.tb.bench_mac", "bench_cyc", jobs=(MacBench("per_cycle", args.cycles),))
    per = json.loads((raw.build_dir / "bench_cyc" / "bench_per_cycle.json").read_text())
    result = {"design": "MacArray 4x4, int8 x int32, 32-bit acc", "preloaded": pre,
              "per_cycle_python": per, "speedup": round(pre["cycles_per_s"] / per["cycles_per_s"], 1),
              "host": host(), "date": today()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
