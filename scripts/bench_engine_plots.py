"""The engine's records as figures, written with its README (`bench_engine_readme.write_readme`):
useful-MAC utilization per convolution GEMM against issue 14's target, and Fmax per nextpnr seed
of every routed netlist against the clock target."""
from __future__ import annotations

import json
from pathlib import Path

from hw.engine.params import CNN_WEIGHT_BITS, MLP_WEIGHT_BITS
from model.fileio import write_figure
from scripts.engine_records import LONG, OUT, VGG, cnn_file, conv_gemms, synth_name

CONV_UTIL_TARGET = 0.85  # issue 14, acceptance item 4: every conv GEMM, ideal memory
UTILIZATION_PNG, FMAX_PNG = "utilization.png", "fmax.png"


MODEL_PANELS = (VGG, "vgg8b_cifar10", "vgg11b_cifar10")  # (VGG8B F-MNIST's GEMMs are MNIST's)


def _conv_gemms() -> list[tuple[str, dict[str, float]]]:
    """(panel title, GEMM -> useful-MAC utilization of the core's cycles) for the measured
    cnn_small run and the paper CNNs' performance models, whichever is recorded (a network the
    engine refused has none)."""
    panels = []
    f = cnn_file(LONG)
    if f.exists():
        phases = json.loads(f.read_text())["phases"]
        panels.append((f"{LONG}, batch 64: RTL counters ({f.name})",
                       {k: v["mac_util"] for k, v in phases.items() if "conv_block" in k}))
    for config in MODEL_PANELS:
        f = OUT / f"{config}_model.json"
        if f.exists() and "gemms" in (r := json.loads(f.read_text())):
            panels.append((f"{config}, batch 64: performance model ({f.name})",
                           {k: v["core_util"] for k, v in conv_gemms(r["gemms"]).items()}))
    return panels


def _utilization_figure(plt, panels, out: Path) -> None:
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.2 + 0.32 * sum(len(g) for _, g in panels)),
                             gridspec_kw={"height_ratios": [len(g) for _, g in panels]}, squeeze=False)
    for ax, (title, gemms) in zip(axes[:, 0], panels):
        names, util = list(gemms), [100 * u for u in gemms.values()]
        colors = ["tab:green" if u >= 100 * CONV_UTIL_TARGET else "tab:red" for u in util]
        ax.barh(names, util, color=colors)
        ax.axvline(100 * CONV_UTIL_TARGET, color="k", ls="--", lw=1,
                   label=f"target {100 * CONV_UTIL_TARGET:.0f} %")
        for y, u in enumerate(util):
            ax.text(u + 0.5, y, f"{u:.1f}", va="center", fontsize=8)
        ax.set_xlim(0, 108)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.legend(loc="lower left", fontsize=8)
    axes[-1, 0].set_xlabel("useful-MAC utilization of the core's cycles (%), ideal memory")
    write_figure(out / UTILIZATION_PNG, fig)
    plt.close(fig)


def _routed_netlists() -> tuple[float | None, list[tuple[str, dict[str, float]]]]:
    """The clock target and (netlist, seed -> Fmax) of the landed engines' records and of every
    timing experiment that routed a seed."""
    rows, target = [], None
    for bits, what in ((MLP_WEIGHT_BITS, "MLP engine (landed)"), (CNN_WEIGHT_BITS, "CNN engine (landed)")):
        f = OUT / f"{synth_name(weight_bits=bits)}.json"
        if f.exists():
            r = json.loads(f.read_text())
            target = r["target_mhz"]
            rows.append((f"{what}, speed {r['speed']}",
                         {s: v["fmax_mhz"] for s, v in r["seeds"].items() if v["fmax_mhz"]}))
    f = OUT / "timing_experiments.json"
    if f.exists():
        r = json.loads(f.read_text())
        for e in r["experiments"] + r["flow_experiments"]:
            if e.get("seeds"):
                name = e["name"] if len(e["name"]) <= 48 else e["name"][:45] + "..."
                rows.append((name, {s: v["fmax_mhz"] for s, v in e["seeds"].items()}))
    return target, rows


def _fmax_figure(plt, target: float | None, rows, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.34 * len(rows)))
    for y, (_, seeds) in enumerate(rows):
        for s, f in seeds.items():
            ax.plot(f, y, "o", color=f"C{int(s) % 10}", label=f"seed {s}")
    if target:
        ax.axvline(target, color="k", ls="--", lw=1, label=f"target {target:.0f} MHz")
    handles = dict(sorted(zip(*reversed(ax.get_legend_handles_labels())),
                          key=lambda kv: (not kv[0].startswith("seed"), kv[0].split()[-1].zfill(3))))
    ax.legend(handles.values(), handles.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_yticks(range(len(rows)), [n for n, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Fmax after routing (MHz), LFE5U-85F")
    ax.grid(axis="x", alpha=0.3)
    write_figure(out / FMAX_PNG, fig)
    plt.close(fig)


def write_figures(out: Path = OUT) -> list[str]:
    """Write the figures the records allow into `out`; their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if panels := _conv_gemms():
        _utilization_figure(plt, panels, out)
        written.append(UTILIZATION_PNG)
    target, rows = _routed_netlists()
    if rows:
        _fmax_figure(plt, target, rows, out)
        written.append(FMAX_PNG)
    return written
