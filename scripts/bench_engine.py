"""Streaming-engine benchmarks recorded in benchmarks/engine/:

  cosim  : training steps of the paper's MNIST MLP (100) and F-MNIST MLP (20) at batch 64 on the
           Verilated engine, bit-checked against the golden model after every step, under the
           ideal memory and the DDR3-class model -> cosim_<config>_<N>steps_<memory>.json
  trained: the F-MNIST MLP's run (ideal memory) from a checkpoint trained one epoch on the golden
           model, every compared tensor varying -> cosim_<config>_<N>steps_ideal_trained.json
  w24    : cnn_small_mnist trained one epoch on the golden model (its weights outgrow int16): the
           MLPs' engine (int16 weights) refuses the checkpoint, the CNN engine (int24) runs two
           steps from it bit-identically -> cosim_cnn_small_mnist_w24_2steps_b64_ideal_trained.json
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
  vgg    : one VGG8B MNIST training step at batch 8 on the Verilated engine from the initial
           weights x256, every compared tensor varying (about 16 minutes) ->
           cosim_vgg8b_mnist_1steps_b8_ideal.json
  model  : the performance model (hw.engine.perf) against those runs -> perf_model.json; and
           the paper's CNNs in it (VGG8B on MNIST, F-MNIST and CIFAR-10, VGG11B on CIFAR-10):
           cycles per step at batch 64 for the ideal and the DDR3-class memory, per phase,
           images/s at 150 MHz, per GEMM the core's cycles and its waits -> <config>_model.json
  margin : the sequencer's flush without its margin (wait_cycles 0: the computed pipe depths must
           suffice), then shorter (down to -20) until a run differs from the golden model, a few
           steps of a CNN and an MLP -> flush_margin.json
  widths : the golden model in "check" mode with the storage widths of the engine generated for
           --config (weights int16 for an MLP, int24 for a CNN, or --weight-bits; int24 deltas)
           over real training (--epochs) -> widths.json for
           the MNIST MLP, widths_<config>_w<bits>.json otherwise; a value that does not fit is
           recorded
  synth  : yosys + nextpnr for LFE5U-85F with several nextpnr seeds (--jobs of them side by side;
           a seed already routed from the current RTL and pins is kept) -> synth_seed<K>.json and the
           summary synth.json (resources, Fmax per seed, projected images/s at the worst Fmax);
           --speed 7 or 8: the same on a faster speed grade -> synth_speed<G>_seed<K>.json and
           synth_speed<G>.json; --weight-bits 24: the CNN engine -> synth_w24_seed<K>.json and
           synth_w24.json
  experiment: a netlist that was routed but did not land (a branch's bench_engine synth records,
           --records DIR, named by --name and described by --changes) added to
           timing_experiments.json beside the landed netlist's seeds; --flow (with --speed G for
           synth_speed<G> records): a netlist routed with another flow, under flow_experiments
  place  : yosys + nextpnr placement only (seed 1) -> synth_placed_seed1.json: resources and the
           pre-route Fmax estimate
  small  : the same engine with a quarter of the scratchpad depths, placed and routed (seed 1):
           how much of the Fmax the block RAMs' spread costs -> routing_small_seed1.json (not the
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
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hw.engine.params import CNN_WEIGHT_BITS, MLP_WEIGHT_BITS, EngineParams
from model.fileio import write_atomic
from model.numerics import NitroError
from model.paths import REPO, SHARED_DATASETS, SHARED_VECTORS
from scripts.bench_engine_readme import write_readme
from scripts.bench_engine_synth import (
    bench_congestion, bench_ebr, bench_experiment, bench_floorplan, bench_pinless, bench_place,
    bench_small, bench_synth,
)
from scripts.engine_records import (
    CNN_RUNS, LONG, LONG_SEGMENTS, LONG_STEPS, LONG_TEST, OFFICIAL_SETS, OUT, RUNS, TARGET_MHZ,
    PAPER_CNNS, TRAINED, VGG, VGG_RTL_BATCH, W24, W24_STEPS, cnn_file, cosim_file, cosim_runs,
    long_files, stamp, trained_file, w24_file, widths_file,
)
from scripts.provenance import commit
from sim.device import ENGINE_DEVICE, SPEED_GRADES

DEFAULT_DATA = SHARED_DATASETS


def bench_cosim(data_dir: str) -> list[Path]:
    from hw.engine.memory_model import MemoryModel

    return [_record_cosim(config, RUNS[config], data_dir, cosim_file(config, memory, bus),
                          memory=MemoryModel.parse(memory), test_images=256,
                          params=EngineParams(bus_bits=bus))
            for config, memory, bus in cosim_runs()]


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
                                         extra=_start_stamp(ck, f"the initial weights x{scale}")))


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
            extra=_start_stamp(ck, "a checkpoint trained one epoch on the golden model"))))
    return outs


def bench_w24(data_dir: str) -> Path:
    """W24 trained one epoch on the golden model: the MLPs' engine (int16 weights) refuses the
    checkpoint's weights, the engine `nitro cosim` generates for a CNN (CNN_WEIGHT_BITS-bit
    weights) trains W24_STEPS steps from them bit-identically (every weight update in the wider
    storage)."""
    from model.config import load_config
    from model.train import CHECKPOINT, train
    from sim.engine.cosim import prepare_cosim

    config = REPO / "configs" / f"{W24}.toml"
    ck = REPO / "build" / "trained" / W24 / CHECKPOINT
    if not ck.exists():
        train(load_config(config), ck.parent, data_dir, epochs=1, force=True)
    try:
        prepare_cosim(config, W24_STEPS, data_dir=data_dir, checkpoint=ck, params=EngineParams())
    except NitroError as exc:
        refused = str(exc)
    else:
        raise SystemExit(f"the int16 engine took {ck}'s weights: the record would show nothing")
    return _record_cosim(W24, W24_STEPS, data_dir, w24_file(), checkpoint=ck,
                         extra={**_start_stamp(ck, "a checkpoint trained one epoch on the golden model"),
                                "int16_engine": refused})


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


def _record_cosim(config: str, steps: int, data_dir: str, out: Path, extra: dict | None = None,
                  **kw) -> Path:
    """`steps` co-simulated steps of configs/<config>.toml recorded in `out` (with the wall time
    including the engine build, the commit and `extra`); SystemExit when the engine and the
    golden model differ."""
    from sim.engine.cosim import run_cosim

    t0 = time.perf_counter()
    rc = run_cosim(REPO / "configs" / f"{config}.toml", steps, _data(config, data_dir), out, progress=True,
                   **kw)
    res = stamp(out, total_wall_s_incl_build=round(time.perf_counter() - t0, 1), **(extra or {}))
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


def _program(config: str, batch: int, p: EngineParams | None = None):
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
    "with eta 30 000 does not fit int16. Learning-layer deltas: |delta_p| <= 128 x the largest "
    "column sum of |W_l| after training (delta_reach, the bound the host checks before it runs a "
    "checkpoint). Check mode raises on the first value beyond the declared widths; "
    "on the engine such a value would also show up as a cosim mismatch.")


# The short CNN records start from the initial weights x this: at their own scale most scaled
# outputs round to 0 and some compared tensors stay one constant (VGG8B's learning layers even
# x64). The long run starts from the initial weights themselves: over 200 steps they all vary.
START_SCALE = {"engine_cnn_mnist": 64, "cnn_small_mnist": 64, VGG: 256}
# the long CNN run: config, steps, segments side by side, test images after the last


def bench_cnn(data_dir: str) -> list[Path]:
    """CNN training on the Verilated engine, bit-checked after every step: the shipped
    configs/engine_cnn_mnist.toml (50 steps, then the inference program on 256 test images) and
    configs/cnn_small_mnist.toml (2 steps at its batch of 64), from `scaled_start`'s weights."""
    return [_record_scaled(config, steps, data_dir, cnn_file(config), batch=batch, test_images=test)
            for config, (batch, steps, test) in CNN_RUNS.items()]


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
        stamp(f, start=_long_start(k * n))
    return long_files()


def _long_start(step: int) -> str:
    return ("the initial weights" if step == 0 else
            f"the golden model's weights after {step} steps from the initial weights")


def bench_vgg_model(config: str = VGG) -> Path:
    """A paper CNN (`config`, VGG8B MNIST by default) in the performance model: cycles per step
    at batch 64 for the ideal and the DDR3-class memory, per phase with the useful-MAC
    utilization of its GEMMs, images/s at the 150 MHz target, and per GEMM the core's cycles and
    its waits (`perf.Prediction`); or the limit of the engine that refuses it."""
    from hw.engine.perf import by_gemm, images_per_s, predict
    from hw.engine.memory_model import NAMED_MODELS

    t0 = time.perf_counter()
    out = OUT / f"{config}_model.json"
    try:
        ep = _program(config, 64)
    except NitroError as exc:  # a limit of the engine: recorded as such
        write_atomic(out, json.dumps({"config": config, "batch": 64, "refused": str(exc),
                                      "commit": commit()}, indent=1).encode())
        return out
    compile_s = time.perf_counter() - t0
    p = ep.prog.params
    macs = ep.prog.macs
    warm = ep.prefetch is not None  # steps back to back: the steady state starts warm
    res = {"config": config, "batch": 64, "params": vars(p), "tiles": len(ep.tiles), "runs": len(ep.runs),
           "compile_s": round(compile_s, 1), "target_mhz": TARGET_MHZ, "warm": warm,
           "useful_macs_per_step": sum(macs.values()), "memories": {}, "commit": commit()}
    for name, mm in NAMED_MODELS.items():
        pr = predict(ep, mm, warm)
        res["memories"][name] = {
            "cycles_per_step": pr.cycles, "units": pr.units,
            "img_s_at_target": round(images_per_s(TARGET_MHZ, 64, pr.cycles), 2),
            "mac_util": sum(macs.values()) / (p.rows * p.cols * pr.cycles),
            "phases": {ph: {"cycles": c, "util": macs.get(ph, 0) / (p.rows * p.cols * c) if c else 0.0}
                       for ph, c in pr.phases.items()}}
    per = predict(ep, NAMED_MODELS["ideal"], warm, key=by_gemm)
    useful = {g.name: 0 for g in ep.prog.gemms}
    for g in ep.prog.gemms:
        useful[g.name] += g.m * g.n * g.k
    res["gemms"] = {k: {"core_cycles": c, "wait_cycles": per.waits[k], "useful_macs": useful[k],
                        "core_util": useful[k] / (p.rows * p.cols * c)}
                    for k, c in per.phases.items()}
    write_atomic(out, json.dumps(res, indent=1).encode())
    return out


def bench_vgg(data_dir: str) -> Path:
    """One VGG8B MNIST training step at batch 8 on the Verilated engine, from `scaled_start`'s
    weights, bit-checked."""
    return _record_scaled(VGG, 1, data_dir, OUT / f"cosim_{VGG}_1steps_b{VGG_RTL_BATCH}_ideal.json",
                          batch=VGG_RTL_BATCH)


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


def bench_widths(config: str, epochs: int, data_dir: str, weight_bits: int | None = None) -> Path:
    """Train the golden model with the engine's widths in check mode; record the extremes, or the
    first value that does not fit."""
    from dataclasses import replace

    from model.config import load_config
    from model.numerics import WidthOverflowError, Widths
    from model.train import train

    from hw.engine.compiler import delta_reach
    from hw.engine.params import EngineChoice
    from model.datasets import image_shape

    cfg = load_config(REPO / "configs" / f"{config}.toml")
    p = EngineChoice(weight_bits=weight_bits).params(cfg.build_spec(image_shape(cfg.data.dataset)))
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
        "delta_reach": {n: delta_reach(net.params[n]) for n in learn},
        "best_test_acc": res.best_test_acc,
        "note": WIDTHS_NOTE,
    }
    write_atomic(out, json.dumps(doc, indent=1).encode())
    print(json.dumps(doc, indent=1))
    return out


# mode -> what it runs with the parsed arguments; "all" runs those marked True, in this order
MODES = {
    "cosim": (lambda a: bench_cosim(a.data_dir), True),
    "trained": (lambda a: bench_trained(a.data_dir), True),
    "w24": (lambda a: bench_w24(a.data_dir), True),
    "cnn": (lambda a: bench_cnn(a.data_dir), True),
    "long": (lambda a: bench_long(a.data_dir), True),
    "conform": (lambda a: bench_conform(SHARED_VECTORS), True),
    "vgg": (lambda a: bench_vgg(a.data_dir), True),
    "model": (lambda a: [bench_model(), *map(bench_vgg_model, PAPER_CNNS)], True),
    "margin": (lambda a: bench_margin(a.data_dir), True),
    "widths": (lambda a: bench_widths(a.config, a.epochs, a.data_dir, a.weight_bits), True),
    "synth": (lambda a: bench_synth(a.seeds, a.data_dir, a.jobs, a.route_minutes, a.speed,
                                    a.weight_bits or MLP_WEIGHT_BITS), True),
    "experiment": (lambda a: bench_experiment(a.name, a.changes, a.records, a.speed, a.flow, a.weight_bits),
                   False),
    "place": (lambda a: bench_place(a.data_dir), False),
    "small": (lambda a: bench_small(a.data_dir), False),
    "pinless": (lambda a: bench_pinless(a.seeds, a.speed), False),
    "ebr": (lambda a: bench_ebr(), False),
    "congestion": (lambda a: bench_congestion(a.minutes), False),
    "floorplan": (lambda a: [bench_floorplan(seed) for seed in a.seeds], False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=[*MODES, "all", "readme"])
    ap.add_argument("--minutes", type=float, default=60.0, help="congestion: router2's time limit")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--config", default="mlp_mnist", help="widths: the experiment config")
    ap.add_argument("--weight-bits", type=int, choices=(MLP_WEIGHT_BITS, CNN_WEIGHT_BITS),
                    help="widths: another weight width than the config's engine's; synth: route the engine "
                         "generated with it (the CNNs' 24: synth_w24*.json); experiment: its records")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=1, help="synth: seeds routed side by side")
    ap.add_argument("--route-minutes", type=float, help="synth: stop a seed's nextpnr after this long")
    ap.add_argument("--speed", type=int, choices=SPEED_GRADES, default=ENGINE_DEVICE.speed,
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
    for mode, (run, in_all) in MODES.items():
        if a.what == mode or (a.what == "all" and in_all):
            run(a)
    write_readme()


if __name__ == "__main__":
    main()
