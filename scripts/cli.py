"""`nitro` command line: train, evaluate, conformance, RTL generation, co-simulation, synthesis, flow."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from hw.engine.params import (
    BUS_WIDTHS, CNN_WEIGHT_BITS, MLP_WEIGHT_BITS, WEIGHT_STORAGE, EngineChoice, engine_with_weights,
)
from model.config import SEED_MAX
from model.layers import INT32_MAX
from model.numerics import NitroError
from sim.device import ENGINE_DEVICE, SPEED_GRADES

DATA_DIR_HELP = "dataset folder (else $NITRO_DATA_DIR, /usr/share/datasets)"


def _train(args: argparse.Namespace) -> int:
    from model.config import load_config, with_seed
    from model.train import train

    cfg = load_config(args.config)
    if args.seed is not None:
        cfg = with_seed(cfg, args.seed)
    out = Path(args.out or Path("runs") / cfg.name)
    if args.pipeline is None and args.data_parallel is None and args.address is None:
        if args.kill_worker_at is not None:
            raise NitroError("--kill-worker-at needs workers: pass --pipeline or --data-parallel")
        res = train(cfg, out, args.data_dir, epochs=args.epochs, resume=args.resume,
                    progress=not args.no_progress, force=args.force)
    else:
        from model.parallel import ParallelPlan
        from scripts.scaleout import train_distributed

        plan = ParallelPlan(stages=(args.pipeline or None) if args.pipeline is not None else 1,
                            shards=args.data_parallel or 1)
        res, restarts = train_distributed(cfg, out, args.data_dir, args.epochs, args.resume,
                                          not args.no_progress, args.force, plan, args.address,
                                          args.kill_worker_at)
        print(f"{cfg.name}: trained on Ray with {plan}; workers restarted {restarts} time(s)")
    print(f"{cfg.name}: best test accuracy {100 * res.best_test_acc:.2f}% at epoch {res.best_epoch} "
          f"({res.epochs_run} epochs); results in {out}/ (metrics.csv, metrics.json, curves.png, "
          f"checkpoint.npz)")
    return 0


def _prepared(args: argparse.Namespace):
    """Config, data, network (initial weights, or those of --checkpoint) and RNG of a command."""
    from model.checkpoint import load_checkpoint_for
    from model.config import load_config
    from model.network import Network
    from model.train import prepare

    cfg, ck = load_config(args.config), None
    if args.checkpoint:
        ck, cfg = load_checkpoint_for(Path(args.checkpoint), cfg)
    ds, net, rng = prepare(cfg, args.data_dir)
    if ck is not None:
        net = Network(net.spec, ck.params, cfg.policy())
    return cfg, ds, net, rng


def _checked_batch_size(steps: int, cfg, ds) -> int:
    """The batch size of `steps` training steps on `ds`, which must hold them all."""
    bs = cfg.train.batch_size
    if steps * bs > len(ds.train_x):
        raise NitroError(f"--steps {steps} needs {steps * bs} training images, the data has {len(ds.train_x)}")
    return bs


def _numerics(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from model.numerics import range_report

    cfg, ds, net, rng = _prepared(args)
    steps = args.steps
    bs = _checked_batch_size(steps, cfg, ds)
    for b in tqdm(range(steps), desc="training steps", unit="step", disable=args.no_progress):
        net.train_step(ds.train_x[b * bs:(b + 1) * bs], ds.train_y[b * bs:(b + 1) * bs], cfg.train.lr_inv, rng=rng)
    print(f"{cfg.name}: value ranges over {steps} training steps (mode {cfg.numerics.mode})")
    print(f"{'layer':22s} {'tensor':16s} {'class':12s} {'declared':>8s} {'max |v|':>12s} {'needs':>6s} {'wraps':>6s}")
    for r in range_report(net.policy):
        print(f"{r['layer']:22s} {r['tensor']:16s} {r['class']:12s} {r['declared_bits']:>8d} "
              f"{r['max_abs']:>12d} {r['bits_needed']:>6d} {r['wraps']:>6d}")
    return 0


def _vectors(args: argparse.Namespace) -> int:
    from model.config import load_config
    from model.fileio import temp_folder, writable_folder
    from model.vectors import ARCHIVES, check_replayable, check_tag, export_vectors, set_file, set_files

    out = Path(args.out)
    check_tag(args.tag)
    cfg = load_config(args.config)
    check_replayable(cfg)
    writable_folder(out)
    taken = set_files(out, args.tag)
    if taken and not args.force:
        raise NitroError(f"{out} already holds vector set {args.tag!r} ({', '.join(p.name for p in taken)}): "
                         f"choose another --out or --tag, or pass --force to overwrite")
    cfg, ds, net, _ = _prepared(args)
    bs = _checked_batch_size(args.steps, cfg, ds)  # (before a look at every step's file)
    if args.test_images > len(ds.test_x):
        raise NitroError(f"--test-images {args.test_images}: the data has {len(ds.test_x)} test images")
    for part in ("meta", *ARCHIVES, *(f"step{k}" for k in range(1, args.steps + 1))):
        if (f := set_file(out, args.tag, part)).exists() and not f.is_file():
            raise NitroError(f"{f} is not a file: the set's {part} part goes there")
    batches = [(ds.train_x[k * bs:(k + 1) * bs], ds.train_y[k * bs:(k + 1) * bs]) for k in range(args.steps)]
    # the new set is written beside the old one and takes its place only once it is complete
    stage = temp_folder(out, args.tag)
    try:
        export_vectors(net, batches, ds.test_x[:args.test_images], cfg.train.lr_inv, stage, args.tag)
        for p in taken:  # --force: no file of the old set outlives the new one
            p.unlink()
        for p in set_files(stage, args.tag):
            os.replace(p, out / p.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"wrote vector set {args.tag!r} ({args.steps} steps) to {out}/; check it with: nitro conform {out} {args.tag}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from model.checkpoint import load_checkpoint
    from model.config import parse_config
    from model.network import Network
    from model.train import evaluate, load_data

    ck = load_checkpoint(Path(args.checkpoint))
    cfg = parse_config(ck.config_text, "checkpoint")
    ds, _ = load_data(cfg, args.data_dir)
    net = Network(cfg.build_spec(tuple(ds.test_x.shape[1:])), ck.params, cfg.policy())
    acc = evaluate(net, ds.test_x, ds.test_labels, cfg.train.eval_batch)
    print(f"{cfg.name} after epoch {ck.epoch}: test accuracy {100 * acc:.2f}% "
          f"({(len(ds.test_x) // cfg.train.eval_batch) * cfg.train.eval_batch} images)")
    return 0


def _conform(args: argparse.Namespace) -> int:
    from model.conform import constant_arrays, load_set

    if args.engine:
        from sim.engine.conform import run_engine_conformance as run_conformance
    else:
        from model.conform import run_conformance

    first = None

    def show(rep) -> None:
        nonlocal first
        status = "all match" if not rep.mismatches else f"{len(rep.mismatches)} differ"
        print(f"{args.tag} step {rep.step}: {rep.arrays} arrays, {status}")
        if rep.mismatches and first is None:
            first = rep.mismatches[0]

    reports = run_conformance(args.vector_dir, args.tag, show)
    if first is not None:
        print(first)
        return 1
    compared = f"({sum(r.arrays for r in reports)} arrays, {len(reports)} steps"
    if args.engine:
        print(f"{args.tag}: every array the engine produces matches bit for bit {compared}: the "
              f"tensors it stores, its weights after every step and its predictions; the set's "
              f"intermediate tensors, which the engine does not keep, are not compared)")
    else:
        print(f"{args.tag}: every array of every step matches bit for bit {compared})")
    if const := constant_arrays(load_set(Path(args.vector_dir), args.tag)):
        print(f"{args.tag}: {len(const)} of them hold one value throughout (a match shows little "
              f"about what produced them): {', '.join(const)}")
    return 0


def _flow(args: argparse.Namespace) -> int:
    from scripts.flow import DEFAULT_CONFIG, run_flow

    ok = run_flow(Path(args.out), Path(args.config or DEFAULT_CONFIG), args.data_dir, args.epochs,
                  progress=not args.no_progress, force=args.force)
    return 0 if ok else 1


def _sweep(args: argparse.Namespace) -> int:
    from scripts.sweep import sweep

    return sweep([Path(c) for c in args.config], args.seeds, args.epochs, Path(args.out), args.data_dir,
                 args.address, args.cpus_per_trial, not args.no_progress)


def _rtl(args: argparse.Namespace) -> int:
    import json

    from hw.rtl import unit_names, write_rtl

    manifest = write_rtl(Path(args.out), args.unit or None, force=args.force)
    wrote = set(unit_names(args.unit))  # the manifest also keeps units written there earlier
    entries = [e for e in json.loads(Path(manifest).read_text())["units"] if e["unit"] in wrote]
    for e in entries:
        timing = "AXI ports" if e["latency_cycles"] is None else f"latency {e['latency_cycles']} cycles"
        regs = "".join(f", {f}" for f in e.get("register_files", {}))
        print(f"{e['unit']:22s} {e['file']:26s} {timing}, lint: {e['lint']}{regs}")
    print(f"{len(entries)} units written to {args.out}/ (manifest: {manifest})")
    return 0 if all(e["lint"] in ("clean", "skipped") for e in entries) else 1


def _synth(args: argparse.Namespace) -> int:
    from model.fileio import refuse_overwrite

    engine_only = (args.seed or args.route_minutes or args.no_route or args.weight_bits
                   or args.speed is not None)
    if engine_only and not args.engine:
        raise NitroError("--seed, --route-minutes, --speed, --weight-bits and --no-route apply to the "
                         "engine (--engine)")
    if args.engine and (args.unit or args.no_pnr or args.baseline):
        raise NitroError("--unit, --no-pnr and --baseline apply to the units (without --engine; the "
                         "engine's placement only is --no-route)")
    if args.no_route and args.route_minutes:
        raise NitroError("--route-minutes limits the route: not with --no-route")
    # the records (the netlists beside them are the tool's cache: a rerun reuses them)
    records = ("synth.json", "floorplan.png") if args.engine else ("synth.json", "synth.md", "synth.png")
    for name in records:
        refuse_overwrite(Path(args.out) / ("engine" if args.engine else "") / name, args.force)
    if args.engine:
        from sim.engine.synth import synthesize_engine

        res = synthesize_engine(Path(args.out) / "engine",
                                engine_with_weights(args.weight_bits or MLP_WEIGHT_BITS),
                                seed=args.seed or 1, route=not args.no_route,
                                route_minutes=args.route_minutes, speed=args.speed or ENGINE_DEVICE.speed)
        print(f"engine results: {Path(args.out) / 'engine'}/synth.json")
        return 0 if not res.get("error") else 1
    from sim.synth import synthesize

    rows = synthesize(Path(args.out), args.unit or None, pnr=not args.no_pnr, baseline=args.baseline)
    print(f"results: {args.out}/synth.md, synth.json")
    return 0 if all(not r.get("error") for r in rows) else 1


def _cosim(args: argparse.Namespace) -> int:
    from hw.engine.memory_model import MemoryModel
    from model.fileio import refuse_overwrite
    from sim.engine.cosim import run_cosim

    if args.force and not args.out:
        raise NitroError("--force overwrites an earlier result at --out: give --out")
    if args.out and not Path(args.out).is_dir():  # (a folder: run_cosim's error names it)
        refuse_overwrite(Path(args.out), args.force)
    return run_cosim(Path(args.config), args.steps, args.data_dir, Path(args.out) if args.out else None,
                     progress=not args.no_progress, fault=args.fault, batch=args.batch,
                     memory=MemoryModel.parse(args.memory), train_images=args.train_images,
                     test_images=args.test_images, waves=args.waves,
                     params=EngineChoice(args.bus_bits, args.weight_bits),
                     start_step=args.start_step,
                     checkpoint=Path(args.checkpoint) if args.checkpoint else None)


class _Parser(argparse.ArgumentParser):
    """argparse with the toolkit's one error path: one line `nitro: error: ...`, exit 2."""

    def error(self, message: str):
        self.exit(2, f"nitro: error: {self.prog.removeprefix('nitro').strip() or 'usage'}: {message}\n")


def path_arg(text: str) -> str:
    """A path option: an empty one would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def _int_arg(text: str, lo: int, hi: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
    return v


def positive_int(text: str) -> int:  # counts: the config caps them at INT32_MAX too
    return _int_arg(text, 1, INT32_MAX, f"a positive integer up to {INT32_MAX}")


def non_negative_int(text: str) -> int:
    return _int_arg(text, 0, INT32_MAX, f"an integer from 0 to {INT32_MAX}")


def seed_int(text: str) -> int:
    return _int_arg(text, 0, SEED_MAX, f"a seed from 0 to {SEED_MAX}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nitro", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    for add in (_add_train, _add_model_commands, _add_hardware_commands, _add_run_commands):
        add(sub)
    return p


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train a config on the golden model")
    t.add_argument("--config", type=path_arg, required=True, help="experiment TOML (see configs/)")
    t.add_argument("--epochs", type=positive_int, help="stop after this many epochs (default: the config's)")
    t.add_argument("--seed", type=seed_int, help="override the config's seed")
    t.add_argument("--data-dir", type=path_arg, help=DATA_DIR_HELP)
    t.add_argument("--out", type=path_arg, help="output folder (default runs/<config name>)")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the checkpoint in --out exactly")
    again.add_argument("--force", action="store_true", help="overwrite an earlier run's outputs in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--pipeline", type=non_negative_int, nargs="?", const=0, metavar="STAGES",
                   help="run the blocks as a pipeline of Ray actors: STAGES stages balanced by MACs "
                        "(default: one per block)")
    t.add_argument("--data-parallel", type=positive_int, metavar="N",
                   help="split every batch across N Ray actors per stage (gradients summed exactly)")
    t.add_argument("--address", help="join this Ray cluster (default: a local instance for the command)")
    t.add_argument("--kill-worker-at", type=positive_int, metavar="STEP",
                   help="fault drill: kill a worker after STEP steps; the run restarts from its last "
                        "checkpoint and ends with the same weights")
    t.set_defaults(func=_train)


def _add_model_commands(sub) -> None:
    """The golden model's commands: eval, numerics, vectors, conform."""
    e = sub.add_parser("eval", help="test accuracy of a checkpoint")
    e.add_argument("--checkpoint", type=path_arg, required=True, help="checkpoint.npz of a training run")
    e.add_argument("--data-dir", type=path_arg, help=DATA_DIR_HELP)
    e.set_defaults(func=_eval)

    n = sub.add_parser("numerics", help="declared width vs observed range of every tensor, per layer")
    n.add_argument("--config", type=path_arg, required=True, help="experiment TOML")
    n.add_argument("--steps", type=positive_int, default=50, help="training steps to observe (default 50)")
    n.add_argument("--checkpoint", type=path_arg, help="start from trained weights (a checkpoint of this config)")
    n.add_argument("--data-dir", type=path_arg, help=DATA_DIR_HELP)
    n.add_argument("--no-progress", action="store_true", help="no progress bar")
    n.set_defaults(func=_numerics)

    v = sub.add_parser("vectors", help="export conformance vectors (reference format) from the golden model")
    v.add_argument("--config", type=path_arg, required=True, help="experiment TOML")
    v.add_argument("--out", type=path_arg, required=True, help="output folder")
    v.add_argument("--tag", default="golden", help="vector set name (file prefix)")
    v.add_argument("--steps", type=positive_int, default=3, help="training steps recorded (default 3)")
    v.add_argument("--test-images", type=positive_int, default=256,
                   help="test images whose predictions are recorded (default 256)")
    v.add_argument("--force", action="store_true", help="overwrite a vector set of the same tag in --out")
    v.add_argument("--checkpoint", type=path_arg, help="start from trained weights (a checkpoint of this config)")
    v.add_argument("--data-dir", type=path_arg, help=DATA_DIR_HELP)
    v.set_defaults(func=_vectors)

    c = sub.add_parser("conform", help="replay reference vectors and compare every array bit for bit")
    c.add_argument("vector_dir", type=path_arg)
    c.add_argument("tag", help="vector set name: files TAG_init.npz, TAG_data.npz, TAG_stepK.npz, ...")
    c.add_argument("--engine", action="store_true",
                   help="replay the steps on the Verilated training engine (MLP and CNN sets) and compare every "
                        "array it produces: stored forward tensors, weights after every step, predictions")
    c.set_defaults(func=_conform)


def _add_hardware_commands(sub) -> None:
    """rtl, synth and cosim."""
    r = sub.add_parser("rtl", help="write each hardware unit's Verilog and a manifest")
    r.add_argument("--out", type=path_arg, default="build/rtl", help="output folder (default build/rtl)")
    r.add_argument("--unit", action="append", help="only this unit (repeatable)")
    r.add_argument("--force", action="store_true",
                   help="overwrite Verilog changed since nitro rtl wrote it (or not written by it)")
    r.set_defaults(func=_rtl)

    y = sub.add_parser("synth", help=f"yosys synth_ecp5 + nextpnr ({ENGINE_DEVICE.device}, speed "
                         f"{ENGINE_DEVICE.speed}): resources and Fmax")
    y.add_argument("--out", type=path_arg, default="build/synth", help="output folder (default build/synth)")
    y.add_argument("--unit", action="append",
                   help="only this unit (repeatable; default every unit but the engine: --engine)")
    y.add_argument("--no-pnr", action="store_true", help="synthesis only (cell counts, no Fmax)")
    y.add_argument("--baseline", action="store_true",
                   help="units: also record the rows as synth_baseline.json's entry for this yosys "
                        "version in --out (what the resource regression test compares against)")
    y.add_argument("--engine", action="store_true",
                   help="the training engine instead of the units: resources, Fmax, projected images/s")
    y.add_argument("--no-route", action="store_true",
                   help="engine: place only (packed resources, nextpnr's pre-route estimate, no Fmax)")
    y.add_argument("--seed", type=positive_int, help="engine: nextpnr's seed (default 1)")
    y.add_argument("--weight-bits", type=int, choices=sorted(WEIGHT_STORAGE),
                   help=f"engine: its weight storage, {MLP_WEIGHT_BITS} (the MLPs' engine, the default) "
                        f"or {CNN_WEIGHT_BITS} (the CNNs')")
    y.add_argument("--speed", type=int, choices=SPEED_GRADES,
                   help=f"engine: the {ENGINE_DEVICE.device}'s speed grade (default {ENGINE_DEVICE.speed}, the slowest)")
    y.add_argument("--route-minutes", type=positive_int, metavar="MIN",
                   help="engine: stop nextpnr after this long (a 'not routed' record with how far it got)")
    y.add_argument("--force", action="store_true", help="overwrite an earlier synth.json in --out")
    y.set_defaults(func=_synth)

    s = sub.add_parser("cosim", help="train N steps on the Verilated engine, checked against the golden model")
    s.add_argument("--config", type=path_arg, required=True,
                   help="experiment TOML (an MLP or CNN, e.g. configs/mlp_mnist.toml, configs/cnn_small_mnist.toml)")
    s.add_argument("--steps", type=positive_int, default=10, help="training steps on the engine (default 10)")
    s.add_argument("--batch", type=positive_int, help="override the config's batch size")
    s.add_argument("--data-dir", type=path_arg, help=DATA_DIR_HELP)
    s.add_argument("--out", type=path_arg, help="write the result (cycles, phases, utilization) as JSON here")
    s.add_argument("--force", action="store_true", help="overwrite an earlier result at --out")
    s.add_argument("--fault", help="inject a fault STEP:LAYER:OUT,IN:BIT: flip BIT of weight (OUT, IN) of "
                        "LAYER the engine wrote at STEP, counted from 0 as --start-step is (the check "
                        "must catch it)")
    s.add_argument("--memory", default="ideal",
                   help="memory model: 'ideal' (one beat per cycle, latency 1), 'ddr3' (latency=30,stall=10,"
                        "seed=1: a DDR3-class memory at 150 MHz) or KEY=N,... with "
                        "latency (cycles to the first beat), gap (idle cycles between read beats), "
                        "stall (%% of cycles each channel stalls), seed; e.g. latency=100,stall=30,seed=2")
    s.add_argument("--train-images", type=positive_int,
                   help="train on the first N training images only (short epochs: epoch boundaries "
                        "and lr_inv changes within a few steps)")
    s.add_argument("--test-images", type=non_negative_int, default=0,
                   help="after training, run the engine's inference program on the first N test "
                        "images: its accuracy, and predictions identical to the golden model's")
    s.add_argument("--start-step", type=non_negative_int, default=0,
                   help="the golden model trains the first K steps alone (the same loop and data "
                        "order); the engine takes its weights there and runs --steps more, each "
                        "checked (a long run in segments)")
    s.add_argument("--checkpoint", type=path_arg,
                   help="start the engine and the golden model from this checkpoint's weights (a "
                        "`nitro train` run of --config) instead of the initial ones, whose scaled "
                        "outputs mostly round to 0")
    s.add_argument("--bus-bits", type=int, choices=BUS_WIDTHS, default=BUS_WIDTHS[0],
                   help="the engine's AXI4 memory port width (a separate build per width)")
    s.add_argument("--weight-bits", type=int, choices=sorted(WEIGHT_STORAGE),
                   help=f"the engine's weight storage width (default: {MLP_WEIGHT_BITS} for an MLP, "
                        f"{CNN_WEIGHT_BITS} for a CNN, "
                        "whose weights outgrow int16 in training: benchmarks/engine/widths_*.json); "
                        "a separate build per width")
    s.add_argument("--waves", action="store_true",
                   help="record every signal of the run to an FST, dump.fst in the run's build folder "
                        "(its path is printed and in --out as 'waves'; a separate, slower build: keep "
                        "--steps small)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=_cosim)


def _add_run_commands(sub) -> None:
    """Multi-run commands: sweep, flow."""
    w = sub.add_parser("sweep", help="every (config, seed) as a Ray task: resumable, table and plot")
    w.add_argument("--config", type=path_arg, nargs="+", required=True, help="experiment TOMLs")
    w.add_argument("--seeds", nargs="+", type=seed_int, required=True, help="seeds of every config")
    w.add_argument("--epochs", type=positive_int, help="stop each trial after this many epochs")
    w.add_argument("--out", type=path_arg, required=True, help="sweep folder: a folder per trial, summary.md/json/png")
    w.add_argument("--data-dir", type=path_arg, help=DATA_DIR_HELP)
    w.add_argument("--address", help="join this Ray cluster (default: a local instance)")
    w.add_argument("--cpus-per-trial", type=positive_int, default=1, help="CPUs (and BLAS threads) per trial")
    w.add_argument("--no-progress", action="store_true", help="no progress bars")
    w.set_defaults(func=_sweep)

    f = sub.add_parser("flow", help="the co-design flow: train, conform, RTL, simulate, report")
    f.add_argument("--config", type=path_arg,
                   help="experiment TOML (default: configs/embedded_mlp.toml, shipped data)")
    f.add_argument("--data-dir", type=path_arg, help=DATA_DIR_HELP)
    f.add_argument("--epochs", type=positive_int, help="training epochs (default: the config's)")
    f.add_argument("--out", type=path_arg, default="runs/flow",
                   help="output folder (default runs/flow); a folder an earlier flow wrote is continued")
    f.add_argument("--force", action="store_true",
                   help="start over, in a folder holding other files or an earlier flow's")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    f.set_defaults(func=_flow)


def main(argv: list[str] | None = None) -> int:
    from model.fileio import removed_if_left_empty

    args = build_parser().parse_args(argv)
    try:
        with removed_if_left_empty():
            return args.func(args)
    except NitroError as exc:
        print(f"nitro: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)  # one line, always
        return 2
    except BrokenPipeError:  # the reader of our output went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the exit's flush)
        return 128 + signal.SIGPIPE
    except OSError as exc:  # the file system refused (full disk, permissions, a vanished file)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"nitro: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except MemoryError:  # (numpy's _ArrayMemoryError too) a network or batch too large for this machine
        print(f"nitro: error: {args.cmd}: out of memory (a smaller batch or network fits)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every output is written atomically: nothing is left half-written
        kept = " (a checkpoint written before is intact)" if args.cmd in ("train", "flow", "sweep") else ""
        print(f"nitro: interrupted{kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
