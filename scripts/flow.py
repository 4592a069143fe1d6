"""The co-design flow behind `nitro flow`: train on the golden model, check it against the reference
vectors, generate RTL, cross-check the units and the training engine against the golden model in
simulation, report.

Each step returns one line for the report, naming the data it used and what it counted; a step
that checked nothing fails the flow. The report (Markdown + the training curves) is written to
`<out>/report.md`. On a plain clone (no `../shared`) every step still runs: the conformance step on
the official `mlp` vector set shipped in `model/embedded/refvectors`, the unit cross-checks on
tensors of the golden model trained on the embedded MNIST subset.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from model.config import load_config
from model.conform import run_conformance
from model.fileio import writable_folder, write_atomic
from model.numerics import NitroError
from model.paths import REPO, SHARED
from model.train import CHECKPOINT, train
from model.vectors import set_file

DEFAULT_CONFIG = REPO / "configs" / "embedded_mlp.toml"
SHIPPED_VECTORS = REPO / "model" / "embedded" / "refvectors"
VECTOR_TAGS = ("mlp", "mlp_warm1500", "cnn", "cnnx")


def vector_sets(shared: Path) -> tuple[Path, tuple[str, ...]]:
    """The official vector sets to replay: all four in ../shared, else the one the repo ships."""
    if set_file(shared / "refvectors", "mlp", "meta").exists():
        return shared / "refvectors", VECTOR_TAGS
    return SHIPPED_VECTORS, ("mlp",)


def trained_checkpoint(ctx: dict) -> Path:
    """The checkpoint of the flow's training run (the co-simulation starts from its weights)."""
    return ctx["out"] / "train" / CHECKPOINT


def step_train(ctx: dict) -> str:
    cfg = load_config(ctx["config"])
    run_dir = trained_checkpoint(ctx).parent
    resume = trained_checkpoint(ctx).exists() and not ctx["force"]
    res = train(cfg, run_dir, ctx["data_dir"], epochs=ctx["epochs"], resume=resume,
                progress=ctx["progress"], force=ctx["force"])
    ctx["network"] = res.network
    rate = sum(r.train_img_s for r in res.history) / max(len(res.history), 1)
    floor = 2 / res.network.spec.num_classes  # twice chance: a run that learned nothing fails
    learned = "" if res.best_test_acc > floor else f"FAILED: did not learn (<= {100 * floor:.0f}%); "
    ctx["failed"] |= bool(learned)
    return (f"{learned}trained `{cfg.name}` on the golden model ({cfg.data.dataset} data): best test accuracy {100 * res.best_test_acc:.2f}% "
            f"(epoch {res.best_epoch} of {res.epochs_run}), {rate:.0f} training images/s; "
            f"int32 wraps: {res.history[-1].wraps if res.history else 0} — ![curves](train/curves.png)")


def step_conform(ctx: dict) -> str:
    vec, tags = vector_sets(ctx["shared"])
    lines = []
    for tag in tags:
        reports = run_conformance(vec, tag)
        bad = [m for r in reports for m in r.mismatches]
        n = sum(r.arrays for r in reports)
        if n == 0:
            bad = ["no array compared"]
        lines.append(f"{tag}: {n} arrays " + ("bit-exact" if not bad else f"MISMATCH: {bad[0]}"))
        if bad:
            ctx["failed"] = True
    return (f"reference conformance (the official implementation's vectors in "
            f"{_shown(vec)}): " + "; ".join(lines))


def step_rtl(ctx: dict) -> str:
    from hw.rtl import write_rtl

    manifest = write_rtl(ctx["out"] / "rtl", force=ctx["force"], plan=ctx["rtl"])
    units = json.loads(manifest.read_text())["units"]
    dirty = [u["unit"] for u in units if u["lint"] != "clean"]
    if dirty or not units:
        ctx["failed"] = True
    maps = [u["unit"] for u in units if u.get("register_files")]
    headers = f", the register maps of {', '.join(maps)} as C headers (<unit>_regs.h)" if maps else ""
    return (f"generated Verilog of {len(units)} units in rtl/ (manifest.json){headers}; Verilator "
            "lint: " + ("clean" if not dirty else f"NOT clean: {', '.join(dirty)}"))


# The units of one training step's datapath, each with its real-data testcase (sim/tb/tb_<unit>.py).
FLOW_UNITS = {"scaling": "real_tensors", "relu_fwd": "real_tensors", "relu_bwd": "backpressure_and_real",
              "lossgrad": "real_outputs", "sgd": "real_step", "mac8x8": "real_forward"}


def training_tensors(ctx: dict):
    """The official vectors when ../shared has them, else vector sets exported from the golden model
    on the embedded subset: at initialisation and as trained by the flow's train step."""
    from model.network import Network
    from model.numerics import WidthPolicy
    from model.train import prepare
    from model.vectors import export_vectors
    from sim.tensors import TensorSource, official

    if set_file(ctx["shared"] / "refvectors", "mlp_warm1500", "step1").exists():
        return official()
    cfg = load_config(ctx["config"])
    ds, initial, _ = prepare(cfg, ctx["data_dir"])
    trained = ctx["network"]
    folder = ctx["out"] / "tensors"
    bs = cfg.train.batch_size
    batches = [(ds.train_x[k * bs:(k + 1) * bs], ds.train_y[k * bs:(k + 1) * bs]) for k in range(3)]
    for tag, net in (("initial", initial), ("trained", trained)):
        copy = Network(net.spec, {k: v.copy() for k, v in net.params.items()},
                       WidthPolicy(net.policy.widths, net.policy.mode))
        export_vectors(copy, batches, ds.test_x[:64], cfg.train.lr_inv, folder, tag)
    return TensorSource(str(folder), "trained", "initial", None,
                        f"golden-model tensors of `{cfg.name}` on {cfg.data.dataset} data, at "
                        f"initialisation and after training ({_shown(folder)})")


def step_simulate(ctx: dict) -> str:
    from sim.testing import run_unit

    source = training_tensors(ctx)
    parts = []
    for unit, testcase in FLOW_UNITS.items():
        try:
            counts = run_unit(unit, testcase=testcase, tensors=source)
        except AssertionError as exc:
            ctx["failed"] = True
            parts.append(f"{unit}: FAILED ({str(exc).splitlines()[0]})")
            continue
        parts.append(f"{unit}: {sum(counts.values()):,d} vectors bit-exact")
    return f"Verilator vs golden model on {source.description}: " + "; ".join(parts)


def _shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository where it lies inside."""
    path = Path(path).resolve()
    for base in (REPO, REPO.parent):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


COSIM_STEPS = 3


def step_cosim(ctx: dict) -> str:
    from sim.engine.cosim import run_cosim

    res_file = ctx["out"] / "cosim.json"
    # from the trained weights: the initial ones' scaled outputs mostly round to 0
    rc = run_cosim(Path(ctx["config"]), COSIM_STEPS, ctx["data_dir"], res_file, progress=False,
                   checkpoint=trained_checkpoint(ctx))
    res = json.loads(res_file.read_text())
    if rc != 0:
        ctx["failed"] = True
        return f"training engine on Verilator: MISMATCH: {res['message']}"
    if res["constant_tensors"]:
        ctx["failed"] = True
        return ("training engine on Verilator: FAILED: compared only as one constant: "
                + ", ".join(res["constant_tensors"]))
    return (f"training engine on Verilator: {res['steps_run']} training steps of {res['network']} (batch "
            f"{res['batch']}, {load_config(ctx['config']).data.dataset} data) from the trained weights "
            f"(train/checkpoint.npz), bit-identical to the golden model after every step, every "
            f"compared tensor varying; {res['cycles_per_step']:.0f} cycles/step, useful-MAC "
            f"utilization {100 * res['mac_util']:.1f}% (cosim.json)")


STEPS: list[tuple[str, Callable[[dict], str]]] = [
    ("train", step_train),
    ("conform", step_conform),
    ("rtl", step_rtl),
    ("simulate", step_simulate),
    ("cosim", step_cosim),
]


# What the flow writes in its folder, and the file that marks a folder as the flow's own.
OUTPUT_FILES, OUTPUT_FOLDERS, STAMP = ("report.md", "cosim.json"), ("train", "rtl", "tensors"), "flow.json"
STAMP_DOC = {"flow": "nitro flow output folder"}


def claim_folder(out: Path, force: bool) -> Path:
    """The flow's output folder, checked before any step: no output's name taken by the wrong kind
    of entry, and, unless `force`, no file there the flow did not write. A folder the flow wrote
    (its STAMP) is continued: training resumes from its checkpoint, the later steps run again."""
    out = Path(out)
    for names, kind, is_kind in ((OUTPUT_FILES + (STAMP,), "file", Path.is_file),
                                 (OUTPUT_FOLDERS, "folder", Path.is_dir)):
        for name in names:
            if (out / name).exists() and not is_kind(out / name):
                raise NitroError(f"{out / name} is not a {kind}: the flow writes its {name} there")
    if out.is_dir() and not force and not _stamped(out) and any(out.iterdir()):
        raise NitroError(f"{out} has files and no {STAMP} of the flow's (a flow before {STAMP} wrote "
                         f"none): choose another --out, or pass --force to start over there "
                         f"(replacing any of {', '.join(OUTPUT_FILES + OUTPUT_FOLDERS)})")
    out = writable_folder(out)
    write_atomic(out / STAMP, (json.dumps(STAMP_DOC) + "\n").encode())
    return out


def _stamped(out: Path) -> bool:
    try:
        return json.loads((out / STAMP).read_text()) == STAMP_DOC
    except (OSError, ValueError):
        return False


def run_flow(out: Path, config: Path = DEFAULT_CONFIG, data_dir: str | None = None, epochs: int | None = None,
             shared: Path = SHARED, progress: bool = True, force: bool = False) -> bool:
    """Run every step, print and write the report; returns True when every check passed. `force`:
    start over in a folder holding other files or an earlier flow's (training from scratch)."""
    from sim.engine.cosim import prepare_cosim

    from hw.rtl import plan_rtl

    # bad input fails before any step: the config, what the engine can run, the output folder
    # and the Verilog in it that the rtl step would replace
    prepare_cosim(Path(config), COSIM_STEPS, data_dir=data_dir)
    out = claim_folder(out, force)
    ctx = {"out": out, "config": config, "data_dir": data_dir, "epochs": epochs,
           "shared": Path(shared), "progress": progress, "failed": False, "force": force,
           "rtl": plan_rtl(out / "rtl", force=force)}
    lines = []
    for name, step in STEPS:
        t0 = time.perf_counter()
        print(f"[flow] {name} ...", flush=True)
        line = f"{step(ctx)} ({time.perf_counter() - t0:.1f} s)"
        print(f"[flow] {line}", flush=True)
        lines.append(f"- **{name}**: {line}")
    verdict = "FAILED" if ctx["failed"] else "all checks passed"
    report = "# NITRO-D co-design flow report\n\n" + "\n".join(lines) + f"\n\n**Result: {verdict}**\n"
    write_atomic(ctx["out"] / "report.md", report.encode())
    print(f"[flow] {verdict}; report in {ctx['out'] / 'report.md'}")
    return not ctx["failed"]
