"""`nitro conform --engine`: a reference vector set's recorded steps on the Verilated engine.

Every array the engine produces is compared with the set, bit for bit, with `nitro conform`'s
rules (`model.conform.compare_arrays`):
  each step : the stored forward tensors (scaling outputs s, activations, learning-layer and
              network outputs y_hat, loss gradients e, deltas after the ReLU backward) and the
              weights after the step (the set's initial weights minus its recorded updates);
  after     : the weights after the last step (`TAG_after3.npz`), and the inference program's
              predictions on the set's test images (pred_out, pred_class, pred_local/*).
Arrays the engine never stores (int32 GEMM outputs, gradients, losses) are not compared; the
report says how many were.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from hw.engine.params import EngineParams, engine_params
from model.conform import Mismatch, StepReport, compare_arrays, load_set, require_arrays
from model.numerics import NitroError
from sim.job import SimJob

RESULT_FILE = "conform_result.json"


@dataclass(frozen=True)
class ConformRun(SimJob):
    vector_dir: str  # absolute
    tag: str
    params: EngineParams
    FILE: ClassVar[str] = "conform_run.json"


def engine_array_map(spec) -> dict[str, tuple[str, type]]:
    """Reference array name -> (the engine tensor that holds it, the reference's dtype; the
    conversions are exact: int8 lanes to int8, the int24 deltas to int32). A block trained n > 1
    times per step (the CNN FC double update) holds its last pass's learning-side arrays, which
    the set names NAME@n."""
    out = {f"fwd/{spec.output_scaling.name}": ("out.yhat", np.int8),
           "loss_grad/output": ("out.e.c", np.int8)}
    for b in spec.blocks.values():
        n = spec.backward_order.count(b.name)
        last = "" if n == 1 else f"@{n}"
        out |= {f"fwd/{b.scaling.name}": (f"{b.name}.s", np.int8),
                f"fwd/{b.relu.name}": (f"{b.name}.a.c", np.int8),
                f"fwd/{b.pred_scaling.name}{last}": (f"{b.name}.yhat", np.int8),
                f"loss_grad/{b.name}{last}": (f"{b.name}.e.c", np.int8),
                f"bwd_out/{b.relu.name}{last}": (f"{b.name}.delta", np.int32)}
    return out


def required_arrays(net, step: str) -> list[str]:
    """The set's arrays a replay on the engine compares (or, `wupd/*`, derives its weights from)."""
    if step == "after":
        return ([f"{k}.weight" for k in net.params] + ["pred_out", "pred_class"]
                + [f"pred_local/{b}" for b in net.spec.blocks])
    return [*engine_array_map(net.spec), *(f"wupd/{k}" for k in net.params)]


def engine_arrays(spec, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference arrays the engine produced in one step."""
    return {name: outputs[t].astype(dt) for name, (t, dt) in engine_array_map(spec).items()}


async def conform_main(dut) -> None:
    from hw.engine.compiler import compile_network

    from .host import EngineBackend

    run = ConformRun.read()
    vs = load_set(Path(run.vector_dir), run.tag)
    spec = vs.net.spec
    batch = len(vs.data["step1_x"])
    prog = compile_network(spec, batch, run.params, vs.lr_inv)
    eng = EngineBackend(dut, prog)
    await eng.load_weights(vs.net.params)
    weights = {f"{k}.weight": np.asarray(v, np.int32) for k, v in vs.net.params.items()}
    reports = []
    steps = [key for key in vs.refs if key != "after"]
    batches = [(vs.data[f"step{k}_x"], vs.data[f"step{k}_y_onehot"]) for k in steps]
    for i, k in enumerate(steps):
        following = batches[i + 1] if i + 1 < len(steps) else None
        hw = await eng.train_step(*batches[i], vs.lr_inv, following=following)
        ours = engine_arrays(spec, hw.outputs)
        ref = {name: vs.refs[k][name] for name in ours}
        weights = _weights_after(vs, k, weights)
        reports.append(_compare(k, ref, ours, weights, hw))
    pred = await eng.predict(vs.data["test_x"])
    ours = {"pred_out": pred["out"], "pred_class": np.argmax(pred["out"], axis=1).astype(np.int64),
            **{f"pred_local/{b}": v for b, v in pred.items() if b != "out"}}
    final = vs.refs["after"]
    reports.append(_compare("after", {n: final[n] for n in ours}, ours,
                            {n: final[n] for n in weights}, hw))
    Path(RESULT_FILE).write_text(json.dumps([{"step": r.step, "arrays": r.arrays,
                                              "mismatches": [asdict(m) for m in r.mismatches]}
                                             for r in reports]))


def _weights_after(vs, step: str, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The weights after `step` (keyed by layer, or by layer + '.weight'): `weights` less every
    update the set recorded in the step (a doubly trained layer's @2 too)."""
    out = {}
    for name, w in weights.items():
        layer, ref = name.removesuffix(".weight"), vs.refs[step]
        upd = [u for u in ref if u == f"wupd/{layer}" or u.startswith(f"wupd/{layer}@")]
        out[name] = (w.astype(np.int64) - sum(ref[u].astype(np.int64) for u in upd)).astype(np.int32)
    return out


def _check_weight_storage(vs, prog) -> None:
    """The set's weights, at the start and after every step, fit the engine's weight storage
    (which would hold them wrapped): else NitroError naming the step and the layer, before the
    build."""
    from hw.engine.compiler import check_weight_storage

    def states():  # (when, the weights then)
        weights = {k: np.asarray(v) for k, v in vs.net.params.items()}
        yield "the start", weights
        for step in (k for k in vs.refs if k != "after"):
            weights = _weights_after(vs, step, weights)
            yield f"the end of step {step}", weights

    for when, weights in states():
        for layer, w in weights.items():
            try:
                check_weight_storage(prog, layer, w)
            except NitroError as exc:
                raise NitroError(f"conform --engine: at {when}, the set's "
                                 f"{str(exc).removeprefix('engine: ')}") from None


def _check_updates(vs, step: str, ref: dict) -> None:
    """The replay takes each step's weights from the set's `wupd/*` updates: int32 arrays of their
    layer's weight shape (else NitroError naming the array, before the build)."""
    for name, a in ref.items():
        layer = name.removeprefix("wupd/").split("@")[0]
        if name.startswith("wupd/") and layer in vs.net.params:
            want = vs.net.params[layer].shape
            if a.dtype != np.int32 or a.shape != want:
                raise NitroError(f"conform --engine: {name} of step {step} is {a.dtype}{a.shape}; the "
                                 f"update of {layer} is int32{want}")


def _compare(step: str, ref: dict, ours: dict, weights: dict, hw) -> StepReport:
    """Outputs and weights (and the engine's transposed weight copies) against the set."""
    ref, ours = dict(ref), dict(ours)
    for name, w in weights.items():
        layer = name.removesuffix(".weight")
        ref[name], ours[name] = w, hw.weights[layer].astype(np.int32)
        if layer in hw.wcopies:
            label = f"{name} (engine's transposed copy)"
            ref[label], ours[label] = w, hw.wcopies[layer].astype(np.int32)
    return compare_arrays(step, ref, ours)


def run_engine_conformance(vec_dir: str | Path, tag: str,
                           on_step: Callable[[StepReport], None] | None = None,
                           work_dir: Path | None = None, params=None) -> list[StepReport]:
    """Check the set and the engine's support for its network before building anything, then
    replay it on the Verilated engine (`params`: its EngineParams, default the one generated for the set's network);
    the reports as `model.conform.run_conformance` gives them."""
    from hw.engine.compiler import compile_network
    from .build import SimulationFailed, build_engine, remove_run_folder, run_engine_test
    from .host import programs

    vec_dir = Path(vec_dir).resolve()
    vs = load_set(vec_dir, tag)
    p = engine_params(params, vs.net.spec)
    prog = compile_network(vs.net.spec, len(vs.data["step1_x"]), p, vs.lr_inv)
    programs(prog)
    for step, ref in vs.refs.items():  # every array the engine produces must be in the set
        require_arrays(tag, step, ref, required_arrays(vs.net, step), "the engine")
        _check_updates(vs, step, ref)
    _check_weight_storage(vs, prog)
    build = build_engine(p)
    tdir = Path(work_dir) if work_dir else build.build_dir / f"conform-{tag}-{os.getpid()}"
    t0 = time.perf_counter()
    try:
        run_engine_test(build, "sim.engine.tb_conform", tdir, ConformRun(str(vec_dir), tag, p),
                        log_file=tdir.parent / f"{tdir.name}.log")
    except SystemExit as e:
        raise SimulationFailed(f"conform --engine: the simulation failed ({e}); see {tdir}") from None
    res_file = tdir / RESULT_FILE
    if not res_file.exists():
        raise SimulationFailed(f"conform --engine: the simulation wrote no result ({tdir})")
    reports = [StepReport(r["step"], r["arrays"], [Mismatch(**{**m, "index": tuple(m["index"])
                                                              if m["index"] is not None else None})
                                                   for m in r["mismatches"]])
               for r in json.loads(res_file.read_text())]
    for rep in reports:
        if on_step:
            on_step(rep)
    if not sum(r.arrays for r in reports):
        raise NitroError("conform --engine: no array was compared")
    if not work_dir and not any(r.mismatches for r in reports):
        remove_run_folder(tdir)
    print(f"(engine simulation {time.perf_counter() - t0:.1f} s)")
    return reports
