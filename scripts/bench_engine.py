"""Streaming-engine benchmarks recorded in benchmarks/engine/:

  cosim  : training steps of the paper's MNIST MLP (100) and F-MNIST MLP (20) at batch 64 on the
           Verilated engine, bit-checked against the golden model after every step, under the
           ideal memory and the DDR3-class model -> cosim_<config>_<N>steps_<memory>.json
  trained: the F-MNIST MLP's run (ideal memory) from a checkpoint trained one epoch on the golden
           model, every compared tensor varying -> cosim_<config>_<N>steps_ideal_trained.json
  cnn    : CNN training on the engine: configs/engine_cnn_mnist.toml (50 steps, batch 16,
           inference on 256 test images) and two steps of cnn_small_mnist at batch 64 (the
           current engine's cycles; `long` is the long run), per-phase cycles (the convolutions
           per layer), from the initial weights x64 (START_SCALE) so that every compared tensor
           varies -> cosim_<config>_<N>steps_b<batch>_ideal.json
  long   : cnn_small_mnist for 200 steps at batch 64 in two segments of 100 run side by side
           (`nitro cosim --start-step`; about 2 hours on two cores), the second followed by
           inference on 1000 test images -> cosim_cnn_small_mnist_steps<first>-<last>_b64_ideal.json
  conform: `nitro conform --engine` on the official sets mlp, mlp_warm1500, cnn and cnnx ->
           conform_<tag>.json
  vgg    : VGG8B MNIST: the performance model's cycles per step at batch
           64 for the ideal and the DDR3-class memory, per phase, and images/s at 150 MHz ->
           vgg8b_mnist_model.json; one training step of it at batch 8 on the Verilated engine
           from the initial weights x256, every compared tensor varying (about 16 minutes) ->
           cosim_vgg8b_mnist_1steps_b8_ideal.json
  model  : the performance model (hw.engine.perf) against those runs -> perf_model.json
  margin : the sequencer's flush without its margin (wait_cycles 0: the computed pipe depths must
           suffice), then shorter (down to -20) until a run differs from the golden model, a few
           steps of a CNN and an MLP -> flush_margin.json
  widths : the golden model in "check" mode with the engine's storage widths (int16 weights, int24
           deltas, or --weight-bits) over real training (--config, --epochs) -> widths.json for
           the MNIST MLP, widths_<config>_w<bits>.json otherwise; a value that does not fit is
           recorded
  synth  : yosys + nextpnr for LFE5U-85F with several nextpnr seeds (--jobs of them side by side;
           a seed already routed from the current RTL and pins is kept) -> synth_seed<K>.json and the
           summary synth.json (resources, Fmax per seed, projected images/s at the worst Fmax);
           --speed 7 or 8: the same on a faster speed grade -> synth_speed<G>_seed<K>.json and
           synth_speed<G>.json
  experiment: a netlist that was routed but did not land (a branch's bench_engine synth records,
           --records DIR, named by --name and described by --changes) added to
           timing_experiments.json beside the landed netlist's seeds; --flow (with --speed G for
           synth_speed<G> records): a netlist routed with another flow, under flow_experiments
  place  : yosys + nextpnr placement only (seed 1) -> synth_placed_seed1.json: resources and the
           pre-route Fmax estimate
  small  : the same engine with a quarter of the scratchpad depths, placed and routed (seed 1):
           how much of the Fmax the block RAMs' spread costs -> synth_small_seed1.json (not the
           whole engine: a timing probe)
  pinless: the whole engine with its AXI ports inside the chip (sim.engine.synth.EnginePinlessTop:
           no ring of 360 pins), placed and routed (--seeds, --speed): how much of the Fmax the pin
           ring costs -> routing_pinless_speed<G>_seed<K>.json (a timing probe, not the flow's top)
  ebr    : one memory bank (a single DP16KD) routed as yosys maps it and with its output register
           packed (sim.ebr_outreg) -> ebr_outreg.json: the Fmax ceiling of a block RAM read
  congestion: router2 on the whole engine for at most --minutes, with its congestion heatmaps ->
           routing_congestion_seed1.json: overused wires per iteration, where on the die and in
           which modules the overuse lies (Fmax when it routes)
  floorplan: where nextpnr put each unit of a routed seed (build/engine/synth_seed<K>, --seeds) and
           the late register inputs between units (sim.engine.floorplan) -> floorplan_seed<K>.json
           and .png (the synth mode does this for the seeds it routes)
  all    : every mode above but place, small, pinless, ebr, congestion and floorplan, then README.md

    .venv/bin/python scripts/bench_engine.py all [--data-dir ../shared/datasets] [--seeds 1 2 3]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hw.engine.memory_model import DDR3_TEXT
from hw.engine.params import EngineParams
from model.fileio import write_atomic
from model.paths import REPO, SHARED_DATASETS, SHARED_VECTORS
from scripts.provenance import commit
from sim.engine.device import DEVICE, SPEED_GRADES

OUT = REPO / "benchmarks" / "engine"
RUNS = {"mlp_mnist": 100, "mlp_fmnist": 20}  # config -> steps
MEMORIES = ("ideal", "ddr3")
WIDE = ("mlp_mnist",)  # also run on the engine generated with a 128-bit memory port
DEFAULT_DATA = SHARED_DATASETS


def cosim_file(config: str, memory: str, bus: int = 64) -> Path:
    wide = "" if bus == 64 else f"_bus{bus}"
    return OUT / f"cosim_{config}_{RUNS[config]}steps_{memory}{wide}.json"


def cosim_runs() -> list[tuple[str, str, int]]:
    """(config, memory model, bus width) of every recorded co-simulation."""
    return [(c, m, b) for c in RUNS for b in (64, 128) if b == 64 or c in WIDE for m in MEMORIES]


def bench_cosim(data_dir: str) -> list[Path]:
    from hw.engine.memory_model import MemoryModel

    return [_record_cosim(config, RUNS[config], data_dir, cosim_file(config, memory, bus),
                          memory=MemoryModel.parse(memory), test_images=256,
                          params=EngineParams(bus_bits=bus))
            for config, memory, bus in cosim_runs()]


def trained_file(config: str) -> Path:
    return OUT / f"cosim_{config}_{RUNS[config]}steps_ideal_trained.json"


TRAINED = ("mlp_fmnist",)  # from its initial weights, two block activations stay constant for 20 steps


def _require_varied(out: Path) -> Path:
    """`out`, a recorded co-simulation; SystemExit when some tensor it compared stayed one
    constant (it could not have shown most errors in what produced it)."""
    if const := json.loads(out.read_text())["constant_tensors"]:
        raise SystemExit(f"{out}: some compared tensors stayed constant: {', '.join(const)}")
    return out


def _data(config: str, data_dir: str) -> str | None:
    """The benchmarks' --data-dir as configs/<config>.toml reads it (not, for the embedded subset)."""
    from model.config import load_config
    from model.datasets import data_dir_for

    return data_dir_for(load_config(REPO / "configs" / f"{config}.toml").data.dataset, data_dir)


def scaled_start(config: str, scale: int, data_dir: str) -> Path:
    """A checkpoint of configs/<config>.toml before its first step holding its initial weights x
    `scale` (in build/scaled/)."""
    from model.train import save_start_checkpoint

    ck = REPO / "build" / "scaled" / f"{config}_x{scale}.npz"
    ck.parent.mkdir(parents=True, exist_ok=True)
    return save_start_checkpoint(REPO / "configs" / f"{config}.toml", ck, _data(config, data_dir), scale)


def _record_scaled(config: str, steps: int, data_dir: str, out: Path, **kw) -> Path:
    """`_record_cosim` from the initial weights x START_SCALE[config], every compared tensor
    varying."""
    scale = START_SCALE[config]
    ck = scaled_start(config, scale, data_dir)
    return _require_varied(_record_cosim(config, steps, data_dir, out, checkpoint=ck, **kw,
                                         stamp=_start_stamp(ck, f"the initial weights x{scale}")))


def _start_stamp(ck: Path, start: str) -> dict:
    """What a record started from: the checkpoint relative to the repository (not this
    machine's path), and what it holds."""
    return {"checkpoint": str(ck.relative_to(REPO)), "start": start}


def bench_trained(data_dir: str) -> list[Path]:
    """The TRAINED MLPs' recorded steps again, from a checkpoint trained one epoch on the golden
    model: from the initial weights some compared tensors stay one constant, where a wrong forward
    could not show."""
    from model.config import load_config
    from model.train import CHECKPOINT, train

    outs = []
    for config in TRAINED:
        run = REPO / "build" / "trained" / config
        ck = run / CHECKPOINT
        if not ck.exists():
            train(load_config(REPO / "configs" / f"{config}.toml"), run, data_dir, epochs=1, force=True)
        outs.append(_require_varied(_record_cosim(
            config, RUNS[config], data_dir, trained_file(config), test_images=256, checkpoint=ck,
            stamp=_start_stamp(ck, "a checkpoint trained one epoch on the golden model"))))
    return outs


# the flush margin: config -> (batch, steps) run on engines with less of it; the margins tried
MARGIN_RUNS = {"engine_cnn_mnist": (16, 3), "mlp_mnist": (64, 3)}
MARGINS = (0, -1, -2, -4, -8, -12, -16, -20)


def bench_margin(data_dir: str) -> Path:
    """The sequencer waits a computed flush after each command (`core.command_flush`: each
    pipe's depth behind the drain plus `wait_cycles` (2), at least the next command's fetch).
    MARGIN_RUNS co-simulated (from the initial weights x64) on engines generated with less
    margin, MARGINS in turn, until a run differs from the golden model: at 0 the computed
    depths must suffice; some shorter flush must be caught, or these runs could not show a flush
    that is too short. The record brackets how many cycles the computed flush has to spare."""
    from dataclasses import replace

    from hw.engine.core import command_flush
    from sim.engine.cosim import run_cosim

    zero = vars(command_flush(replace(EngineParams(), wait_cycles=0)))
    res = {"default_wait_cycles": EngineParams().wait_cycles, "start": "the initial weights x64",
           "flush": {}, "under": {}, "runs": {}, "commit": commit()}
    starts = {config: scaled_start(config, 64, data_dir) for config in MARGIN_RUNS}
    for wait in MARGINS:
        p = replace(EngineParams(), wait_cycles=wait)
        res["flush"][wait] = vars(command_flush(p))
        # cycles under the computed depth per command kind (the fetch floors some)
        res["under"][wait] = {k: zero[k] - v for k, v in res["flush"][wait].items()}
        for config, (batch, steps) in MARGIN_RUNS.items():
            out = REPO / "build" / "margin" / f"{config}_wait{wait}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            run_cosim(REPO / "configs" / f"{config}.toml", steps, _data(config, data_dir), out,
                      progress=True, batch=batch, params=p, checkpoint=starts[config])
            r = json.loads(out.read_text())
            res["runs"][f"{config} wait_cycles={wait}"] = {
                "wait_cycles": wait, "ok": r["ok"], "steps_run": r["steps_run"], "batch": batch,
                "mismatch": r.get("mismatch"), "constant_tensors": r["constant_tensors"],
                "cycles_per_step": r.get("cycles_per_step")}
        if not all(v["ok"] for v in res["runs"].values()):
            break
    runs = res["runs"].values()
    # a run whose compared tensors stayed constant could not have shown a difference
    res["sufficient_without_margin"] = all(v["ok"] and not v["constant_tensors"] for v in runs
                                           if v["wait_cycles"] == 0)
    failed = [v["wait_cycles"] for v in runs if not v["ok"]]
    res["first_caught"] = max(failed) if failed else None
    res["all_identical_down_to"] = min((w for w in res["flush"] if w not in failed), default=None)
    f = OUT / "flush_margin.json"
    write_atomic(f, json.dumps(res, indent=1).encode())
    if not res["sufficient_without_margin"] or not failed:
        raise SystemExit(f"{f}: the computed flush does not suffice, or no run caught a shorter one")
    return f


def _stamp(out: Path, **extra) -> dict:
    """Add the commit (and `extra`) to a recorded result."""
    res = json.loads(out.read_text()) | {"commit": commit(), **extra}
    write_atomic(out, json.dumps(res, indent=1).encode())
    return res


def _record_cosim(config: str, steps: int, data_dir: str, out: Path, stamp: dict | None = None,
                  **kw) -> Path:
    """`steps` co-simulated steps of configs/<config>.toml recorded in `out` (with the wall time
    including the engine build, the commit and `stamp`); SystemExit when the engine and the
    golden model differ."""
    from sim.engine.cosim import run_cosim

    t0 = time.perf_counter()
    rc = run_cosim(REPO / "configs" / f"{config}.toml", steps, _data(config, data_dir), out, progress=True,
                   **kw)
    res = _stamp(out, total_wall_s_incl_build=round(time.perf_counter() - t0, 1), **(stamp or {}))
    if rc:
        raise SystemExit(f"cosim failed: {res.get('message')}")
    return out


def bench_model() -> Path:
    """The performance model's prediction against every recorded co-simulation (both MLPs, both
    memory models): cycles per step and per unit."""
    runs = {}
    for config, memory, bus in cosim_runs():
        f = cosim_file(config, memory, bus)
        if not f.exists():
            raise SystemExit(f"{f} is missing: run `bench_engine.py cosim` first")
        r = json.loads(f.read_text())
        pr = r["predicted"]
        runs[f"{config} {memory}" + ("" if bus == 64 else f" {bus}-bit")] = {
            "predicted": pr["cycles_per_step"], "measured": r["cycles_per_step"],
            "error": pr["cycles_per_step"] / r["cycles_per_step"] - 1,
            "units": {k: {"predicted": v, "measured": r["units"][k]} for k, v in pr["units"].items()}}
    out = OUT / "perf_model.json"
    ceilings = {config: utilization_ceiling(config) for config in RUNS}
    write_atomic(out, json.dumps({"model": "hw/engine/perf.py", "runs": runs,
                                  "utilization_ceiling": ceilings}, indent=1).encode())
    return out


def utilization_ceiling(config: str) -> dict:
    """What bounds useful-MAC utilization with the ideal memory, from the recorded run: the core's
    own cycles (array-side padding, output ops slower than K, per-command overhead) and, in a step
    that starts cold, the first run's loads, which nothing overlaps (one beat per cycle)."""
    from hw.engine.program import beats_per_word

    r = json.loads(cosim_file(config, "ideal").read_text())
    p = EngineParams(**r["params"])
    useful = r["useful_macs_per_step"] / (p.rows * p.cols)
    core = r["gemm_cycles_per_step"] + r["phases"]["control"]["cycles"]
    ep = _program(config, r["batch"], p)
    first = sum(x.words * beats_per_word(p, x.sel) for x in ep.runs[0].loads)
    return {"useful_mac_cycles": useful, "core_cycles": core, "first_run_load_beats": first,
            "core_bound": useful / core, "with_first_load": useful / (core + first),
            "measured": r["mac_util"]}


def _program(config: str, batch: int, p):
    from hw.engine.compiler import compile_network
    from hw.engine.tiling import lower
    from model.config import load_config
    from model.datasets import image_shape

    cfg = load_config(REPO / "configs" / f"{config}.toml")
    return lower(compile_network(cfg.build_spec(image_shape(cfg.data.dataset)), batch, p))


WIDTHS_NOTE = (
    "Weights: the decay term tdiv(W, eta) pulls every |W| >= eta back by >= 1 per step, so eta "
    "(decay_inv) is a soft bound (spec 4.1: the reference's fully trained MLP has max |W| 11 999 for "
    "eta 12 000); transient excursions above eta occur (see max_abs_weight), which is why a layer "
    "with eta 30 000 does not fit int16. Learning-layer deltas: |delta_p| <= classes * 128 * "
    "max|W_l| (delta_p_bound). Check mode raises on the first value beyond the declared widths; "
    "on the engine such a value would also show up as a cosim mismatch.")


# CNNs: config -> (batch, steps, test images); the ideal memory
CNN_RUNS = {"engine_cnn_mnist": (16, 50, 256), "cnn_small_mnist": (64, 2, 0)}
VGG = "vgg8b_mnist"
# The short CNN records start from the initial weights x this: at their own scale most scaled
# outputs round to 0 and some compared tensors stay one constant (VGG8B's learning layers even
# x64). The long run starts from the initial weights themselves: over 200 steps they all vary.
START_SCALE = {"engine_cnn_mnist": 64, "cnn_small_mnist": 64, VGG: 256}
# the long CNN run: config, steps, segments side by side, test images after the last
LONG, LONG_STEPS, LONG_SEGMENTS, LONG_TEST = "cnn_small_mnist", 200, 2, 1000


def cnn_file(config: str) -> Path:
    batch, steps, _ = CNN_RUNS[config]
    return OUT / f"cosim_{config}_{steps}steps_b{batch}_ideal.json"


def bench_cnn(data_dir: str) -> list[Path]:
    """CNN training on the Verilated engine, bit-checked after every step: the shipped
    configs/engine_cnn_mnist.toml (50 steps, then the inference program on 256 test images) and
    configs/cnn_small_mnist.toml (2 steps at its batch of 64), from `scaled_start`'s weights."""
    return [_record_scaled(config, steps, data_dir, cnn_file(config), batch=batch, test_images=test)
            for config, (batch, steps, test) in CNN_RUNS.items()]


def long_files() -> list[Path]:
    n = LONG_STEPS // LONG_SEGMENTS
    return [OUT / f"cosim_{LONG}_steps{s:03d}-{s + n - 1:03d}_b64_ideal.json"
            for s in range(0, LONG_STEPS, n)]


def bench_long(data_dir: str) -> list[Path]:
    """configs/cnn_small_mnist.toml for LONG_STEPS steps at its batch of 64, in segments run side
    by side, one `nitro cosim` process per core: each has the golden model train the steps before
    it alone and the engine take its weights there (`--start-step`), so each step runs on the
    engine from the weights the step before produced, which the segment before checked
    bit-identical. The last segment then runs inference on LONG_TEST test images."""
    n = LONG_STEPS // LONG_SEGMENTS
    procs = []
    for k, f in enumerate(long_files()):
        cmd = [sys.executable, "-m", "scripts.cli", "cosim", "--config",
               str(REPO / "configs" / f"{LONG}.toml"), "--steps", str(n), "--start-step", str(k * n),
               "--data-dir", data_dir, "--out", str(f), "--no-progress", "--force"]
        if k == LONG_SEGMENTS - 1:
            cmd += ["--test-images", str(LONG_TEST)]
        procs.append(subprocess.Popen(cmd, cwd=REPO))
    if any(p.wait() for p in procs):
        raise SystemExit(f"{LONG}: a segment of the long run failed (see its output above)")
    for k, f in enumerate(long_files()):
        _require_varied(f)
        _stamp(f, start=_long_start(k * n))
    return long_files()


def _long_start(step: int) -> str:
    return ("the initial weights" if step == 0 else
            f"the golden model's weights after {step} steps from the initial weights")


VGG_RTL_BATCH = 8  # one step at batch 64 is ~1.5 G cycles: about 2 hours of simulation
TARGET_MHZ = 150.0


def bench_vgg(data_dir: str) -> list[Path]:
    """VGG8B MNIST: the compiled program's predicted cycles per step (batch 64, both memory
    models, per phase with the useful-MAC utilization of its GEMMs) and images/s at the 150 MHz
    target; then one step at batch 8 from `scaled_start`'s weights co-simulated and bit-checked."""
    from hw.engine.perf import predict, run_cycles
    from hw.engine.memory_model import DDR3, MemoryModel

    p = EngineParams()
    t0 = time.perf_counter()
    ep = _program(VGG, 64, p)
    compile_s = time.perf_counter() - t0
    macs = ep.prog.macs
    warm = ep.prefetch is not None  # steps back to back: the steady state starts warm
    res = {"config": VGG, "batch": 64, "tiles": len(ep.tiles), "runs": len(ep.runs),
           "compile_s": round(compile_s, 1), "target_mhz": TARGET_MHZ, "warm": warm,
           "useful_macs_per_step": sum(macs.values()), "memories": {}, "commit": commit()}
    for name, mm in (("ideal", MemoryModel()), ("ddr3", DDR3)):
        pr = predict(ep, mm, warm)
        res["memories"][name] = {
            "cycles_per_step": pr.cycles, "units": pr.units,
            "img_s_at_target": round(64 * TARGET_MHZ * 1e6 / pr.cycles, 2),
            "mac_util": sum(macs.values()) / (p.rows * p.cols * pr.cycles),
            "phases": {ph: {"cycles": c, "util": macs.get(ph, 0) / (p.rows * p.cols * c) if c else 0.0}
                       for ph, c in pr.phases.items()}}
    layers: dict[str, dict] = {}  # per GEMM of the step: the core's cycles (loads overlapped)
    for run in ep.runs:
        for t, c in zip(run.tiles, run_cycles(run, p)):
            d = layers.setdefault(t.parent.name, {"core_cycles": 0, "useful_macs": 0})
            d["core_cycles"] += c
    for g in ep.prog.gemms:
        layers[g.name]["useful_macs"] += g.m * g.n * g.k
    res["gemms"] = {k: v | {"core_util": v["useful_macs"] / (p.rows * p.cols * v["core_cycles"])}
                    for k, v in layers.items()}
    out = OUT / f"{VGG}_model.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    rtl = _record_scaled(VGG, 1, data_dir, OUT / f"cosim_{VGG}_1steps_b{VGG_RTL_BATCH}_ideal.json",
                         batch=VGG_RTL_BATCH)
    return [out, rtl]


OFFICIAL_SETS = ("mlp", "mlp_warm1500", "cnn", "cnnx")  # the official implementation's vectors (../shared/refvectors)


def bench_conform(vec_dir: Path) -> list[Path]:
    """`nitro conform --engine` on the official sets (the CNN ones about a minute of simulation
    each: a benchmark, while CI replays the MLP sets and a smaller CNN set the golden model
    exports) ->
    conform_<tag>.json: arrays compared and differing per step, the set's arrays that hold one
    value throughout, the simulation time."""
    from model.conform import constant_arrays, load_set
    from sim.engine.conform import run_engine_conformance

    outs = []
    for tag in OFFICIAL_SETS:
        t0 = time.perf_counter()
        reports = run_engine_conformance(vec_dir, tag)
        res = {"set": tag, "vector_dir": str(vec_dir), "wall_s": round(time.perf_counter() - t0, 1),
               "steps": {r.step: {"arrays": r.arrays, "differ": len(r.mismatches)}
                         for r in reports},
               "ok": not any(r.mismatches for r in reports),
               "constant_arrays": constant_arrays(load_set(vec_dir, tag)), "commit": commit()}
        out = OUT / f"conform_{tag}.json"
        write_atomic(out, json.dumps(res, indent=1).encode())
        if not res["ok"]:
            raise SystemExit(f"conform --engine {tag}: arrays differ")
        outs.append(out)
    return outs


def widths_file(config: str, weight_bits: int) -> Path:
    if config == "mlp_mnist" and weight_bits == 16:
        return OUT / "widths.json"
    return OUT / f"widths_{config}_w{weight_bits}.json"


def bench_widths(config: str, epochs: int, data_dir: str, weight_bits: int | None = None) -> Path:
    """Train the golden model with the engine's widths in check mode; record the extremes, or the
    first value that does not fit."""
    from dataclasses import replace

    from model.config import load_config
    from model.numerics import WidthOverflowError, Widths
    from model.train import train

    p = EngineParams()
    if weight_bits is not None:
        p = replace(p, weight_bits=weight_bits)
    cfg = load_config(REPO / "configs" / f"{config}.toml")
    widths = Widths(weight=p.weight_bits, delta=p.delta_bits)
    cfg = replace(cfg, numerics=replace(cfg.numerics, mode="check", widths=widths))
    run_dir = REPO / "build" / "engine" / f"widths_run_{config}"
    if (run_dir / "checkpoint.npz").exists():
        (run_dir / "checkpoint.npz").unlink()
    t0 = time.perf_counter()
    out = widths_file(config, p.weight_bits)
    head = {"config": cfg.name, "epochs": epochs, "mode": "check",
            "declared_widths": {"weight": p.weight_bits, "delta": p.delta_bits}}
    try:
        res = train(cfg, run_dir, _data(config, data_dir), epochs=epochs, progress=True)
    except WidthOverflowError as e:
        doc = {**head, "seconds": round(time.perf_counter() - t0, 1), "overflows": 1,
               "first_overflow": str(e)}
        write_atomic(out, json.dumps(doc, indent=1).encode())
        print(json.dumps(doc, indent=1))
        return out
    net = res.network
    spec = net.spec
    maxw = {k: int(np.abs(v).max()) for k, v in net.params.items()}
    learn = [b.pred.name for b in spec.blocks.values()]
    doc = {
        **head, "seconds": round(time.perf_counter() - t0, 1),
        "overflows": 0,  # check mode raises on the first value that does not fit
        "max_abs_weight": maxw,
        "decay_inv": {b.layer.name: b.layer.decay_inv for b in spec.blocks.values()}
                     | {b.pred.name: b.pred.decay_inv for b in spec.blocks.values()}
                     | {spec.output.name: spec.output.decay_inv},
        "delta_p_bound": {n: spec.num_classes * 128 * maxw[n] for n in learn},
        "best_test_acc": res.best_test_acc,
        "note": WIDTHS_NOTE,
    }
    write_atomic(out, json.dumps(doc, indent=1).encode())
    print(json.dumps(doc, indent=1))
    return out


def golden_img_s(data_dir: str) -> tuple[float, str]:
    from sim.engine.synth import recorded_golden_img_s

    rec = recorded_golden_img_s()
    if rec is not None:
        return rec, "benchmarks/bench_train.json"
    from scripts.bench_train import _rate

    r = _rate("mlp_mnist", 200, 20, data_dir)
    return float(r["images_per_s"]), "measured by scripts/bench_engine.py (scripts.bench_train._rate, 200 steps)"


def _route_seed(seed: int, minutes: float | None, speed: int = DEVICE["speed"]) -> dict:
    from sim.engine.synth import synthesize_engine

    res = synthesize_engine(_seed_dir(seed, speed), seed=seed, route_minutes=minutes, project=False,
                            speed=speed)
    write_atomic(OUT / f"{_synth_name(speed)}_seed{seed}.json", json.dumps(res, indent=1).encode())
    if res.get("floorplan") and speed == DEVICE["speed"]:
        _record_floorplan(seed, res["floorplan"])
    return res


def _synth_name(speed: int = DEVICE["speed"]) -> str:
    """The records' name: synth for the target speed grade, synth_speed<G> for another."""
    return "synth" if speed == DEVICE["speed"] else f"synth_speed{speed}"


def _seed_dir(seed: int, speed: int = DEVICE["speed"]) -> Path:
    return REPO / "build" / "engine" / f"{_synth_name(speed)}_seed{seed}"


def _record_floorplan(seed: int, fp: dict) -> Path:
    """floorplan_seed<K>.json (with the RTL it is of) and the plot beside it."""
    from sim.engine.synth import verilog_digest

    out = OUT / f"floorplan_seed{seed}.json"
    fmax = json.loads((_seed_dir(seed) / "report.json").read_text())["fmax"]
    fp = {"seed": seed, "fmax_mhz": round(min(v["achieved"] for v in fmax.values()), 2),
          "verilog_sha256": verilog_digest((_seed_dir(seed) / "top.v").read_text()), **fp}
    write_atomic(out, json.dumps(fp, indent=1).encode())
    write_atomic(out.with_suffix(".png"), (_seed_dir(seed) / "floorplan.png").read_bytes())
    return out


def bench_floorplan(seed: int) -> Path:
    """The floorplan of a seed already routed in build/engine/synth_seed<K>."""
    from sim.engine.floorplan import floorplan_files

    d = _seed_dir(seed)
    if not (d / "routed.json").exists():
        raise SystemExit(f"bench_engine: error: {d} holds no routed engine (run the synth mode)")
    return _record_floorplan(seed, floorplan_files(d, 1e3 / TARGET_MHZ, f"engine, nextpnr seed {seed}"))


def bench_synth(seeds: list[int], data_dir: str, jobs: int = 1, minutes: float | None = None,
                speed: int = DEVICE["speed"]) -> Path:
    """Route the engine once per nextpnr seed, `jobs` seeds at a time (each nextpnr is one
    thread), each stopped after `minutes` (a "not routed" record); a seed whose record
    (synth_seed<K>.json) was made from this RTL's Verilog and pin constraints is kept.
    synth.json: every seed's Fmax, critical path and routing time, the resources, and the
    training throughput projected at the worst Fmax. Another speed grade than the target's:
    the same as synth_speed<G>_seed<K>.json and synth_speed<G>.json."""
    from concurrent.futures import ProcessPoolExecutor

    from sim.engine.synth import engine_lpf, engine_verilog, share_netlist, verilog_digest

    img_s, src = golden_img_s(data_dir)
    current = (verilog_digest(engine_verilog(EngineParams())),
               hashlib.sha256(engine_lpf(EngineParams()).encode()).hexdigest())
    runs = {}
    for seed in seeds:
        f = OUT / f"{_synth_name(speed)}_seed{seed}.json"
        if f.exists():
            rec = json.loads(f.read_text())
            if (rec.get("verilog_sha256"), rec.get("lpf_sha256")) == current:
                runs[seed] = rec
    todo = [s for s in seeds if s not in runs]
    if todo:
        share_netlist([_seed_dir(s, speed) for s in todo], EngineParams())
    with ProcessPoolExecutor(max(1, min(jobs, len(todo) or 1))) as pool:
        runs |= dict(zip(todo, pool.map(_route_seed, todo, [minutes] * len(todo), [speed] * len(todo))))
    runs = {s: runs[s] for s in seeds}
    routed = [r["fmax_mhz"] for r in runs.values() if r["fmax_mhz"] is not None]
    worst = min(routed) if routed else None
    first = runs[seeds[0]]
    summary = {k: first[k] for k in ("device", "package", "speed", "target_mhz", "utilization",
                                     "yosys_cells", "params") if k in first}
    summary["seeds"] = {str(s): {"fmax_mhz": r["fmax_mhz"], "meets_target": r["meets_target"],
                                 "critical_path": r["critical_path"], "nextpnr_s": r["nextpnr_s"],
                                 "status": r.get("status") or "routed",
                                 "late_inputs": r.get("late_endpoints", {}).get("count"),
                                 "late_groups": r.get("late_endpoints", {}).get("groups", [])[:8]}
                        for s, r in runs.items()}
    summary["verilog_sha256"], summary["lpf_sha256"] = first.get("verilog_sha256"), first.get("lpf_sha256")
    summary["worst_fmax_mhz"] = worst
    summary["golden_model_cpu_img_s"], summary["golden_model_cpu_img_s_source"] = img_s, src
    summary["projected_img_s_at_worst_fmax"] = {}
    for config, memory, bus in cosim_runs():
        f = cosim_file(config, memory, bus)
        if f.exists() and bus == summary["params"]["bus_bits"] and worst is not None:
            c = json.loads(f.read_text())
            summary["projected_img_s_at_worst_fmax"][f"{config} {memory}"] = round(
                worst * 1e6 / c["cycles_per_step"] * c["batch"], 1)
    out = OUT / f"{_synth_name(speed)}.json"
    write_atomic(out, json.dumps(summary, indent=1).encode())
    print(json.dumps(summary, indent=1))
    return out


EXPERIMENTS = OUT / "timing_experiments.json"


def seed_summary(rec: dict) -> dict:
    """One routed seed of a synth_seed<K>.json in brief: Fmax, routing time, critical path, the
    late register inputs and their six worst groups, the size, and which RTL it was."""
    cp = rec["critical_path"]
    return {"fmax_mhz": rec["fmax_mhz"], "nextpnr_minutes": round(rec["nextpnr_s"] / 60),
            "critical_path": f"{cp['delay_ns']} ns: {cp['from']} -> {cp['to']} ({cp['cells']} cells, "
                             f"routing {cp['routing_ns']} ns)",
            "late_inputs_at_150mhz": rec["late_endpoints"]["count"],
            "worst_groups": [f"{g['registers']} ({g['input']}): {g['endpoints']}, {g['worst_arrival_ns']} ns"
                             for g in rec["late_endpoints"]["groups"][:6]],
            "ff": rec["utilization"]["TRELLIS_FF"]["used"], "lut": rec["utilization"]["TRELLIS_COMB"]["used"],
            "verilog_sha256": rec["verilog_sha256"]}


def _routed_seeds(records: Path, speed: int = DEVICE["speed"]) -> dict[str, dict]:
    """The routed seeds of one netlist in `records` (records of two netlists side by side, e.g. a
    branch's beside the ones it was cloned with, are refused)."""
    seeds, name = {}, _synth_name(speed)
    for f in sorted(records.glob(f"{name}_seed*.json")):
        rec = json.loads(f.read_text())
        if rec.get("fmax_mhz") is not None:
            seeds[f.stem.removeprefix(f"{name}_seed")] = seed_summary(rec)
    if not seeds:
        raise SystemExit(f"no routed {name}_seed<K>.json in {records}")
    if len({v["verilog_sha256"] for v in seeds.values()}) > 1:
        raise SystemExit(f"the routed records in {records} are of different netlists: "
                         + ", ".join(f"seed {s}: {v['verilog_sha256'][:8]}" for s, v in seeds.items()))
    return seeds


def bench_experiment(name: str, changes: str, records: Path, speed: int = DEVICE["speed"],
                     flow: bool = False) -> Path:
    """timing_experiments.json with the experiment `name` (routed seeds from `records`, of speed
    grade `speed`) added or replaced (what else its entry holds, e.g. the seeds not routed, is
    kept), and the landed netlist's seeds (this checkout's records) as the baseline. `flow`: an
    experiment with the flow (a netlist routed another way), under flow_experiments."""
    doc = json.loads(EXPERIMENTS.read_text()) if EXPERIMENTS.exists() else {}
    doc["baseline"] = _routed_seeds(OUT)
    section = "flow_experiments" if flow else "experiments"
    old = {e["name"]: e for e in doc.get(section, [])}
    entry = {**old.get(name, {}), "name": name, "changes": changes,
             "seeds": _routed_seeds(records, speed)}
    doc[section] = [entry if e["name"] == name else e for e in old.values()] + (
        [] if name in old else [entry])
    write_atomic(EXPERIMENTS, (json.dumps(doc, indent=1) + "\n").encode())
    print({e["name"][:40]: {s: v["fmax_mhz"] for s, v in e.get("seeds", {}).items()} for e in doc[section]})
    return EXPERIMENTS


def bench_place(data_dir: str) -> Path:
    from sim.engine.synth import synthesize_engine

    img_s, _ = golden_img_s(data_dir)
    d = REPO / "build" / "engine" / "synth_place"
    res = synthesize_engine(d, seed=1, golden_img_s=img_s, route=False)
    out = OUT / "synth_placed_seed1.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    write_atomic(OUT / "floorplan_placed_seed1.png", (d / "floorplan.png").read_bytes())
    return out


def _floorplan_lines(fp: dict, png: str) -> list[str]:
    """Where the units landed (sim.engine.floorplan): cells and spread per unit, the unit pairs
    with the most long connections."""
    lines = [f"Where nextpnr put each unit (`{png}`; spread: the tiles between the 5th and 95th "
             f"percentile of its cells, on a {fp['die_tiles'][0]} x {fp['die_tiles'][1]}-tile die), "
             f"and the unit pairs with the most of the {fp['long_connections']:,} connections of at "
             f"least {fp['long_tiles']} tiles:", "",
             "| unit | cells | spread x | spread y |", "|---|---:|---:|---:|"]
    lines += [f"| {u} | {v['cells']} | {v['spread_tiles'][0]:.0f} | {v['spread_tiles'][1]:.0f} |"
              for u, v in list(fp["units"].items())[:12]]
    lines += ["", "| from | to | connections >= " + str(fp["long_tiles"]) + " tiles | longest |",
              "|---|---|---:|---:|"]
    lines += [f"| {p['from']} | {p['to']} | {p['connections']} | {p['longest_tiles']} |"
              for p in fp["long_by_unit_pair"][:10]]
    return lines + [""]


def bench_congestion(minutes: float, seed: int = 1) -> Path:
    from sim.engine.synth import route_congestion

    res = route_congestion(REPO / "build" / "engine" / f"congestion_seed{seed}", seed, minutes)
    out = OUT / f"routing_congestion_seed{seed}.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    _stamp(out)
    return out


SMALL_DIVISOR = 4
DEPTHS = ("amem_c_depth", "amem_r_depth", "wmem_depth", "wtmem_depth", "dmem_depth", "smem_depth",
          "ymem_depth")


def bench_small(data_dir: str, seed: int = 1) -> Path:
    from dataclasses import replace

    from sim.engine.synth import synthesize_engine

    p = EngineParams()
    small = replace(p, **{k: getattr(p, k) // SMALL_DIVISOR for k in DEPTHS})
    img_s, _ = golden_img_s(data_dir)
    res = synthesize_engine(REPO / "build" / "engine" / f"synth_small_seed{seed}", small, seed=seed,
                            golden_img_s=img_s)
    res["note"] = (f"timing probe: the engine with its scratchpad depths divided by {SMALL_DIVISOR}; "
                   "the cycles and projections are the whole engine's")
    out = OUT / f"synth_small_seed{seed}.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    return out


def pinless_file(seed: int, speed: int) -> Path:
    return OUT / f"routing_pinless_speed{speed}_seed{seed}.json"


def bench_pinless(seeds: list[int], speed: int) -> list[Path]:
    """EnginePinlessTop routed with the flow's options, one seed at a time: Fmax, critical path and
    late inputs beside the engine's own (the same Verilog inside)."""
    from sim.engine.synth import engine_verilog, synthesize_engine, verilog_digest

    outs, engine_sha = [], verilog_digest(engine_verilog(EngineParams()))
    for seed in seeds:
        res = synthesize_engine(REPO / "build" / "engine" / f"pinless_speed{speed}_seed{seed}", seed=seed,
                                speed=speed, project=False, pinless=True)
        rec = {"seed": seed, "speed": speed, "engine_verilog_sha256": engine_sha,
               **seed_summary(res), "utilization": res["utilization"], "commit": commit()}
        write_atomic(out := pinless_file(seed, speed), json.dumps(rec, indent=1).encode())
        outs.append(out)
    return outs


def _pinned_record(seed: int, speed: int) -> dict | None:
    """The recorded route of the engine with its pins for this seed and speed grade, if any."""
    f = OUT / f"{_synth_name(speed)}_seed{seed}.json"
    return json.loads(f.read_text()) if f.exists() else None


def _pinless_lines() -> list[str]:
    """The pinless timing probe beside the engine's routed seeds."""
    recs = [json.loads(f.read_text()) for f in sorted(OUT.glob("routing_pinless_speed*_seed*.json"))]
    if not recs:
        return []
    lines = ["## routing_pinless_speed<G>_seed<K>.json: the engine without its pin ring (timing probe)", "",
             "The same engine with its AXI ports inside the chip, as in an SoC "
             "(`sim.engine.synth.EnginePinlessTop`: each channel's inputs from a shift register, its "
             "outputs folded by registered XORs into one pin), placed and routed with the flow's "
             "options. Against the seeds of synth.json (the 360 AXI pins), it shows how much of the "
             "Fmax the pin ring costs.", "",
             "| speed | seed | Fmax (MHz) | with the pins | critical path | late register inputs at 150 MHz "
             "(with the pins) | place and route |", "|---:|---:|---:|---:|---|---:|---:|"]
    for r in recs:
        pinned = _pinned_record(r["seed"], r["speed"])
        same = pinned is not None and pinned["verilog_sha256"] == r["engine_verilog_sha256"]
        lines.append(f"| {r['speed']} | {r['seed']} | {r['fmax_mhz']} | {pinned['fmax_mhz'] if same else '-'} | "
                     f"{r['critical_path']} | {r['late_inputs_at_150mhz']} "
                     f"({pinned['late_endpoints']['count'] if same else '-'}) | {r['nextpnr_minutes']} min |")
    lines += ["", "Worst groups of late register inputs: " + "; ".join(
        f"seed {r['seed']} (speed {r['speed']}): " + (", ".join(r["worst_groups"][:4]) or "none") for r in recs), ""]
    return lines


def bench_ebr() -> Path:
    from sim.engine.synth import memory_read_fmax

    res = memory_read_fmax(REPO / "build" / "engine" / "ebr")
    out = OUT / "ebr_outreg.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    print(json.dumps(res, indent=1))
    return out


def _resource_table(util: dict) -> list[str]:
    return (["| resource | used | available | % |", "|---|---:|---:|---:|"]
            + [f"| {k} | {v['used']} | {v['available']} | {v['percent']} |" for k, v in util.items()])


def _cosim_lines(f: Path, memory: str, bus: int, per_phase: bool = False) -> list[str]:
    """A recorded co-simulation in the README: bit-exactness, cycles, utilization, inference
    (and per phase: the convolutions per layer)."""
    from sim.engine.cosim import units_text, warm_text
    r = json.loads(f.read_text())
    u = r["units"]
    t = r.get("test", {})
    first = r.get("start_step", 0)
    steps = (f"steps {first}..{first + r['steps_run'] - 1} (the golden model trained the {first} "
             "before alone)" if first else f"{r['steps_run']} steps")
    lines = [f"## {f.name}", "",
             f"- {r['network']} batch {r['batch']}, {steps}, memory {memory}, "
             f"{bus}-bit port, bit-identical after every step: **{r['ok']}**; {r['tiles']} "
             f"tiles in {r.get('runs', r['tiles'])} runs, {r['program_commands']} program "
             "commands per step",
             f"- cycles per step: **{r['cycles_per_step']:.0f}** = {units_text(u)}; predicted "
             f"{r['predicted']['cycles_per_step']:.0f} ({100 * r['predicted']['error']:+.2f}%)",
             f"- useful-MAC utilization **{100 * r['mac_util']:.1f}%** of the step "
             f"({100 * r['gemm_mac_util']:.1f}% of the core's cycles)", f"- {warm_text(r)}"]
    if t:
        lines.append(f"- inference on {t['images']} test images: engine accuracy "
                     f"{100 * t['engine_acc']:.2f}%, golden model {100 * t['golden_acc']:.2f}%, "
                     f"predictions identical: {t['identical']}")
    if "constant_tensors" in r:
        lines.append("- compared tensors that stayed one constant in every step: "
                     + (", ".join(r["constant_tensors"]) or "none")
                     + (f" (from {r['start']})" if "start" in r else ""))
    lines += [f"- wall time {r.get('run_s', r['wall_s']):.0f} s (simulator {r['sim_khz']:.0f} "
              f"kcycles/s)" + (f"; commit {r['commit']}" if "commit" in r else ""), ""]
    if per_phase:
        lines += ["| phase | core cycles | MAC busy | useful-MAC utilization |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {ph} | {v['cycles']:.0f} | {100 * v['busy_frac']:.1f}% | "
                  f"{100 * v['mac_util']:.1f}% |" for ph, v in r["phases"].items() if v["cycles"]]
        lines.append("")
    return lines


def _vgg_lines() -> list[str]:
    """VGG8B: the performance model's numbers, then its co-simulated step."""
    f = OUT / f"{VGG}_model.json"
    if not f.exists():
        return []
    r = json.loads(f.read_text())
    synth = OUT / "synth.json"
    worst = json.loads(synth.read_text()).get("worst_fmax_mhz") if synth.exists() else None

    def at_routed(img_s: float) -> str:
        return (f"; {img_s * worst / r['target_mhz']:.2f} at the slowest routed seed's {worst} MHz "
                "(synth.json)" if worst else "; the engine has not routed")

    lines = [f"## {f.name}: VGG8B MNIST on the engine (performance model, batch {r['batch']})", "",
             f"- {r['tiles']} tiles in {r['runs']} runs (compiled and tiled in {r['compile_s']:.0f} s), "
             f"{r['useful_macs_per_step']:.3g} useful MACs per step"]
    lines += [f"- {name} memory: **{m['cycles_per_step']:.4g} cycles per step**, useful-MAC "
              f"utilization {100 * m['mac_util']:.1f}%: **{m['img_s_at_target']} images/s** at "
              f"{r['target_mhz']:.0f} MHz (the target)"
              + at_routed(m["img_s_at_target"])
              for name, m in r["memories"].items()]
    lines += ["", "| phase | cycles (ideal memory) | useful-MAC utilization |", "|---|---:|---:|"]
    lines += [f"| {ph} | {v['cycles']:.4g} | {100 * v['util']:.1f}% |"
              for ph, v in r["memories"]["ideal"]["phases"].items() if v["cycles"]]
    lines += ["", "Per convolution GEMM, the core's own cycles (its loads overlapped):", "",
              "| GEMM | core cycles | useful-MAC utilization |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['core_cycles']:.4g} | {100 * v['core_util']:.1f}% |"
              for k, v in r["gemms"].items() if k.startswith("conv") and k.endswith(("/fwd", "/update_fwd"))]
    rtl = OUT / f"cosim_{VGG}_1steps_b{VGG_RTL_BATCH}_ideal.json"
    return lines + [""] + (_cosim_lines(rtl, "ideal", 64, per_phase=True) if rtl.exists() else [])


def _run_lines() -> list[str]:
    """The header and each recorded co-simulation: MLPs, CNNs, the long run, VGG8B."""
    lines = ["# Streaming NITRO-D engine: recorded results", "",
             "Produced by `scripts/bench_engine.py` (see its docstring). One generated engine: 8x8 "
             "int8 x int24 MAC array (int32 wrap), int16 weights, double-buffered scratchpads, a "
             "64-bit AXI4 memory port (`_bus128`: the same engine generated with a 128-bit port); "
             "tensors in external memory. Memory models (`nitro cosim "
             "--memory`): ideal = first beat 1 cycle after the address, one beat per cycle; ddr3 = "
             f"{DDR3_TEXT}.", ""]
    for config, memory, bus in cosim_runs():
        f = cosim_file(config, memory, bus)
        if f.exists():
            lines += _cosim_lines(f, memory, bus)
    for f in map(trained_file, TRAINED):
        if f.exists():
            lines += _cosim_lines(f, "ideal", 64)
    for f in map(cnn_file, CNN_RUNS):
        if f.exists():
            lines += _cosim_lines(f, "ideal", 64, per_phase=True)
    if any(f.exists() for f in long_files()):
        lines += [f"The long run of {LONG} ({LONG_STEPS} steps at batch 64, `bench_engine.py long`) "
                  f"in {LONG_SEGMENTS} segments simulated side by side: each segment's golden model "
                  "trains the steps before it alone and the engine starts from its weights (`nitro "
                  "cosim --start-step`), so every step ran on the engine from the weights the step "
                  "before produced, which the segment before found bit-identical. Its cycles are "
                  f"the engine's at the commit shown; the current engine's are in "
                  f"`{cnn_file(LONG).name}` above.", ""]
    for k, f in enumerate(long_files()):
        if f.exists():
            lines += _cosim_lines(f, "ideal", 64, per_phase=k == 0)
    lines += _vgg_lines()
    return lines


def _conform_lines() -> list[str]:
    """`nitro conform --engine` on the official sets."""
    lines = []
    for f in (OUT / f"conform_{tag}.json" for tag in OFFICIAL_SETS):
        if f.exists():
            r = json.loads(f.read_text())
            steps = ", ".join(f"{k}: {v['arrays']} arrays, {v['differ']} differ"
                              for k, v in r["steps"].items())
            lines += [f"## {f.name}", "",
                      f"- `nitro conform --engine` on the official `{r['set']}` set: every "
                      f"array matches: **{r['ok']}** ({steps}); {r['wall_s']:.0f} s",
                      "- arrays of the set that hold one value throughout (a match shows little "
                      f"about them): {', '.join(r['constant_arrays']) or 'none'}", ""]
    return lines


def _perf_model_lines() -> list[str]:
    """The performance model against the runs, and what bounds utilization."""
    lines = []
    from hw.engine.perf import COMMAND_CYCLES, RUN_OVERHEAD_CYCLES

    pm = OUT / "perf_model.json"
    if pm.exists():
        r = json.loads(pm.read_text())
        lines += ["## perf_model.json: predicted vs measured cycles per step", "",
                  "| run | predicted | measured | error |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['predicted']:.0f} | {v['measured']:.0f} | {100 * v['error']:+.2f}% |"
                  for k, v in r["runs"].items()]
        lines += ["", "What bounds useful-MAC utilization with the ideal memory "
                  "(`utilization_ceiling`): the core's own cycles (the 8x8 array pads the learning "
                  "layers' 10 outputs to 16, serial output ops take 64 cycles per C tile when K < 64, "
                  f"{RUN_OVERHEAD_CYCLES} cycles for a run's first command and {COMMAND_CYCLES} for "
                  "each further one) and, in a step that starts cold, the first run's loads, which "
                  "nothing overlaps (a warm step found them loaded):", "",
                  "| network | useful MAC cycles | core cycles | core-bound | first-run load beats "
                  "| with them | measured |", "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {k} | {v['useful_mac_cycles']:.0f} | {v['core_cycles']:.0f} | "
                  f"{100 * v['core_bound']:.1f}% | {v['first_run_load_beats']} | "
                  f"{100 * v['with_first_load']:.1f}% | {100 * v['measured']:.1f}% |"
                  for k, v in r.get("utilization_ceiling", {}).items()]
        lines.append("")
    return lines


def _synth_lines() -> list[str]:
    """The routed engine: Fmax per seed, the slowest seed's late inputs, resources, projections."""
    lines = []
    s = OUT / "synth.json"
    if s.exists():
        r = json.loads(s.read_text())
        lines += [f"## synth.json: the whole engine on the {r['device']} ({r['package']}, speed "
                  f"{r['speed']}), AXI ports as pins, each channel on adjacent pins "
                  f"(sim/engine/pinout.py), target {r['target_mhz']} MHz", "",
                  "| nextpnr seed | Fmax (MHz) | critical path | late register inputs | place and route |",
                  "|---|---:|---|---:|---:|"]
        for seed, v in r["seeds"].items():
            cp = v["critical_path"]
            path = (f"{cp['delay_ns']} ns: {cp['from']} -> {cp['to']} ({cp['cells']} cells, routing "
                    f"{cp['routing_ns']} ns)" if cp else v.get("status"))
            lines.append(f"| {seed} | {v['fmax_mhz'] or '-'} | {path} | {v.get('late_inputs') or '-'} | "
                         f"{v['nextpnr_s'] / 60:.0f} min |")
        worst = min((v for v in r["seeds"].values() if v["fmax_mhz"]), key=lambda v: v["fmax_mhz"],
                    default={})
        if worst.get("late_groups"):
            lines += ["", "The slowest seed's late register inputs by group (what to pipeline next):", "",
                      "| registers | input | inputs | worst arrival (ns) |", "|---|---|---:|---:|"]
            lines += [f"| `{g['registers']}` | {g.get('input', '-')} | {g['endpoints']} | "
                      f"{g['worst_arrival_ns']} |" for g in worst["late_groups"]]
        lines += [""] + _resource_table(r["utilization"])
        lines += ["", f"Projected training throughput at the slowest routed seed's Fmax ({r['worst_fmax_mhz']} MHz): "
                  + ", ".join(f"{k}: {v:.0f} images/s" for k, v in r["projected_img_s_at_worst_fmax"].items())
                  + f" (golden model on this CPU: {r['golden_model_cpu_img_s']:.0f} images/s).", ""]
    return lines


def _which_netlist(r: dict) -> str:
    """Whether record `r` holds the netlist routed in synth.json or an earlier one."""
    routed = OUT / "synth.json"
    routed_sha = json.loads(routed.read_text()).get("verilog_sha256") if routed.exists() else None
    return ("the netlist routed in synth.json" if r.get("verilog_sha256") == routed_sha else
            f"Verilog {str(r.get('verilog_sha256'))[:8]}, an earlier RTL than the one routed in "
            f"synth.json ({str(routed_sha)[:8]})")


def _placed_lines() -> list[str]:
    """The placed-only engine: nextpnr's estimate, resources, floorplan."""
    lines = []
    pl = OUT / "synth_placed_seed1.json"
    if pl.exists():
        r = json.loads(pl.read_text())
        lines += [f"## {pl.name}: the whole engine placed, not routed ({r['device']}, {r['package']}, "
                  f"speed {r['speed']}, AXI ports as pins)", "",
                  f"Placed: {_which_netlist(r)}. nextpnr's estimate after placement: "
                  f"**{r['pre_route_fmax_estimate_mhz']} MHz** "
                  f"(target {r['target_mhz']} MHz). The estimate charges a fixed delay per tile of "
                  "distance and is dominated by die-spanning nets, so it does not predict the routed "
                  "Fmax (the first engine's reduced variant: 95 MHz estimated, 130-151 MHz routed, "
                  "`v1/`).", ""]
        lines += _resource_table(r["utilization"]) + [""]
        if r.get("floorplan"):
            lines += _floorplan_lines(r["floorplan"], "floorplan_placed_seed1.png")
    return lines


def _congestion_lines() -> list[str]:
    """router2's congestion runs."""
    lines = []
    for c in sorted(OUT.glob("routing_congestion_seed*.json")):
        r = json.loads(c.read_text())
        its = r["overused_by_iteration"]
        lines += [f"## {c.name}: where routing the whole engine congests (router2, seed {r['seed']})", "",
                  f"Routed: {_which_netlist(r)}. {r['iterations']} router2 iterations in {r['minutes']} minutes, then "
                  + (f"routed at {r['fmax_mhz']} MHz." if r.get("fmax_mhz") else "stopped, not routed.")
                  + f" Overused wires after each: {', '.join(f'{v:,}' for v in its[:3])} ... "
                  f"{', '.join(f'{v:,}' for v in its[-3:])}." + (f" ({r['note']}.)" if r.get("note") else ""), "",
                  f"Overuse on a 4 x 4 split of the die at iteration {r['heatmap_iteration']} (%; "
                  "rows: bands of tile columns x from the left, columns: bands of rows y):", "",
                  "| x \\ y | 1 | 2 | 3 | 4 |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {i + 1} | " + " | ".join(str(v) for v in row) + " |"
                  for i, row in enumerate(r["overuse_by_region_pct"])]
        lines += ["", "Congested nets by module (% of router2's per-net congestion count):", "",
                  "| module | % |", "|---|---:|"]
        lines += [f"| `{k}` | {v} |" for k, v in r["congested_nets_by_module_pct"].items()]
        lines += ["", "The packed design against the device's capacity:", ""]
        lines += _resource_table(r["utilization"]) + [""]
    return lines


def _ebr_lines() -> list[str]:
    """A block RAM read routed alone, with and without its output register."""
    lines = []
    e = OUT / "ebr_outreg.json"
    if e.exists():
        r = json.loads(e.read_text())
        lines += [f"## ebr_outreg.json: a block RAM read, {r['memory']} alone on the LFE5U-85F", ""]
        for k, title in (("yosys_map", "as yosys maps it (DP16KD output register unused)"),
                         ("output_register_packed", "output register packed (sim.ebr_outreg)")):
            cp = r[k]["critical_path"]
            lines.append(f"- {title}: **{r[k]['fmax_mhz']} MHz**; critical path {cp['delay_ns']} ns "
                         f"({cp['from']} -> {cp['to']}: logic {cp['logic_ns']} ns, routing "
                         f"{cp['routing_ns']} ns)")
        lines.append("")
    return lines


def _margin_lines() -> list[str]:
    """The flush margin: runs without it and with less, until one differs."""
    f = OUT / "flush_margin.json"
    if not f.exists():
        return []
    r = json.loads(f.read_text())
    lines = [f"## flush_margin.json: the sequencer's flush without its margin of "
             f"{r['default_wait_cycles']} cycles, and shorter until a run differs", "",
             "Flush per command kind (cycles): " + "; ".join(
                 f"wait_cycles {w}: " + ", ".join(f"{k} {v}" for k, v in f.items())
                 for w, f in r["flush"].items()), "",
             "| run | steps | bit-identical | first difference |", "|---|---:|---|---|"]
    for k, v in r["runs"].items():
        mm = v["mismatch"]
        lines.append(f"| {k} (batch {v['batch']}) | {v['steps_run']} | {v['ok']} | "
                     + (f"step {mm['step']}, {mm['tensor']}, {mm['count']} elements" if mm else "")
                     + " |")
    if r["all_identical_down_to"] is not None:
        w = r["all_identical_down_to"]
        lines += ["", f"Every run (from {r['start']}) is bit-identical down to wait_cycles {w}, "
                  "cycles under the computed flush: "
                  + ", ".join(f"{k} {v}" for k, v in r["under"][str(w)].items()) + "."]
    if r["first_caught"] is not None:
        w = r["first_caught"]
        lines += [f"At wait_cycles {w} a run differs, cycles under: "
                  + ", ".join(f"{k} {v}" for k, v in r["under"][str(w)].items()) + "."]
    return lines + ["", f"Commit {r['commit']}.", ""]


def _widths_lines() -> list[str]:
    """The storage widths checked on real training."""
    lines = []
    for w in sorted(OUT.glob("widths*.json")):
        r = json.loads(w.read_text())
        found = (f"stopped after {r['seconds']:.0f} s of training at the first value that does not "
                 f"fit: {r['first_overflow']}" if r["overflows"] else
                 f"{r['epochs']} epoch(s), no overflow; max |W| per layer {r['max_abs_weight']}")
        lines += [f"## {w.name}", "",
                  f"- golden model, check mode, int{r['declared_widths']['weight']} weights and "
                  f"int{r['declared_widths']['delta']} deltas, {r['config']}: {found}", ""]
    return lines


def write_readme() -> None:
    lines = [*_run_lines(), *_conform_lines(), *_perf_model_lines(), *_synth_lines(),
             *_placed_lines(), *_pinless_lines(), *_congestion_lines(), *_ebr_lines(), *_margin_lines(), *_widths_lines(),
             "The first engine's results (all tensors on chip) are in `v1/`.", ""]
    write_atomic(OUT / "README.md", ("\n".join(lines)).encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["cosim", "trained", "cnn", "long", "conform", "vgg", "model", "margin", "widths", "synth",
                                     "experiment", "place", "small", "pinless", "ebr", "congestion", "floorplan",
                                     "all", "readme"])
    ap.add_argument("--minutes", type=float, default=60.0, help="congestion: router2's time limit")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--config", default="mlp_mnist", help="widths: the experiment config")
    ap.add_argument("--weight-bits", type=int, help="widths: another weight width than the engine's")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=1, help="synth: seeds routed side by side")
    ap.add_argument("--route-minutes", type=float, help="synth: stop a seed's nextpnr after this long")
    ap.add_argument("--speed", type=int, choices=SPEED_GRADES, default=DEVICE["speed"],
                    help="synth: the LFE5U-85F's speed grade (another than the target's 6 records "
                         "synth_speed<G>*.json)")
    ap.add_argument("--name", help="experiment: the netlist's name")
    ap.add_argument("--changes", help="experiment: what it changed")
    ap.add_argument("--records", type=Path, help="experiment: the folder of its synth_seed<K>.json")
    ap.add_argument("--flow", action="store_true",
                    help="experiment: one with the flow (e.g. --speed 8), under flow_experiments")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    a = ap.parse_args()
    if a.what == "experiment" and not (a.name and a.changes and a.records):
        ap.error("experiment needs --name, --changes and --records")
    OUT.mkdir(parents=True, exist_ok=True)
    if a.what in ("cosim", "all"):
        bench_cosim(a.data_dir)
    if a.what in ("trained", "all"):
        bench_trained(a.data_dir)
    if a.what in ("cnn", "all"):
        bench_cnn(a.data_dir)
    if a.what in ("long", "all"):
        bench_long(a.data_dir)
    if a.what in ("conform", "all"):
        bench_conform(SHARED_VECTORS)
    if a.what in ("vgg", "all"):
        bench_vgg(a.data_dir)
    if a.what in ("model", "all"):
        bench_model()
    if a.what in ("margin", "all"):
        bench_margin(a.data_dir)
    if a.what in ("widths", "all"):
        bench_widths(a.config, a.epochs, a.data_dir, a.weight_bits)
    if a.what in ("synth", "all"):
        bench_synth(a.seeds, a.data_dir, a.jobs, a.route_minutes, a.speed)
    if a.what == "experiment":
        bench_experiment(a.name, a.changes, a.records, a.speed, a.flow)
    if a.what == "place":
        bench_place(a.data_dir)
    if a.what == "small":
        bench_small(a.data_dir)
    if a.what == "pinless":
        bench_pinless(a.seeds, a.speed)
    if a.what == "ebr":
        bench_ebr()
    if a.what == "congestion":
        bench_congestion(a.minutes)
    if a.what == "floorplan":
        for seed in a.seeds:
            bench_floorplan(seed)
    write_readme()


if __name__ == "__main__":
    main()
