"""The co-design flow behind `nitro flow`: train on the golden model, check it against the reference
vectors, generate RTL, cross-check the units and the training engine against the golden model in
simulation, report.

Each step returns one line for the report; the report (Markdown + the training curves) is written
to `<out>/report.md`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from model.fileio import write_atomic
from model.config import load_config
from model.conform import run_conformance
from model.train import train

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "embedded_mlp.toml"
DEFAULT_VECTORS = REPO.parent / "shared" / "refvectors"
VECTOR_TAGS = ("mlp", "mlp_warm1500", "cnn", "cnnx")


def step_train(ctx: dict) -> str:
    cfg = load_config(ctx["config"])
    run_dir = ctx["out"] / "train"
    res = train(cfg, run_dir, ctx["data_dir"], epochs=ctx["epochs"], resume=(run_dir / "checkpoint.npz").exists(),
                progress=ctx["progress"])
    ctx["network"] = res.network
    rate = sum(r["train_img_s"] for r in res.history) / max(len(res.history), 1)
    return (f"trained `{cfg.name}` on the golden model: best test accuracy {100 * res.best_test_acc:.2f}% "
            f"(epoch {res.best_epoch} of {res.epochs_run}), {rate:.0f} training images/s; "
            f"int32 wraps: {res.history[-1]['wraps'] if res.history else 0} — ![curves](train/curves.png)")


def step_conform(ctx: dict) -> str:
    vec = ctx["vectors"]
    if not (vec / "mlp_meta.json").exists():
        return f"reference conformance: no vector sets in {vec} (skipped)"
    lines = []
    for tag in VECTOR_TAGS:
        reports = run_conformance(vec, tag)
        bad = [m for r in reports for m in r.mismatches]
        n = sum(r.arrays for r in reports)
        lines.append(f"{tag}: {n} arrays " + ("bit-exact" if not bad else f"MISMATCH: {bad[0]}"))
        if bad:
            ctx["failed"] = True
    return "reference conformance (official implementation's vectors): " + "; ".join(lines)


def step_rtl(ctx: dict) -> str:
    import json

    from hw.rtl import write_rtl

    manifest = write_rtl(ctx["out"] / "rtl")
    units = json.loads(manifest.read_text())["units"]
    dirty = [u["unit"] for u in units if u["lint"] != "clean"]
    if dirty:
        ctx["failed"] = True
    return (f"generated Verilog of {len(units)} units in rtl/ (manifest.json); Verilator lint: "
            + ("clean" if not dirty else f"NOT clean: {', '.join(dirty)}"))


# The units of one training step's datapath, each with its real-data testcase (sim/tb/tb_<unit>.py).
FLOW_UNITS = {"scaling": "real_tensors", "relu_fwd": "real_tensors", "relu_bwd": "backpressure_and_real",
              "lossgrad": "real_outputs", "sgd": "real_step", "mac8x8": "real_forward"}


def step_simulate(ctx: dict) -> str:
    from sim.testing import run_unit

    parts = []
    for unit, testcase in FLOW_UNITS.items():
        try:
            counts = run_unit(unit, testcase=testcase)
        except AssertionError as exc:
            ctx["failed"] = True
            parts.append(f"{unit}: MISMATCH ({str(exc).splitlines()[0]})")
            continue
        parts.append(f"{unit}: {sum(counts.values()):,d} vectors bit-exact")
    return "Verilator vs golden model on real MNIST training tensors: " + "; ".join(parts)


COSIM_STEPS = 3


def step_cosim(ctx: dict) -> str:
    import json

    from sim.engine.cosim import run_cosim

    res_file = ctx["out"] / "cosim.json"
    rc = run_cosim(Path(ctx["config"]), COSIM_STEPS, ctx["data_dir"], res_file, progress=False)
    res = json.loads(res_file.read_text())
    if rc != 0:
        ctx["failed"] = True
        return f"training engine on Verilator: MISMATCH: {res['message']}"
    return (f"training engine on Verilator: {res['steps_run']} training steps of {res['network']} (batch "
            f"{res['batch']}) bit-identical to the golden model after every step; "
            f"{res['cycles_per_step']:.0f} cycles/step, useful-MAC utilization {100 * res['mac_util']:.1f}% "
            f"(cosim.json)")


STEPS: list[tuple[str, Callable[[dict], str]]] = [
    ("train", step_train),
    ("conform", step_conform),
    ("rtl", step_rtl),
    ("simulate", step_simulate),
    ("cosim", step_cosim),
]


def run_flow(out: Path, config: Path = DEFAULT_CONFIG, data_dir: str | None = None, epochs: int | None = None,
             vectors: Path = DEFAULT_VECTORS, progress: bool = True) -> bool:
    """Run every step, print and write the report; returns True when every check passed."""
    ctx = {"out": Path(out), "config": config, "data_dir": data_dir, "epochs": epochs,
           "vectors": Path(vectors), "progress": progress, "failed": False}
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
