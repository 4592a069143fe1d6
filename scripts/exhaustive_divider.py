"""Exhaustive check of a generated 32-bit constant divider: all 2^32 inputs through the Verilog.

Builds the pipelined `hw.divider.ConstDivider` (or `hw.scaling.NitroScaling`) netlist with a plain
C++ Verilator harness (no cocotb), streams every int32 value at one per clock and compares each
output with C's truncating division (`/` on int64, which rounds toward zero): calling the golden
model once per input would take hours. So that this C expression is not a second, unchecked
definition, the harness also prints the divider's output for a sample (every 2^20-th input and
the corners around 0, +-d and the int32 ends), which `model.numerics.tdiv` must reproduce; and the
run passes only when the harness checked every input it was asked for. Bit-level formal proofs do
not finish at 32 bits, so this plus the z3 proof of the constants is the 32-bit sign-off.

    python scripts/exhaustive_divider.py --divisor 200704          # ~4-7 min on 2 cores
    python scripts/exhaustive_divider.py --divisor 7 --count 100000000   # a quick partial run
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from amaranth.back import verilog  # noqa: E402

from hw.divider import ConstDivider  # noqa: E402
from model.fileio import write_atomic  # noqa: E402
from model.numerics import tdiv  # noqa: E402
from scripts.provenance import host, today  # noqa: E402
from sim.runner import LINT_WAIVERS, build_root, setup_verilator  # noqa: E402

# Verilator mangles the double underscore of Amaranth port names (i__valid) into i___05Fvalid.
MAIN_CPP = r"""
#include "Vdut.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
static bool sampled(int64_t n, int64_t d) {
    const int64_t corners[] = {INT32_MIN, INT32_MIN + 1, -d - 1, -d, -d + 1, -1, 0, 1,
                               d - 1, d, d + 1, INT32_MAX - 1, INT32_MAX};
    for (int64_t c : corners) if (n == c) return true;
    return (n & 0xFFFFF) == 0;
}
int main(int argc, char** argv) {
    const int64_t d = atoll(argv[1]);
    const uint64_t count = strtoull(argv[2], nullptr, 10);   // inputs, from INT32_MIN upwards
    const int lat = LATENCY;
    Vdut* t = new Vdut;
    t->rst = 0; t->i___05Fvalid = 1; t->o___05Fready = 1; t->clk = 0; t->eval();
    uint64_t bad = 0, checked = 0;
    for (uint64_t k = 0; k < count + lat; ++k) {
        int32_t n = (int32_t)(uint32_t)(0x80000000u + (uint32_t)k);
        t->i___05Fpayload = (uint32_t)n;
        t->clk = 1; t->eval();
        t->clk = 0; t->eval();
        if (k + 1 >= (uint64_t)lat && k + 1 - lat < count) {
            int32_t m = (int32_t)(uint32_t)(0x80000000u + (uint32_t)(k + 1 - lat));
            int64_t want = (int64_t)m / d;
            int32_t got = (int32_t)t->o___05Fpayload;
            if (sampled(m, d)) printf("S %d %d\n", m, got);
            if (!t->o___05Fvalid || got != want) {
                if (bad < 10) printf("MISMATCH n=%d got=%d want=%lld\n", m, got, (long long)want);
                ++bad;
            }
            ++checked;
        }
    }
    printf("checked=%llu mismatches=%llu\n", (unsigned long long)checked, (unsigned long long)bad);
    delete t;
    return bad ? 1 : 0;
}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--divisor", type=int, default=200704, help="default: SF of a 784-input layer")
    ap.add_argument("--count", type=int, default=1 << 32, help="inputs from INT32_MIN (2^32 = all)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "hw" / "exhaustive_divider.json")
    args = ap.parse_args()
    setup_verilator()
    unit = ConstDivider(args.divisor, 32)
    wd = build_root() / f"exhaustive_div{args.divisor}"
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "dut.v").write_text(verilog.convert(unit, name="dut"))
    (wd / "main.cpp").write_text(MAIN_CPP.replace("LATENCY", str(unit.latency)))
    t0 = time.time()
    subprocess.run(["verilator", "--cc", "--exe", "--build", "-j", "2", "-O3", *LINT_WAIVERS,
                    "-CFLAGS", "-O2", "--top-module", "dut", "dut.v", "main.cpp"],
                   cwd=wd, check=True, capture_output=True)
    t_build = time.time() - t0
    t0 = time.time()
    r = subprocess.run([str(wd / "obj_dir" / "Vdut"), str(args.divisor), str(args.count)],
                       capture_output=True, text=True)
    t_run = time.time() - t0
    summary = [line for line in r.stdout.splitlines() if not line.startswith("S ")]
    print("\n".join(summary))
    samples = np.array([line.split()[1:] for line in r.stdout.splitlines() if line.startswith("S ")],
                       dtype=np.int64).reshape(-1, 2)
    golden_agrees = bool(len(samples)) and bool(np.array_equal(samples[:, 1],
                                                               tdiv(samples[:, 0], args.divisor)))
    m = re.search(r"checked=(\d+) mismatches=(\d+)", r.stdout)
    checked, mismatches = (int(m.group(1)), int(m.group(2))) if m else (0, None)
    vver = subprocess.run(["verilator", "--version"], capture_output=True, text=True).stdout.strip()
    result = {
        "unit": "ConstDivider", "divisor": args.divisor, "in_width": 32, "latency": unit.latency,
        "mult": unit.consts.mult, "shift": unit.consts.shift, "inputs": args.count,
        "checked": checked, "mismatches": mismatches,
        "exhaustive": checked == 1 << 32,
        "golden_model_samples": len(samples), "golden_model_agrees": golden_agrees,
        "passed": r.returncode == 0 and mismatches == 0 and checked == args.count and golden_agrees,
        "summary": summary[-1] if summary else r.stderr[-500:],
        "build_s": round(t_build, 1), "run_s": round(t_run, 1), "verilator": vver,
        "host": host(),
        "date": today(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps(result, indent=1))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
