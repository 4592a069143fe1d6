"""Where nextpnr put the engine: every cell's tile on the die, by unit (the MAC array, each
scratchpad, the output ops, the DMA...), how far each unit spreads, and the late register inputs
between units (which unit drives them, which unit they are in, how many tiles apart). Routing is
most of every late path on the full engine, so the question timing closure asks is which unit
pairs sit far apart: `floorplan.png` shows it, `floorplan()` counts it.

Reads nextpnr's written netlist (`--write`: each cell's NEXTPNR_BEL, "X<x>/Y<y>/<bel>") and its
report (`--report` with `--detailed-timing-report`: each net's driver and its endpoints' arrival
times; the critical path with each cell's location).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from hw.engine.params import MEM_NAMES

# the unit of a cell: the engine's core parts by their submodule's name (a scratchpad by its
# memory's, the output ops by op), everything else under `engine.` is the DMA, AXI and control side
_CORE = re.compile(r"^\\?engine\.core\.(\w+?)(?:\$\d+)?\.(?:(\w+?)(?:\$\d+)?\.)?")
_ENGINE = re.compile(r"^\\?engine\.")
OTHER, DMA = "other", "dma/axi/control"
CONSTANTS = ("$PACKER_GND", "$PACKER_VCC")  # nextpnr-ecp5's constant-0 and constant-1 LUTs


def unit_of(cell: str) -> str:
    m = _CORE.match(cell)
    if m:
        part, sub = m.groups()
        if part == "spads" and sub in MEM_NAMES.values():
            return sub
        return f"{part}.{sub}" if part == "ops" and sub else part
    return DMA if _ENGINE.match(cell) else OTHER


def cell_tiles(netlist: dict, top: str = "top") -> dict[str, tuple[int, int]]:
    """Every placed cell's tile (x, y) in a nextpnr-written netlist."""
    tiles = {}
    for name, cell in netlist["modules"][top]["cells"].items():
        bel = cell.get("attributes", {}).get("NEXTPNR_BEL", "")
        m = re.match(r"X(\d+)/Y(\d+)/", bel)
        if m:
            tiles[name] = (int(m.group(1)), int(m.group(2)))
    return tiles


def _distance(a: tuple[int, int], b: tuple[int, int]) -> int:
    """Manhattan distance in tiles."""
    return abs(b[0] - a[0]) + abs(b[1] - a[1])


def _by_unit(tiles: dict[str, tuple[int, int]]) -> dict[str, list[tuple[int, int]]]:
    """The placed cells' tiles by unit, the largest unit first."""
    by_unit: dict[str, list[tuple[int, int]]] = {}
    for name, xy in tiles.items():
        by_unit.setdefault(unit_of(name), []).append(xy)
    return dict(sorted(by_unit.items(), key=lambda kv: -len(kv[1])))


def long_connections(netlist: dict, tiles: dict[str, tuple[int, int]], min_tiles: int,
                     top: str = "top") -> list[tuple[str, str, int]]:
    """(driver cell, sink cell, Manhattan distance in tiles) of every placed connection at least
    `min_tiles` long, the clock's global network left out: what the placement alone says about
    the routes to come (nextpnr's pre-route estimate charges ~120 ps per tile). The packer's
    constant drivers are left out too: their nets have no timing."""
    cells = netlist["modules"][top]["cells"]
    drivers, sinks = {}, {}
    for name, c in cells.items():
        for port, bits in c.get("connections", {}).items():
            out = c.get("port_directions", {}).get(port) == "output"
            for b in bits:
                if isinstance(b, int):
                    if out:
                        drivers[b] = name
                    else:
                        sinks.setdefault(b, {})[name] = None  # in netlist order: a deterministic list
    found = []
    for b, drv in drivers.items():
        if cells[drv]["type"] == "DCCA" or drv in CONSTANTS or drv not in tiles:
            continue
        for snk in sinks.get(b, ()):
            if snk in tiles:
                d = _distance(tiles[drv], tiles[snk])
                if d >= min_tiles:
                    found.append((drv, snk, d))
    return found


def late_inputs(report: dict, period_ns: float) -> list[tuple[str, str, str, float]]:
    """(driver cell, endpoint cell, endpoint port, arrival ns) of every register input whose
    routed arrival exceeds `period_ns`, from nextpnr's --detailed-timing-report (nextpnr 0.11
    gives each endpoint's [min, max] arrival: clock-to-out + logic + routing, no setup). Nets
    driven by an input pin and endpoints at an output pin (the wrapper's I/O paths) are not the
    engine's clock-to-clock paths and are left out."""
    late = []
    for net in report.get("detailed_net_timings", []):
        if net["event"] == "<async>":
            continue
        for ep in net["endpoints"]:
            t = max(ep["delay"]) if isinstance(ep["delay"], list) else ep["delay"]
            if t > period_ns and not ep["cell"].endswith("$tr_io"):
                late.append((net.get("driver", ""), ep["cell"], ep.get("port", ""), t))
    return late


LONG_TILES = 40  # a third of the LFE5U-85F's width: ~5 ns of route in the pre-route estimate


def _measure(netlist: dict, report: dict, period_ns: float, top: str):
    """The placed cells' tiles, the late register inputs between placed cells (driver, endpoint,
    arrival) and the connections at least LONG_TILES long: what `floorplan` counts and
    `plot_floorplan` draws."""
    tiles = cell_tiles(netlist, top)
    late = [(d, e, t) for d, e, _, t in late_inputs(report, period_ns) if d in tiles and e in tiles]
    return tiles, late, long_connections(netlist, tiles, LONG_TILES, top)


def floorplan(netlist: dict, report: dict, period_ns: float, top: str = "top") -> dict:
    """Per unit its cell count, centre and spread (the tiles between the 5th and 95th percentile
    of its cells, in x and y); per (driving unit, endpoint unit) pair its late register inputs,
    the worst arrival and the median tile distance (Manhattan) from driver to endpoint (a routed
    run's), and its connections at least LONG_TILES long (placement alone)."""
    return _summary(*_measure(netlist, report, period_ns, top), period_ns)


def _summary(tiles, late_in, long_in, period_ns: float) -> dict:
    units = {}
    for u, xy in _by_unit(tiles).items():
        a = np.array(xy)
        lo, hi = np.percentile(a, 5, axis=0), np.percentile(a, 95, axis=0)
        units[u] = {"cells": len(xy), "centre": [round(float(v), 1) for v in a.mean(axis=0)],
                    "spread_tiles": [round(float(v), 1) for v in hi - lo]}
    pairs: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for drv, ep, t in late_in:
        pairs.setdefault((unit_of(drv), unit_of(ep)), []).append((t, _distance(tiles[drv], tiles[ep])))
    late = [{"from": a, "to": b, "inputs": len(v), "worst_arrival_ns": round(max(t for t, _ in v), 2),
             "median_distance_tiles": float(np.median([d for _, d in v]))}
            for (a, b), v in sorted(pairs.items(), key=lambda kv: (-max(t for t, _ in kv[1]), kv[0]))]
    spans: dict[tuple[str, str], list[int]] = {}
    for drv, snk, d in long_in:
        spans.setdefault((unit_of(drv), unit_of(snk)), []).append(d)
    long = [{"from": a, "to": b, "connections": len(v), "longest_tiles": max(v)}
            for (a, b), v in sorted(spans.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    xs, ys = zip(*tiles.values()) if tiles else ((0,), (0,))
    return {"die_tiles": [max(xs) + 1, max(ys) + 1], "period_ns": round(period_ns, 3),
            "cells_placed": len(tiles), "late_inputs": sum(p["inputs"] for p in late),
            "units": units, "late_by_unit_pair": late, "long_tiles": LONG_TILES,
            "long_connections": sum(p["connections"] for p in long), "long_by_unit_pair": long}


def plot_floorplan(tiles, late, long, period_ns: float, path: Path, title: str) -> None:
    """The die with every placed cell as a dot coloured by unit, and a line from driver to
    endpoint for every late register input (darker: later), or where the run was placed and not
    routed, for every connection at least LONG_TILES long (`_measure`'s lists)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 8.5))
    pairs = plt.get_cmap("tab20").colors  # dark hues first, then their light ones
    colors = pairs[0::2] + pairs[1::2] + plt.get_cmap("tab20b").colors[0::2]
    jitter = np.random.default_rng(0)  # cells share tiles: spread the dots inside their tile
    for k, (u, xy) in enumerate(_by_unit(tiles).items()):
        a = np.array(xy, dtype=float) + jitter.uniform(-0.4, 0.4, (len(xy), 2))
        ax.scatter(a[:, 0], a[:, 1], s=1.5, color=colors[k % len(colors)], label=f"{u} ({len(xy)})", alpha=0.6)
    if late:  # routed: the late register inputs, darker the later
        worst = max(t for *_, t in late)
        for d, e, t in sorted(late, key=lambda v: v[2]):
            f = (t - period_ns) / max(worst - period_ns, 1e-9)
            ax.plot([tiles[d][0], tiles[e][0]], [tiles[d][1], tiles[e][1]],
                    color=plt.cm.Reds(0.35 + 0.65 * f), lw=0.4 + f, alpha=0.7)
        ax.set_title(f"{title}: {len(late)} register inputs later than {period_ns:.2f} ns (red lines)")
    else:  # placed only: the long connections
        for d, e, _ in long:
            ax.plot([tiles[d][0], tiles[e][0]], [tiles[d][1], tiles[e][1]], color="0.2", lw=0.2, alpha=0.05)
        ax.set_title(f"{title}: {len(long)} connections >= {LONG_TILES} tiles (grey lines)")
    ax.set_xlabel("tile x")
    ax.set_ylabel("tile y")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=6, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)


def floorplan_files(out_dir: Path, period_ns: float, title: str, netlist_file: str = "routed.json",
                    report_file: str = "report.json") -> dict:
    """`floorplan` of a nextpnr run's folder (routed.json, or placed.json of a placement-only run),
    and its plot as floorplan.png there."""
    out = Path(out_dir)
    netlist = json.loads((out / netlist_file).read_text())
    report = json.loads((out / report_file).read_text())
    measured = _measure(netlist, report, period_ns, "top")
    plot_floorplan(*measured, period_ns, out / "floorplan.png", title)
    return _summary(*measured, period_ns)
