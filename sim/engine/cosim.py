"""`nitro cosim`: train N steps of a NITRO-D MLP or CNN on the Verilated engine next to the golden
model, checking after every step that all weights and outputs are bit-identical.

`run_cosim` (the CLI entry) validates everything host-side first (config, engine capacity, command
stream, data, fault spec), builds the engine (cached), then runs `cosim_main` inside the simulator
(the cocotb test module `sim.engine.tb_cosim`), which writes a JSON result that `run_cosim` reports.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from hw.engine.memory_model import MemoryModel
from hw.engine.params import EngineParams
from model.fileio import writable_folder, write_atomic
from model.numerics import NitroError
from sim.job import SimJob

RESULT_FILE = "cosim_result.json"


@dataclass(frozen=True)
class CosimRun(SimJob):
    """Everything the simulator side of a co-simulation needs: one typed object, written as
    cosim_run.json into the cocotb test folder (no environment variables)."""

    config: str  # absolute path of the experiment TOML
    steps: int
    batch: int
    params: EngineParams
    data_dir: str | None = None
    fault: str | None = None
    progress: bool = False
    memory: MemoryModel | None = None  # None: the ideal memory
    train_images: int | None = None  # the first N training images only
    test_images: int = 0  # then the inference program on the first N test images
    start_step: int = 0  # steps the golden model trains alone before the engine takes over
    checkpoint: str | None = None  # start from this checkpoint's weights, not the initial ones
    FILE: ClassVar[str] = "cosim_run.json"


# ---- checking -----------------------------------------------------------------------------------

def compared(hw, net, trace, prog) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(label, layer, engine, golden) of every tensor a step compares: outputs, activations,
    weights."""
    spec = prog.spec
    checks = [("network output y_hat", "output", hw.outputs["out.yhat"], trace["out"])]
    blocks = [b for b in spec.blocks.values()]
    for b in blocks:
        checks.append((f"{b.pred_scaling.name} (learning-layer output)", b.pred.name,
                       hw.outputs[f"{b.name}.yhat"], _last(trace, f"fwd/{b.pred_scaling.name}")))
        checks.append((f"{b.relu.name} (block activation)", b.layer.name,
                       hw.outputs[f"{b.name}.a.c"], trace[f"fwd/{b.relu.name}"]))
    for d, layer in _dropped(spec):
        checks.append((f"{d.name} (dropout output)", layer, hw.outputs[f"{d.name}.c"],
                       trace[f"fwd/{d.name}"]))
    for name in prog.layers:
        checks.append((f"{name}.weight", name, hw.weights[name], net.params[name]))
        if name in hw.wcopies:
            checks.append((f"{name}.weight (engine's transposed copy)", name, hw.wcopies[name],
                           net.params[name]))
    return [(label, layer, np.asarray(got, np.int64), np.asarray(exp, np.int64))
            for label, layer, got, exp in checks]


def _dropped(spec) -> list:
    """(dropout layer, the layer of the block whose output it drops) of every dropout."""
    from model.spec import Block, Dropout

    out, layer = [], None
    for it in spec.items:
        if isinstance(it, Block):
            layer = it.layer.name
        elif isinstance(it, Dropout):
            out.append((it, layer))
    return out


def _could_differ(checks, moved: set[str]) -> set[str]:
    """The labels of `compared` checks that could show an engine error: an output or activation
    whose golden values are not one constant, a weight tensor of a layer (in `moved`) the step
    changed (an engine that never wrote an update back matches a step that changed nothing)."""
    return {label for label, layer, _, exp in checks
            if (layer in moved if label.startswith(f"{layer}.weight")
                else exp.size and exp.min() != exp.max())}


def first_difference(step: int, checks) -> dict | None:
    """The first engine tensor of `compared` that differs from the golden model, with its first
    differing element; None when everything is bit-identical."""
    for label, layer, got, exp in checks:
        if got.shape != exp.shape:
            return {"step": step, "layer": layer, "tensor": label, "index": None,
                    "engine": f"shape {got.shape}", "golden": f"shape {exp.shape}", "count": -1}
        bad = np.argwhere(got != exp)
        if len(bad):
            idx = tuple(int(i) for i in bad[0])
            return {"step": step, "layer": layer, "tensor": label, "index": list(idx),
                    "engine": int(got[idx]), "golden": int(exp[idx]), "count": int(len(bad))}
    return None


def _outgrown(prog, params) -> str | None:
    """Why the engine cannot follow the golden model past this step: a layer's weights that left
    the engine's weight storage (which wraps them); None while every weight fits."""
    from hw.engine.compiler import check_weight_storage

    try:
        for name in prog.layers:
            check_weight_storage(prog, name, params[name])
    except NitroError as exc:
        return str(exc).removeprefix("engine: ")
    return None


def _last(trace, key: str):
    """The value `key` was last given in the step (a block trained twice puts it twice)."""
    n = 2
    while f"{key}@{n}" in trace:
        n += 1
    return trace[key if n == 2 else f"{key}@{n - 1}"]


def describe(mm: dict) -> str:
    idx = "" if mm["index"] is None else f" at index {tuple(mm['index'])}"
    return (f"step {mm['step']}: layer {mm['layer']}: {mm['tensor']} differs{idx}: engine "
            f"{mm['engine']} != golden {mm['golden']} ({mm['count']} elements differ)")


def fault_fields(fault: str) -> tuple[int, str, tuple[int, int], int]:
    """'STEP:LAYER:OUT,IN:BIT' -> (step, layer, (out, in), bit); NitroError when malformed."""
    try:
        step_s, layer, idx_s, bit_s = fault.split(":")
        o, i = (int(v) for v in idx_s.split(","))
        return int(step_s), layer, (o, i), int(bit_s)
    except ValueError:
        raise NitroError(f"fault must be STEP:LAYER:OUT,IN:BIT (e.g. 1:linear_encoder_00:3,17:4), "
                         f"got {fault!r}") from None


def parse_fault(fault: str | None, prog, steps: int,
                start: int = 0) -> tuple[int, str, tuple[int, int], int] | None:
    """'STEP:LAYER:OUT,IN:BIT' -> (step, layer, (out, in), bit); NitroError when malformed or when
    STEP is not among the `steps` steps the engine runs from step `start` (a fault never
    injected proves nothing)."""
    if fault is None:
        return None
    step, layer, (o, i), bit = fault_fields(fault)
    if layer not in prog.layers:
        raise NitroError(f"fault: unknown layer {layer!r} (layers: {', '.join(prog.layers)})")
    shape = prog.layers[layer].layer.weight_shape
    if len(shape) != 2:
        raise NitroError(f"fault: {layer} is a convolution; faults go into linear layers' weights")
    if not (0 <= o < shape[0] and 0 <= i < shape[1]):
        raise NitroError(f"fault: index ({o}, {i}) outside {layer} weights {shape}")
    if not 0 <= bit < prog.params.weight_bits:
        raise NitroError(f"fault: bit {bit} outside the {prog.params.weight_bits}-bit weights")
    if not start <= step < start + steps:
        raise NitroError(f"fault: step {step} never runs on the engine (steps {start}.."
                         f"{start + steps - 1} do)")
    return step, layer, (o, i), bit


# ---- inside the simulator -----------------------------------------------------------------------

def _summary(prog, counters: list[dict], units: list[dict]) -> dict:
    """Average per-step phase breakdown and MAC utilization from the RTL counters."""
    n = max(len(counters), 1)
    R = prog.params.rows * prog.params.cols
    phases = {}
    for ph in prog.phases:
        tot = {k: sum(c[ph][k] for c in counters) / n for k in counters[0][ph]} if counters else {}
        macs = prog.macs.get(ph, 0)
        cyc = tot.get("cycles", 0)
        tot["useful_macs"] = macs
        tot["busy_frac"] = tot.get("mac_busy", 0) / cyc if cyc else 0.0
        tot["mac_util"] = macs / (R * cyc) if cyc else 0.0
        phases[ph] = tot
    gemm = [ph for ph in prog.phases if ph != "control"]
    cyc = sum(phases[ph]["cycles"] for ph in gemm)
    busy = sum(phases[ph]["mac_busy"] for ph in gemm)
    macs = sum(prog.macs.get(ph, 0) for ph in gemm)
    unit = {k: sum(u[k] for u in units) / n for k in units[0]}
    total = unit["cycles"]
    return {"cycles_per_step": total, "gemm_cycles_per_step": cyc, "units": unit,
            "mac_busy_frac": busy / cyc if cyc else 0.0,
            "gemm_mac_util": macs / (R * cyc) if cyc else 0.0,
            "mac_util": macs / (R * total) if total else 0.0,
            "useful_macs_per_step": macs, "phases": phases}


@dataclass
class _Tally:
    """What the engine's steps measured, step by step, and the tensors compared: their labels and
    those that could show an engine error in some step (`_could_differ`)."""
    counters: list = field(default_factory=list)
    units: list = field(default_factory=list)
    step_cycles: list = field(default_factory=list)
    sim_cycles: list = field(default_factory=list)
    warm: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    varied: set = field(default_factory=set)
    t_sim: float = 0.0
    t_gold: float = 0.0


async def cosim_main(dut) -> None:
    """The co-simulation loop (the same loop as model.train.train, one engine step per batch). The
    first `start_step` steps the golden model trains alone; the engine starts from its weights."""
    from model.checkpoint import load_checkpoint
    from model.config import load_config
    from model.network import Network
    from model.train import prepare

    from hw.engine.tiling import program_digest

    from .host import EngineBackend

    run = CosimRun.read()
    steps, batch, start = run.steps, run.batch, run.start_step
    cfg = load_config(run.config)
    cfg = replace(cfg, train=replace(cfg.train, batch_size=batch))
    t_start = time.perf_counter()
    ds, net, rng = prepare(cfg, run.data_dir)
    if run.checkpoint:
        net = Network(net.spec, load_checkpoint(Path(run.checkpoint)).params, cfg.policy())
    if run.train_images:
        ds = replace(ds, train_x=ds.train_x[:run.train_images], train_y=ds.train_y[:run.train_images])
    params = run.params
    schedule = cfg.make_schedule()
    prog = training_program(cfg, net.spec.input_shape, batch, params)
    fault = parse_fault(run.fault, prog, steps, start)
    eng = EngineBackend(dut, prog, run.memory)
    result = {"config": cfg.name, "batch": batch, "start_step": start, "checkpoint": run.checkpoint,
              "steps_requested": steps, "steps_run": 0,
              "ok": True, "mismatch": None, "outgrown": None, "fault": run.fault, "fault_injected": False,
              "network": _net_desc(prog), "memory": asdict(run.memory or MemoryModel()),
              "tiles": len(eng.ep.tiles), "runs": len(eng.ep.runs),
              "k_chunks": sum(t.gemm.k_hold or t.gemm.k_cont or t.gemm.p_in or t.gemm.p_out
                                for t in eng.ep.tiles),
              "channel_chunks": sum(t.gemm.conv is not None and t.gemm.conv.window is None
                                    and t.gemm.conv.a_words > 0 for t in eng.ep.tiles),
              "program_commands": len(eng.ep.commands), "program_sha256": program_digest(eng.ep)}
    tally = _Tally()
    await _run_steps(eng, net, rng, prog, _batches(cfg, ds, net, rng, schedule, start + steps),
                     run, fault, result, tally)
    if run.test_images and result["ok"]:
        result["test"] = await _test_accuracy(eng, net, ds, run.test_images)
        if not result["test"]["identical"]:
            result["ok"] = False
            result["message"] = (f"inference: the engine's predictions differ from the golden "
                                 f"model's on {result['test']['differing_images']} test images")
    # a tensor that was one constant in every step compared (e.g. the scaled outputs of initial
    # weights, all rounding to 0), or weights no step changed, could not have shown most engine
    # errors in what produced it
    result["compared"] = tally.labels
    result["constant_tensors"] = [label for label in tally.labels if label not in tally.varied]
    summ = _summary(prog, tally.counters, tally.units) if tally.counters else {}
    result.update(summ)
    if tally.counters:
        result["predicted"] = predicted(eng.ep, eng.memory, tally.warm, summ["cycles_per_step"])
        result["warm_list"] = tally.warm
    result.update({
        "cycles_per_step_list": tally.step_cycles,
        "sim_cycles_per_step": float(np.mean(tally.sim_cycles)) if tally.sim_cycles else 0.0,
        "wall_s": time.perf_counter() - t_start, "engine_s": tally.t_sim, "golden_s": tally.t_gold,
        "sim_khz": sum(tally.sim_cycles) / max(tally.t_sim, 1e-9) / 1e3,
        "lr_inv": schedule.lr_inv, "params": params.__dict__,
    })
    Path(RESULT_FILE).write_text(json.dumps(result, indent=1))


async def _run_steps(eng, net, rng, prog, batches, run: CosimRun, fault, result: dict,
                     tally: _Tally) -> None:
    """Train each batch on the golden model, then on the engine (the steps before `start_step`
    on the golden model alone), comparing after every step; stop at the first difference."""
    from tqdm import tqdm

    from model.network import Trace

    bar = tqdm(total=run.steps, desc=f"cosim {result['config']}", unit="step",
               disable=not run.progress, dynamic_ncols=True, file=sys.stderr)
    following = next(batches, None)
    try:
        while following is not None:
            step, x, y, lr_inv, masks = following
            if step < run.start_step:
                net.train_step(x, y, lr_inv, rng=rng, masks=masks)
                following = next(batches, None)
                continue
            if step == run.start_step:
                await eng.load_weights(net.params)
            t0 = time.perf_counter()
            trace = Trace()
            before = {name: net.params[name].copy() for name in prog.layers}
            net.train_step(x, y, lr_inv, rng=rng, trace=trace, masks=masks)
            following = next(batches, None)  # (after the step, as the training loop draws it)
            t1 = time.perf_counter()
            flt = fault[1:] if fault is not None and fault[0] == step else None
            hw = await eng.train_step(x, y, lr_inv, fault=flt, masks=masks,
                                      following=following and (*following[1:3], following[4]))
            tally.warm.append(hw.warm)
            result["fault_injected"] |= flt is not None
            t2 = time.perf_counter()
            tally.t_gold += t1 - t0
            tally.t_sim += t2 - t1
            tally.counters.append(hw.counters)
            tally.units.append(hw.units)
            tally.step_cycles.append(hw.units["cycles"])
            tally.sim_cycles.append(hw.sim_cycles)
            if (outgrown := _outgrown(prog, net.params)) is not None:
                result["ok"], result["outgrown"] = False, step  # not the engine's error: its limit
                result["message"] = f"step {step}: the golden model's {outgrown}; the run stops here"
                break
            checks = compared(hw, net, trace, prog)
            tally.labels = [c[0] for c in checks]
            moved = {name for name in prog.layers if not np.array_equal(before[name], net.params[name])}
            tally.varied.update(_could_differ(checks, moved))
            mm = first_difference(step, checks)
            result["steps_run"] = step + 1 - run.start_step
            bar.update(1)
            bar.set_postfix(cycles=hw.units["cycles"],
                            kHz=f"{sum(tally.sim_cycles) / max(tally.t_sim, 1e-9) / 1e3:.0f}")
            if mm is not None:  # stop at the first difference
                result["ok"], result["mismatch"] = False, mm
                result["message"] = describe(mm)
                break
    finally:
        bar.close()


def predicted(ep, mm: MemoryModel, warm: list[bool], measured: float) -> dict:
    """The performance model's cycles per step of program `ep` on memory `mm`, per unit and per
    phase (the core's, and its waits before the phase's runs: `perf.Prediction`), averaged over
    the steps run (cold and warm as they came), and its error against the `measured` cycles per
    step."""
    from hw.engine.perf import predict

    pred = {w: predict(ep, mm, w) for w in set(warm)}

    def mean(part: str) -> dict:
        return {k: float(np.mean([getattr(pred[w], part)[k] for w in warm]))
                for k in getattr(pred[warm[0]], part)}

    cyc = float(np.mean([pred[w].cycles for w in warm]))
    return {"cycles_per_step": cyc, "units": mean("units"), "phases": mean("phases"),
            "waits": mean("waits"), "error": cyc / measured - 1}


def _batches(cfg, ds, net, rng, schedule, total: int):
    """(step, x, y, lr_inv, masks) of model.train.train's loop for `total` steps: each epoch's
    shuffled batches, and after each full epoch the reference's test evaluation feeding the
    lr_inv schedule. `masks`: the step's dropout masks, drawn right after its batch, where the
    training step's forward draws them (None without dropout)."""
    from model.preprocess import epoch_permutation
    from model.spec import Dropout
    from model.train import epoch_batches, evaluate

    step, order = 0, np.arange(len(ds.train_x))
    drop = any(isinstance(it, Dropout) for it in net.spec.items)
    while True:
        order = order[epoch_permutation(rng, len(order))]
        lr_inv = schedule.lr_inv
        for x, y in epoch_batches(cfg, ds, order, rng):
            if step >= total:
                return
            yield step, x, y, lr_inv, net.draw_masks(len(x), rng) if drop else None
            step += 1
        if step >= total:
            return
        schedule.end_epoch(evaluate(net, ds.test_x, ds.test_labels, cfg.train.eval_batch))


async def _test_accuracy(eng, net, ds, n: int) -> dict:
    """The inference program on the first n test images next to the golden model's prediction."""
    x, labels = ds.test_x[:n], np.asarray(ds.test_labels[:n])
    hw = (await eng.predict(x))["out"]
    gold = net.predict(x, batch=eng.prog.batch)
    return {"images": len(x), "identical": bool(np.array_equal(hw, gold)),
            "differing_images": int((hw != gold).any(axis=1).sum()),
            "engine_acc": float(np.mean(np.argmax(hw, axis=1) == labels)),
            "golden_acc": float(np.mean(np.argmax(gold, axis=1) == labels))}


def _net_desc(prog) -> str:
    from model.spec import Block, Dropout, MaxPool2d

    spec = prog.spec
    dims = [int(np.prod(spec.input_shape))]
    for it in spec.items:
        if isinstance(it, MaxPool2d):
            dims.append(f"pool{it.kernel[0]}")
        elif isinstance(it, Dropout):
            dims.append(f"drop{it.rate:g}")
        elif isinstance(it, Block):
            dims.append(f"conv{it.layer.out_channels}" if hasattr(it.layer, "out_channels")
                        else it.layer.out_features)
    return "-".join(map(str, dims + [spec.num_classes]))


# ---- host entry points ------------------------------------------------------------------------

def training_program(cfg, input_shape: tuple[int, int, int], batch: int,
                     params: EngineParams | None = None):
    """The training step a co-simulation of `cfg` runs (`compiler.Program`): its network on
    `input_shape` inputs at `batch` on the engine `params`, at the schedule's first lr_inv (the
    host rewrites the register when the schedule changes it)."""
    from hw.engine.compiler import compile_network

    return compile_network(cfg.build_spec(input_shape), batch, params, cfg.make_schedule().lr_inv)


def prepare_cosim(config: Path, steps: int, batch: int | None = None, fault: str | None = None,
                  data_dir: str | None = None, params=None, train_images: int | None = None,
                  start_step: int = 0, test_images: int = 0, checkpoint: Path | None = None):
    """Every check that can fail before simulation: config, checkpoint, engine capacity,
    commands, fault, data."""
    from model.checkpoint import load_checkpoint_for
    from model.config import load_config
    from model.datasets import image_shape
    from model.train import check_sizes

    from hw.engine.compiler import weight_tensors

    from .host import programs

    cfg = load_config(config)
    # intact, and a run of `config` (any seed)
    ck = load_checkpoint_for(Path(checkpoint), cfg)[0] if checkpoint is not None else None
    b = batch or cfg.train.batch_size
    prog = training_program(cfg, image_shape(cfg.data.dataset), b, params)
    if ck is not None:
        weight_tensors(prog, ck.params)  # trained weights may have outgrown the engine's storage
    if changed := cfg.numerics.widths.changes():
        raise NitroError(f"engine: it computes what the reference's widths give (int32 wrap); "
                         f"the config sets {', '.join('numerics.widths.' + c for c in changed)}")
    programs(prog)
    parse_fault(fault, prog, steps, start_step)
    from model.datasets import load_raw

    raw = load_raw(cfg.data.dataset, data_dir)  # found, readable, and holds a batch
    for split, asked, have in (("train", train_images or 0, len(raw.train_x)),
                               ("test", test_images, len(raw.test_x))):
        if asked > have:
            raise NitroError(f"cosim: --{split}-images {asked}: {cfg.data.dataset} has {have} "
                             f"{split} images")
    # as `train` requires: a batch, and an evaluation batch for the end of an epoch
    check_sizes(cfg, train_images or len(raw.train_x), len(raw.test_x), batch)
    return cfg, prog


def run_cosim(config: Path, steps: int, data_dir: str | None, out: Path | None, progress: bool,
              fault: str | None = None, batch: int | None = None, params=None,
              work_dir: Path | None = None, memory=None, train_images: int | None = None,
              test_images: int = 0, waves: bool = False, start_step: int = 0,
              checkpoint: Path | None = None) -> int:
    """Train `steps` steps on the RTL next to the golden model; 0 when bit-identical throughout.

    start_step: the golden model trains the first steps alone (the same loop and data order), the
    engine takes its weights at that step: a long run in segments, each checked after every step.

    checkpoint: both start from its weights (a run of `config`) instead of the initial ones, whose
    scaled outputs are mostly 0 (`constant_tensors` in the result names what never varied).

    fault: 'STEP:LAYER:OUT,IN:BIT' flips one bit of a weight the engine computed at that step
    (the check must then name that step, layer and element, and the exit code is 1).
    """
    from .build import SimulationFailed, build_engine, remove_run_folder, run_engine_test

    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise NitroError(f"--steps must be a positive integer, got {steps!r}")
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise NitroError(f"--start-step must be a non-negative integer, got {start_step!r}")
    if out is not None:  # the result file's place, proven before the simulation
        if Path(out).is_dir():
            raise NitroError(f"--out {out} is a folder: name the result's JSON file")
        writable_folder(Path(out).parent, lock=False)  # a file's folder, not the run's
    cfg, prog = prepare_cosim(Path(config), steps, batch, fault, data_dir, params, train_images,
                              start_step, test_images, checkpoint)
    t0 = time.perf_counter()
    if waves and not Path("/usr/include/lz4.h").exists():
        raise NitroError("--waves: Verilator's FST writer needs the lz4 headers "
                         "(Debian: apt-get install liblz4-dev)")
    build = build_engine(prog.params, waves=waves)
    t_build = time.perf_counter() - t0
    tdir = Path(work_dir) if work_dir else build.build_dir / f"cosim-{cfg.name}-{os.getpid()}"
    run = CosimRun(str(Path(config).resolve()), steps, prog.batch, build.params,
                   str(Path(data_dir).resolve()) if data_dir and data_dir != "embedded" else data_dir,
                   fault, progress, memory, train_images,
                   test_images, start_step, str(Path(checkpoint).resolve()) if checkpoint else None)
    t1 = time.perf_counter()
    try:
        run_engine_test(build, "sim.engine.tb_cosim", tdir, run,
                        log_file=None if progress else tdir.parent / f"{tdir.name}.log")
    except SystemExit as e:
        raise SimulationFailed(f"cosim: the simulation failed ({e}); see {tdir}") from None
    t_run = time.perf_counter() - t1
    res_file = tdir / RESULT_FILE
    if not res_file.exists():
        raise SimulationFailed(f"cosim: the simulation wrote no result ({tdir})")
    res = json.loads(res_file.read_text())
    res["build_s"], res["run_s"] = t_build, t_run
    if waves:
        res["waves"] = str(tdir / "dump.fst")
    verdict(res)
    report(res)
    if out is not None:
        write_atomic(Path(out), json.dumps(res, indent=1).encode())
    if res["ok"] and not waves and not work_dir:
        remove_run_folder(tdir)
    return 0 if res["ok"] else 1


def verdict(res: dict) -> None:
    """A run that compared nothing, or a fault that was not injected or not caught, is a failure:
    such a run could not have shown a wrong engine."""
    failure = None
    if res.get("outgrown") is not None:  # stopped, with its reason, before the step it names
        return
    if res["steps_run"] == 0:
        failure = "no training step was compared"
    elif res["ok"] and res["steps_run"] != res["steps_requested"]:
        failure = f"{res['steps_run']} of {res['steps_requested']} steps were compared"
    elif res["ok"] and res["fault"]:
        failure = (f"fault {res['fault']} was injected but the check did not catch it"
                   if res["fault_injected"] else f"fault {res['fault']} was never injected")
    elif res["fault"] and res["mismatch"]:
        step, layer, idx, _ = fault_fields(res["fault"])
        mm = res["mismatch"]  # must be the fault's one element, and nothing else
        if (mm["step"], mm["layer"], mm["index"], mm["count"]) != (step, layer, list(idx), 1):
            failure = f"the engine differed elsewhere than fault {res['fault']}: {res['message']}"
    if failure:
        res["ok"], res["message"] = False, f"check failed: {failure}"


def units_text(u: dict) -> str:
    """The sequencer's share of a step: the commands it fetched, LOADs, waits, and its other
    cycles (decoding and issuing the other commands; STOREs run beside them), and the core's run,
    which overlaps all of them."""
    rest = u["cycles"] - u["fetch_cycles"] - u["load_cycles"] - u["wait_cycles"]
    return (f"fetch {u['fetch_cycles']:.0f} + load {u['load_cycles']:.0f} + waiting for the core "
            f"or the stores {u['wait_cycles']:.0f} + issuing the other commands {rest:.0f} (stores "
            f"moved for {u['store_cycles']:.0f}, the core ran {u['run_cycles']:.0f})")


def warm_text(res: dict) -> str:
    """How many steps started warm (`tiles.Prefetch`) and their cycles and utilization."""
    cyc = [c for c, w in zip(res["cycles_per_step_list"], res.get("warm_list", [])) if w]
    if not cyc:
        return "every step started cold"
    mean = float(np.mean(cyc))
    util = res["useful_macs_per_step"] / (res["params"]["rows"] * res["params"]["cols"] * mean)
    return (f"{len(cyc)} of {res['steps_run']} steps started warm (the first run loaded during the "
            f"step before): {mean:.0f} cycles per step, useful-MAC utilization {100 * util:.1f}%")


def report(res: dict) -> None:
    first = f" from step {res['start_step']}" if res.get("start_step") else ""
    print(f"cosim {res['config']} ({res['network']}, batch {res['batch']}): {res['steps_run']} of "
          f"{res['steps_requested']} steps on the RTL{first}, wall {res.get('run_s', res['wall_s']):.1f} s "
          f"(engine {res['engine_s']:.1f} s at {res['sim_khz']:.0f} kcycles/s, golden "
          f"{res['golden_s']:.1f} s)")
    if res.get("phases"):
        u = res["units"]
        print(f"  {res['tiles']} tiles, {res['program_commands']} program commands; memory model "
              f"{MemoryModel(**res['memory']).name}")
        print(f"  cycles per step: {res['cycles_per_step']:.0f} = {units_text(u)}; useful-MAC "
              f"utilization {100 * res['mac_util']:.1f}% of the step, "
              f"{100 * res['gemm_mac_util']:.1f}% of the core's GEMM cycles (MAC busy "
              f"{100 * res['mac_busy_frac']:.1f}%)")
        pr = res["predicted"]
        print(f"  performance model (hw.engine.perf): {pr['cycles_per_step']:.0f} cycles per step "
              f"predicted, {100 * pr['error']:+.2f}% from the measured")
        print(f"  {warm_text(res)}")
        print(f"  {'phase':28s} {'cycles':>9s} {'MAC busy':>9s} {'stall':>7s} {'flush':>6s} {'util':>6s}")
        for ph, v in res["phases"].items():
            print(f"  {ph:28s} {v['cycles']:9.0f} {100 * v['busy_frac']:8.1f}% {v['mac_stall']:7.0f} "
                  f"{v['drain_wait']:6.0f} {100 * v['mac_util']:5.1f}%")
    if res.get("test"):
        t = res["test"]
        print(f"  inference on {t['images']} test images: engine accuracy {100 * t['engine_acc']:.2f}%, "
              f"golden model {100 * t['golden_acc']:.2f}%, predictions "
              f"{'bit-identical' if t['identical'] else 'DIFFER'}")
    if res.get("waves"):
        print(f"  waveforms: {res['waves']}")
    if res["ok"]:
        print("  all weights and outputs bit-identical to the golden model after every step")
    else:
        print(f"  {'MISMATCH' if res['mismatch'] else 'FAILED'}: {res['message']}")
    if res.get("constant_tensors"):
        print(f"  note: one constant in every step compared (the golden model's too; weights: no "
              f"step changed them), so they could "
              f"not show most errors (start from trained weights, --checkpoint, or run longer): "
              f"{', '.join(res['constant_tensors'])}")
