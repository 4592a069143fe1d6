"""Constrained-random regression of the streaming engine against the golden model.

Each case draws, from its own generator (numpy's, seeded with the run's seed and the case's
index, so `--case K` redraws case K exactly), its input (MNIST-shaped 1x28x28 images from the
embedded subset, or CIFAR-shaped 3x32x32 ones: random images in CIFAR-10's own file format,
written beside the case, CIFAR-10 itself not being here), a network within what the engine supports (an MLP
of 1-3 hidden layers of 1-1024 units, or a CNN of one to three 3x3 convolutions of 8-48 channels
with or without 2x2 max-pools, a learning-layer pool from pred_decoder_dim, an FC block or none,
the quirks' fixes the engine builds), a batch (1-128; a CNN's 8-32), a learning rate, weight
decays (none included), the initial weights' scale, a memory model (ideal, DDR3-class, or random
latency, gap and stalls), the engine generated with 16- or 24-bit weights, a 128-bit port or
small scratchpads that force every cut, sometimes a training set short enough to cross an epoch
boundary (half of those with lr_inv changed at every epoch boundary), inference on test
images, and dropout (rates 0.05-0.25, and 0.5, which the compiler refuses).
It trains 1-3 steps on the Verilated engine next to the golden model (`nitro cosim`'s
`run_cosim`): the case passes when every weight and output is bit-identical after every step and
the predictions match. A case the compiler refuses (its one error line names a limit), or whose
golden weights outgrow the engine's weight storage mid-run (the engine would hold them wrapped;
the run stops there, the steps before compared), is counted by reason; a mismatch, a simulation
that fails (a cocotb test, a timeout) or any other exception fails the run. The record,
benchmarks/engine/regression.json, is rewritten after every case; it lists each case, the
refusals by reason, the functional coverage of the cases that passed (how many hit each bin) and
the performance model's error against the RTL's cycles on them. `--remodel RECORD` applies the
current performance model to a record's passed cases (each recompiled, kept only where its
program is the one that ran: `program_sha256`) against their measured cycles, without simulating:
how a change of the model fares on every measurement recorded so far.

    .venv/bin/python scripts/regress_engine.py [--cases 200] [--seed 1] [--jobs 2] [--out FILE]
    .venv/bin/python scripts/regress_engine.py --case 17 [--case 40 ...]   # rerun, no record
    .venv/bin/python scripts/regress_engine.py --remodel benchmarks/engine/regression_seed5.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import tempfile
import time
import tomllib
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from hw.engine.memory_model import MemoryModel
from hw.engine.params import EngineParams, engine_with_weights
from model.config import toml_document
from model.datasets import image_shape, write_random_cifar10
from model.fileio import write_atomic
from model.numerics import NitroError
from model.paths import REPO
from scripts.provenance import commit, host, today

RESULT = REPO / "benchmarks" / "engine" / "regression.json"
# The engines the cases run on: the two the CLI generates, the MLP one with a 128-bit port, one
# with scratchpads small enough that every GEMM is cut (tests/test_engine_cosim.py's), and the CNN
# one with an AMEM_C small enough that the drawn convolutions' forwards run in chunks of some
# channels of a window tap, as the CIFAR-10 VGGs' do on the CNN engine.
ENGINES = {
    "w16": engine_with_weights(16),
    "w24": engine_with_weights(24),
    "w16_bus128": engine_with_weights(16, 128),
    "small": EngineParams(wmem_depth=128, dmem_depth=512, smem_depth=256, pmem_depth=64),
    "w24_amem512": replace(engine_with_weights(24), amem_c_depth=512),
}
NARROW_SHARE = .3  # of the CNN cases drawn on the w24 engine, those moved to w24_amem512
ENGINE_ODDS = {"mlp": {"w16": .5, "w24": .2, "w16_bus128": .2, "small": .1},
               "cnn": {"w24": .6, "small": .25, "w16_bus128": .15}}
CIFAR_SHARE = .3  # of the cases, CIFAR-shaped inputs (3 channels: conv1 not tap-packed)
CIFAR_IMAGES_PER_FILE = 128  # 640 training images (a case needs at most 3 batches of 128), 128 test
# dropout after every block (a CNN's also before its last feature-extractor layer): 0.5 leaves
# int8, which the compiler refuses
DROPOUT_RATES, DROPOUT_ODDS = (0.0, 0.05, 0.1, 0.15, 0.25, 0.5), (.6, .08, .1, .1, .08, .04)
# lr_inv x3 at every epoch boundary (no epoch improves the accuracy by 1.0): a short training set's
# steps change IntegerSGD's constants mid-run
LR_AT_EVERY_EPOCH = {"start": 0, "patience": 1, "min_delta": 1.0}


@dataclass(frozen=True)
class Case:
    """One drawn case: a config's TOML text and how `run_cosim` runs it."""

    index: int
    config: str
    kind: str
    engine: str  # a key of ENGINES
    batch: int
    steps: int
    memory: str  # MemoryModel.name: what --memory takes
    scale: int  # the initial weights x scale (at x1 most scaled outputs round to 0)
    test_images: int
    train_images: int | None  # a training set this short crosses an epoch boundary
    dataset: str = "embedded"  # or "cifar10": random CIFAR-shaped images (`cifar_folder`)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return image_shape(self.dataset)


def _pick(rng: np.random.Generator, odds: dict):
    keys = list(odds)
    return keys[rng.choice(len(keys), p=np.array(list(odds.values())) / sum(odds.values()))]


def _mlp(rng: np.random.Generator) -> tuple[dict, int]:
    def width() -> int:
        return int(rng.choice([rng.integers(1, 25), rng.integers(25, 257), rng.integers(257, 1025)],
                              p=[.4, .45, .15]))

    batch = rng.integers(1, 65) if rng.random() < .9 else rng.integers(65, 129)
    return {"kind": "mlp", "hidden": [width() for _ in range(rng.integers(1, 4))]}, int(batch)


def _cnn(rng: np.random.Generator) -> tuple[dict, int]:
    arch, convs = [], 1 + int(rng.random() < .6) + int(rng.random() < .2)
    for k in range(convs):  # each convolution followed by a 2x2 max-pool or not
        arch.append(["Conv2d", 8 * int(rng.integers(1, 7)), 3, 1, 1])
        if rng.random() < (.7 if k == 0 else .4):
            arch.append(["MaxPool2d", 2, 2])
    net = {"kind": "cnn", "architecture": arch,
           "hidden": [int(rng.integers(4, 65))] if rng.random() < .6 else [],
           "pred_decoder_dim": int(rng.choice([64, 128, 256, 512, 1024, 2048, 4096, 8192]))}
    return net, 8 * int(rng.choice([1, 2, 3, 4], p=[.4, .3, .15, .15]))


def _memory(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < .6:
        return "ideal" if r < .4 else "ddr3"
    return MemoryModel(latency=int(rng.integers(1, 100)), gap=int(rng.integers(0, 4)),
                       stall_pct=int(rng.integers(0, 50)), seed=int(rng.integers(0, 1 << 32))).name


def draw_case(seed: int, index: int) -> Case:
    rng = np.random.default_rng([seed, index])
    kind = "cnn" if rng.random() < .5 else "mlp"
    network, batch = (_cnn if kind == "cnn" else _mlp)(rng)
    quirks = ({"fc_double_update": bool(rng.random() < .7), "conv_amp_inert": bool(rng.random() < .8)}
              if kind == "cnn" else {})
    train = {"seed": int(rng.integers(0, 1 << 32)), "batch_size": batch,
             "lr_inv": int(rng.choice([128, 512, 2048])),
             "fwd_decay_inv": int(rng.choice([0, 1000, 12000, 30000])),
             "subnet_decay_inv": int(rng.choice([0, 300, 3000]))}
    steps = int(rng.integers(1, 4 if kind == "mlp" else 3))
    short = rng.random() < .3
    engine, memory = _pick(rng, ENGINE_ODDS[kind]), _memory(rng)
    scale = int(rng.choice([1, 16, 64, 128], p=[.1, .3, .4, .2]))
    test_images = int(rng.choice([0, 16]))
    train_images = batch * int(rng.integers(1, 3)) if short else None
    # drawn last, so that every draw above is the one earlier runs made
    dataset = "cifar10" if rng.random() < CIFAR_SHARE else "embedded"
    schedule = LR_AT_EVERY_EPOCH if short and rng.random() < .5 else {}
    if rate := float(rng.choice(DROPOUT_RATES, p=DROPOUT_ODDS)):
        network["dropout"] = rate
    if kind == "cnn" and engine == "w24" and rng.random() < NARROW_SHARE:
        engine = "w24_amem512"
    doc = {"name": f"case{index}", "data": {"dataset": dataset}, "network": network, "train": train,
           "schedule": schedule, "quirks": quirks}
    return Case(index, toml_document({k: v for k, v in doc.items() if v}), kind, engine, batch,
                steps, memory, scale, test_images, train_images, dataset)


def cifar_folder(work: Path) -> Path:
    """A CIFAR-10 folder of random images for a CIFAR-shaped case, enough for any drawn batch,
    step count and test: the same images for every case."""
    folder = work / "cifar10"
    write_random_cifar10(folder, CIFAR_IMAGES_PER_FILE)
    return folder


def run_case(case: Case, work: Path, fault: str | None = None) -> dict:
    """Train the case on the engine next to the golden model: its outcome ('passed', 'refused',
    'outgrew', 'failed' or 'crashed'), what the result says, and the wall time."""
    from model.train import save_start_checkpoint
    from sim.engine.build import SimulationFailed
    from sim.engine.cosim import run_cosim

    work.mkdir(parents=True, exist_ok=True)
    config, out, t0 = work / "case.toml", work / "result.json", time.perf_counter()
    config.write_text(case.config)
    row = {"index": case.index}
    try:
        with (work / "cosim.log").open("w") as log, redirect_stdout(log):
            data_dir = cifar_folder(work) if case.dataset == "cifar10" else None
            start = save_start_checkpoint(config, work / "start.npz", data_dir, case.scale)
            rc = run_cosim(config, case.steps, data_dir, out, False, fault=fault, batch=case.batch,
                           params=ENGINES[case.engine], work_dir=work / "sim",
                           memory=MemoryModel.parse(case.memory), train_images=case.train_images,
                           test_images=case.test_images, checkpoint=start)
    except SimulationFailed as exc:  # a cocotb test, a timeout: the engine's failure, not a limit
        row.update(outcome="crashed", reason=str(exc))
    except NitroError as exc:
        row.update(outcome="refused", reason=str(exc))
    except Exception:  # a crash of the compiler, the harness or the model: the case fails
        row.update(outcome="crashed", reason=traceback.format_exc(limit=-3))
    else:
        res = json.loads(out.read_text())
        outcome = "passed" if rc == 0 else "failed" if res["outgrown"] is None else "outgrew"
        row.update(outcome=outcome, network=res["network"],
                   tiles=res["tiles"], k_chunks=res["k_chunks"], channel_chunks=res["channel_chunks"],
                   cycles_per_step=res["cycles_per_step"],
                   predicted_error=res["predicted"]["error"], mac_util=res["mac_util"], lr_inv=res["lr_inv"],
                   constant_tensors=res["constant_tensors"], program_sha256=res["program_sha256"],
                   memory=case.memory, warm_list=res["warm_list"])
        if rc:
            row["reason"] = res["message"]
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def _run_in(case: Case, root: str) -> dict:
    return run_case(case, Path(root) / f"case{case.index}")


def coverage(cases: list[Case], rows: list[dict]) -> dict[str, int]:
    """Functional coverage: how many passed cases hit each bin."""
    by_index, bins = {c.index: c for c in cases}, Counter()
    for row in (r for r in rows if r["outcome"] == "passed"):
        c = by_index[row["index"]]
        doc = tomllib.loads(c.config)
        net, quirks = doc["network"], doc.get("quirks", {})
        marks = [f"kind {c.kind}", f"input {'x'.join(map(str, c.input_shape))}", f"engine {c.engine}",
                 f"{c.steps} steps",
                 f"memory {memory_kind(c)}",
                 f"weights x{c.scale}", "batch 1" if c.batch == 1 else
                 "batch not a multiple of 8" if c.batch % 8 else "batch a multiple of 8",
                 "GEMM K in chunks" if row["k_chunks"] else "no K chunks",
                 "convolution in chunks of some channels of a tap" if row["channel_chunks"]
                 else "no channel chunks",
                 "batch over 64" if c.batch > 64 else "batch up to 64",
                 "inference" if c.test_images else "no inference",
                 "epoch boundary crossed" if c.train_images and c.steps * c.batch > c.train_images
                 else "one epoch",
                 "a tensor stayed constant" if row["constant_tensors"] else "every compared tensor varied",
                 "lr_inv changed mid-run" if row["lr_inv"] != doc["train"]["lr_inv"] else "one lr_inv",
                 f"dropout {net['dropout']}" if "drop" in row["network"] else "no dropout"]
        if c.kind == "cnn":
            layers = [e[0] for e in net["architecture"]]
            marks += [f"{layers.count('Conv2d')} convolutions", f"{layers.count('MaxPool2d')} max-pools",
                      f"{len(net['hidden'])} FC blocks", f"pred_decoder_dim {net['pred_decoder_dim']}",
                      *(f"{q} " + ("quirk" if quirks[q] else "fix") for q in sorted(quirks))]
        else:
            marks.append(f"{len(net['hidden'])} hidden layers")
        bins.update(marks)
    return dict(sorted(bins.items()))


def _reason_key(reason: str) -> str:
    """A refusal's message with its numbers and names generalised: refusals tallied by kind."""
    return re.sub(r"\d+", "N", reason.splitlines()[0])[:120]


def memory_kind(case: Case) -> str:
    return case.memory if case.memory in ("ideal", "ddr3") else "random"


def prediction(cases: list[Case], rows: list[dict]) -> dict[str, dict]:
    """The performance model against the RTL counters over the cases that ran every step, per
    memory kind (ideal, ddr3, random): its error in cycles per step (predicted / measured - 1)."""
    kind = {c.index: memory_kind(c) for c in cases}
    out = {}
    for mem in ("ideal", "ddr3", "random"):
        errors = {r["index"]: r["predicted_error"] for r in rows
                  if r["outcome"] == "passed" and kind[r["index"]] == mem}
        if errors:
            worst = max(errors, key=lambda k: abs(errors[k]))
            out[mem] = {"cases": len(errors), "mean_abs_error": float(np.mean(np.abs(list(errors.values())))),
                        "max_abs_error": abs(errors[worst]), "worst_case": worst,
                        "within_5pct": sum(abs(e) <= .05 for e in errors.values())}
    return out


def case_program(case: Case):
    """The training program `run_cosim` compiles for `case` (`tiling.EngineProgram`)."""
    from hw.engine.tiling import lower
    from model.config import parse_config
    from sim.engine.cosim import training_program

    cfg = parse_config(case.config, f"case{case.index}")
    return lower(training_program(cfg, case.input_shape, case.batch, ENGINES[case.engine]))


def _same_program(case: Case, row: dict):
    """The program `case` compiles to now, if it is the one that ran in `row` on the same
    memory model (else None: the compiler, the draw or the record has changed)."""
    from hw.engine.tiling import program_digest

    if row.get("memory") != case.memory:
        return None
    try:
        ep = case_program(case)
    except NitroError:  # refused now
        return None
    return ep if row.get("program_sha256") == program_digest(ep) else None


def remodel(record: Path, doc: dict) -> dict:
    """The current performance model against the measured cycles of the passed cases of `doc`
    (the regression record read from `record`) whose program is unchanged (`program_sha256`),
    each step cold or warm as it ran; beside it the model the record ran with, on the same cases."""
    from sim.engine.cosim import predicted

    cases = [draw_case(doc["seed"], r["index"]) for r in doc["rows"]]
    ran, now, changed = [], [], []
    for case, row in zip(cases, doc["rows"]):
        if row["outcome"] != "passed":
            continue
        if (ep := _same_program(case, row)) is None:
            changed.append(row["index"])
            continue
        pr = predicted(ep, MemoryModel.parse(case.memory), row["warm_list"], row["cycles_per_step"])
        ran.append(row)
        now.append({**row, "predicted_error": pr["error"]})
    if not now:
        raise SystemExit(f"{record}: no passed case with its program unchanged (or recorded): "
                         "nothing to compare")
    return {"record": str(record), "record_commit": doc["git_commit"], "model_commit": commit(),
            "cases": len(now), "program_changed": changed,
            "prediction": prediction(cases, now), "recorded": prediction(cases, ran),
            "errors": {r["index"]: r["predicted_error"] for r in now}}


def summary(cases: list[Case], rows: list[dict], seed: int, head: str, seconds: float) -> dict:
    out, steps = Counter(r["outcome"] for r in rows), {c.index: c.steps for c in cases}
    return {
        "note": "scripts/regress_engine.py (its docstring): random networks trained on the Verilated "
                "engine next to the golden model, bit-identical after every step or the case fails",
        "git_commit": head, "date": today(), "machine": host(), "seed": seed,
        "cases_drawn": len(cases), "cases": len(rows), "passed": out["passed"], "refused": out["refused"], "outgrew": out["outgrew"],
        "failed": out["failed"] + out["crashed"], "seconds": round(seconds, 1),
        "simulated_cycles": int(sum(r.get("cycles_per_step", 0) * steps[r["index"]] for r in rows)),
        "engines": {k: asdict(v) for k, v in ENGINES.items()},
        "refusals": dict(Counter(_reason_key(r["reason"]) for r in rows
                                 if r["outcome"] in ("refused", "outgrew")).most_common()),
        "failures": [{**r, "case": asdict(c)} for c in cases for r in rows
                     if r["index"] == c.index and r["outcome"] in ("failed", "crashed")],
        "coverage": coverage(cases, rows), "prediction": prediction(cases, rows),
        "rows": sorted(rows, key=lambda r: r["index"]),
    }


def _read_remodel(ap: argparse.ArgumentParser, args) -> dict:
    """The record --remodel reads; it simulates nothing: no case options, no record overwritten."""
    if args.case or args.jobs != 1 or args.cases is not None or args.seed is not None:
        ap.error("--remodel takes a record's own cases: no --case, --cases, --seed or --jobs")
    if args.out and args.out.exists():
        ap.error(f"--out {args.out} exists: --remodel writes a new file, never over a record")
    try:
        doc = json.loads(args.remodel.read_text())
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or not {"seed", "rows"} <= doc.keys():
        ap.error(f"--remodel {args.remodel}: not a regression record (scripts/regress_engine.py's)")
    return doc


def _remodel_main(record: Path, recorded: dict, out: Path | None) -> int:
    doc = remodel(record, recorded)
    if out:
        write_atomic(out, (json.dumps(doc, indent=1) + "\n").encode())
    for mem, new in doc["prediction"].items():
        old = doc["recorded"][mem]
        print(f"{mem}: {new['cases']} cases, mean |error| {100 * old['mean_abs_error']:.2f} % -> "
              f"{100 * new['mean_abs_error']:.2f} %, largest {100 * old['max_abs_error']:.2f} % -> "
              f"{100 * new['max_abs_error']:.2f} % (case {new['worst_case']}), within 5 % "
              f"{old['within_5pct']} -> {new['within_5pct']}")
    print(f"{doc['cases']} cases compared; {len(doc['program_changed'])} left out: their program "
          f"or memory model is not the recorded one, or the record predates program digests")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, help="cases drawn (default 200)")
    ap.add_argument("--seed", type=int, help="the run's seed (default 1)")
    ap.add_argument("--case", type=int, action="append", help="run only this case (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="cases simulated side by side")
    ap.add_argument("--out", type=Path, help=f"the record (default {RESULT.relative_to(REPO)}; "
                                             "none with --case)")
    ap.add_argument("--remodel", type=Path, metavar="RECORD",
                    help="apply the current performance model to a record's cases, no simulation "
                         "(with --out: write the comparison there)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.remodel:
        return _remodel_main(args.remodel, _read_remodel(ap, args), args.out)
    from tqdm import tqdm

    out = args.out or (None if args.case else RESULT)
    seed = 1 if args.seed is None else args.seed
    cases = [draw_case(seed, k) for k in (args.case or range(200 if args.cases is None else args.cases))]
    head, t0, rows = commit(), time.perf_counter(), []

    def record() -> dict:  # the summary so far, written to `out` (a stopped run keeps it)
        doc = summary(cases, rows, seed, head, time.perf_counter() - t0)
        if out:
            write_atomic(out, (json.dumps(doc, indent=1) + "\n").encode())
        return doc

    with tempfile.TemporaryDirectory(prefix="nitro-regress-") as root, \
            ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        todo = [pool.submit(_run_in, c, root) for c in cases]
        bar = tqdm(as_completed(todo), total=len(todo), unit="case", disable=args.no_progress)
        for done in bar:
            rows.append(row := done.result())
            bar.set_postfix(Counter(r["outcome"] for r in rows))
            if row["outcome"] in ("failed", "crashed"):
                tqdm.write(f"case {row['index']} {row['outcome']}: {row['reason']}")
            record()
    doc = record()
    for row in doc["rows"] if args.case else ():
        print(json.dumps(row))
    print(f"{doc['cases']} cases: {doc['passed']} passed, {doc['refused']} refused, {doc['outgrew']} "
          f"outgrew the engine, {doc['failed']} failed ({doc['seconds']:.0f} s)" + (f"; record: {out}" if out else ""))
    if not args.case and not doc["passed"]:
        print("no case passed: the regression checked nothing", file=sys.stderr)
        return 1
    return 1 if doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
