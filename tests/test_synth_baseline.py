"""Synthesis regression check against the committed baseline (benchmarks/hw/synth_baseline.json).

Cheap on purpose: yosys synth_ecp5 only (no place-and-route) of four small elementwise units;
a LUT4 / FF / DSP count more than 10 % above or below the baseline fails. maxpool_backward is among them
because its stalled-pipeline RTL crashed yosys 0.70's ABC (sim.synth.FLOWS has the fallback).
The full table with Fmax is made by `nitro synth` (sim.synth.synthesize) and committed as the
baseline per tool version.
"""
import json
import re

import pytest

from amaranth.back import verilog
from hw.rtl import make_unit
from model.paths import REPO
from sim.synth import ECP5, regressions, tool_versions, yosys_cells

BASELINE = REPO / "benchmarks" / "hw" / "synth_baseline.json"
SMALL = ["loss_gradient", "nitro_relu_forward", "maxpool_forward", "maxpool_backward"]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def test_the_newest_baseline_is_chosen_by_version_number():
    assert max(["Yosys 0.9", "Yosys 0.70", "Yosys 0.100+3"], key=version_key) == "Yosys 0.100+3"


@pytest.fixture(scope="module")
def baseline():
    doc = json.loads(BASELINE.read_text())
    tools = tool_versions()
    # keyed by tool version; another yosys may legitimately differ, so compare to the newest then
    # (by version number: "Yosys 0.100" is newer than "Yosys 0.99")
    entry = doc.get(tools["yosys"]) or doc[max(doc, key=version_key)]
    return {r["unit"]: r for r in entry["units"]}


@pytest.mark.parametrize("name", SMALL)
def test_no_resource_regression(name, baseline, tmp_path):
    v = tmp_path / f"{name}.v"
    v.write_text(verilog.convert(make_unit(name), name=name, platform=ECP5))
    got = yosys_cells(v, name, tmp_path)
    assert not regressions(got, baseline[name]), regressions(got, baseline[name])


def test_regression_is_flagged(baseline):
    """The comparison is not vacuous: 20 % more or fewer LUTs, or one more DSP, is reported."""
    base = baseline["loss_gradient"]
    assert regressions(dict(base), base) == []
    assert regressions({**base, "LUT4": int(base["LUT4"] * 1.2) + 2}, base)
    assert regressions({**base, "DSP": base["DSP"] + 1}, base)
    assert regressions({**base, "LUT4": int(base["LUT4"] * 0.8) - 2}, base)  # logic gone


def test_critical_path_summary():
    """synth.json's critical path: the worst clock-to-clock path of nextpnr's report (I/O paths,
    <async>, are not the clock's), split into logic and routing."""
    from sim.synth import critical_path

    def seg(kind, delay, a, b):
        return {"type": kind, "delay": delay, "from": {"cell": a}, "to": {"cell": b}}

    clk = "posedge $glbnet$clk"
    report = {"critical_paths": [
        {"from": "<async>", "to": clk, "path": [seg("routing", 9.0, "pin", "ff0")]},
        {"from": clk, "to": clk, "path": [seg("clk-to-q", 0.5, "ff1", "ff1"),
                                          seg("routing", 2.5, "ff1", "lut"),
                                          seg("logic", 0.4, "lut", "lut"),
                                          seg("routing", 1.0, "lut", "ff2"),
                                          seg("setup", 0.1, "ff2", "ff2")]},
    ]}
    cp = critical_path(report)
    assert cp == {"from": "ff1", "to": "ff2", "delay_ns": 4.5, "logic_ns": 1.0, "routing_ns": 3.5,
                  "cells": 3, "longest_net_ns": 2.5}
    assert critical_path({"critical_paths": report["critical_paths"][:1]}) is None


def test_engine_late_endpoints():
    """synth.json's late endpoints: every register input arriving after the period, grouped by
    register (indices and yosys' FF-cell suffix removed) and input kind, worst group first;
    on-time ones and output pins (the synthesis wrapper's I/O paths) left out."""
    from sim.engine.synth import late_endpoints

    def ep(cell, delay, port="DI"):
        return {"cell": cell, "port": port, "event": "posedge clk", "delay": delay}

    report = {"detailed_net_timings": [
        {"net": "a", "event": "posedge clk", "endpoints": [ep("engine.acc_1_2_TRELLIS_FF_Q_7", 7.0),
                                   ep("engine.acc_3_4_TRELLIS_FF_Q", 6.9),
                                   ep("engine.acc_0_0_TRELLIS_FF_Q_1", 6.0)]},
        {"net": "b", "event": "posedge clk", "endpoints": [ep("engine.wr_en$ff2", [3.0, 8.25])]},  # [min, max]
        {"net": "e", "event": "posedge clk", "endpoints": [ep("engine.acc_5_6_TRELLIS_FF_Q", 7.5, "CE"),
                                                           ep("engine.acc_5_7_TRELLIS_FF_Q", 6.0, "CE")]},
        {"net": "f", "event": "posedge clk", "endpoints": [ep("engine.buf.storage.0.1", 6.8, "WAD2"),
                                                           ep("engine.buf.storage.3.0", 6.9, "WAD0")]},
        {"net": "rst", "event": "<async>", "endpoints": [ep("engine.seq_state_TRELLIS_FF_Q", 12.0)]},
        {"net": "c", "event": "posedge clk", "endpoints": [ep("m_axi__wstrb[2]$tr_io", 12.2)]},  # a pin
    ]}
    got = late_endpoints(report, 6.667)
    assert got == {"period_ns": 6.667, "count": 6, "groups": [
        {"registers": "engine.wr_en", "input": "data", "endpoints": 1, "worst_arrival_ns": 8.25},
        {"registers": "engine.acc_#_#", "input": "enable", "endpoints": 1, "worst_arrival_ns": 7.5},
        {"registers": "engine.acc_#_#", "input": "data", "endpoints": 2, "worst_arrival_ns": 7.0},
        {"registers": "engine.buf.storage.#.#", "input": "RAM write address", "endpoints": 2,
         "worst_arrival_ns": 6.9}]}
    assert late_endpoints(report, 9.0)["count"] == 0


def test_engine_unrouted_report(tmp_path):
    """A route stopped by its time limit: router1's last progress line (iteration, arcs left),
    the packed resources and the pre-route estimate from pnr.log; no Fmax."""
    from sim.engine.synth import unrouted_report

    (tmp_path / "pnr.log").write_text(
        "Info:          DP16KD:   160/  208    76%\n"
        "Info:      MULT18X18D:   137/  156    87%\n"
        "Info: Max frequency for clock '$glbnet$clk': 68.88 MHz (FAIL at 150.00 MHz)\n"
        "Info:     1000 |      0       1000 |    0  1000 |    119000|       0.52       0.52|\n"
        "Info:   310000 |  85373     220685 |  286   714 |     58455|      29.59    2229.78|\n")
    r = unrouted_report(tmp_path, 44.6)
    assert r["fmax_mhz"] is None and (r["router_iterations"], r["arcs_left"]) == (310000, 58455)
    assert r["status"] == ("not routed: stopped after 45 min of nextpnr, router1 at iteration 310000 "
                           "with 58455 arcs left to route")
    assert r["utilization"]["DP16KD"] == {"used": 160, "available": 208, "percent": 76.9}
    assert r["pre_route_fmax_estimate_mhz"] == 68.88


@pytest.mark.parametrize("left, routed", [(900, True), (58455, False)])
def test_route_near_done_gets_grace(tmp_path, monkeypatch, left, routed):
    """At its time limit a route with at most GRACE_ARCS arcs left is given more time (and
    finishes here); one further from done is stopped."""
    import subprocess

    from sim.engine import synth

    monkeypatch.setattr(synth, "GRACE", 10.0)
    (tmp_path / "pnr.log").write_text(
        f"Info:   310000 |  85373     220685 |  286   714 |     {left:5d}|      29.59    2229.78|\n")
    proc = subprocess.Popen(["sleep", "3"])
    assert synth._wait_routed(proc, tmp_path / "pnr.log", 1.0) is routed
    assert proc.returncode == (0 if routed else -9)


def test_route_stopped_before_its_log(tmp_path):
    """Stopped at its limit before router1 wrote a line (no pnr.log yet): no grace, and the
    process does not outlive the wait."""
    import subprocess

    from sim.engine import synth

    proc = subprocess.Popen(["sleep", "30"])
    assert synth._wait_routed(proc, tmp_path / "pnr.log", 0.5) is False
    assert proc.returncode == -9
