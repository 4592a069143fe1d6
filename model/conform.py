"""Bit-exact conformance against reference vectors (`TAG_init.npz`, `TAG_data.npz`,
`TAG_stepK.npz`, `TAG_after3.npz`, `TAG_meta.json`; see ../shared/refvectors/README.md).

The network is built from the meta file's own description (`structure`, `leaves`,
`backward_block_order`), so any network the reference can describe is checked, not only the
shipped four.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .layers import rss_loss_reference
from .network import Network, Trace
from .numerics import NitroError
from .spec import Block, Conv2d, Dropout, Flatten, Linear, MaxPool2d, NetworkSpec, NitroReLU, Scaling


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise NitroError(f"missing vector file {path}") from None
    except Exception as exc:  # zipfile/pickle/format errors all mean a corrupt file
        raise NitroError(f"cannot read vector file {path}: {exc}") from None


def _pair(v, what: str) -> tuple[int, int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v, v]
    if len(v) != 2:
        raise NitroError(f"{what}: expected 2 values, got {v}")
    return int(v[0]), int(v[1])


def _gemm_leaf(leaf: dict) -> Linear | Conv2d:
    opt = leaf.get("optimizer", {})
    amp = int(opt.get("effective_lr_amp_factor", leaf.get("lr_amp_factor", 1)))
    decay = int(opt.get("weight_decay_inv", leaf.get("decay_rate_inv", 0)))
    if leaf["type"] == "IntegerLinear":
        return Linear(leaf["name"], int(leaf["in_features"]), int(leaf["out_features"]), amp, decay)
    kh, kw = _pair(leaf["kernel_size"], f"{leaf['name']} kernel_size")
    ph, pw = _pair(leaf.get("padding", 0), f"{leaf['name']} padding")
    if kh != kw or ph != pw or _pair(leaf.get("stride", 1), "stride") != (1, 1):
        raise NitroError(f"{leaf['name']}: only square stride-1 convolutions with equal padding")
    return Conv2d(leaf["name"], int(leaf["in_channels"]), int(leaf["out_channels"]), kh, ph, amp, decay)


def _leaf(leaf: dict):
    t, name = leaf.get("type"), leaf.get("name")
    if t in ("IntegerLinear", "IntegerConv2d"):
        return _gemm_leaf(leaf)
    if t == "ConstantScaling":
        return Scaling(name, int(leaf["fwd_factor"]))
    if t == "NitroLeakyReLU":
        return NitroReLU(name, int(leaf.get("negative_slope_inv", 4)))
    if t == "MaxPool2d":
        kernel = _pair(leaf["kernel_size"], f"{name} kernel_size")
        if _pair(leaf.get("stride", kernel), f"{name} stride") != kernel:
            raise NitroError(f"{name}: only stride == kernel max-pools are supported")
        return MaxPool2d(name, kernel, _pair(leaf.get("padding", 0), f"{name} padding"))
    if t == "Flatten":
        return Flatten(name)
    if t == "Dropout":
        return Dropout(name, float(leaf.get("rate", leaf.get("p", 0.0))))
    raise NitroError(f"meta describes layer {name!r} of unknown type {t!r}")


def spec_from_meta(meta: dict, input_shape: tuple[int, int, int], num_classes: int) -> NetworkSpec:
    """Build the network the reference meta file describes."""
    try:
        leaves = {leaf["name"]: _leaf(leaf) for leaf in meta["leaves"]}
        items, output = [], None
        for st in meta["structure"]:
            if st["kind"] == "block":
                layer, scaling, relu = (leaves[n] for n in st["fwd"])
                pred = [leaves[n] for n in st["pred"]]
                pool = next((p for p in pred if isinstance(p, MaxPool2d)), None)
                flat = next((p for p in pred if isinstance(p, Flatten)), None)
                lin, sc = pred[-2], pred[-1]
                items.append(Block(st["name"], layer, scaling, relu, pool, flat, lin, sc))
            elif st["kind"] == "leaf":
                items.append(leaves[st["name"]])
            elif st["kind"] == "output":
                output = (leaves[st["layers"][0]], leaves[st["layers"][1]])
            else:
                raise NitroError(f"unknown structure kind {st['kind']!r}")
        if output is None:
            raise NitroError("meta structure has no output layer")
        order = tuple(meta["backward_block_order"])
    except KeyError as exc:
        raise NitroError(f"meta file lacks key {exc}") from None
    return NetworkSpec(tuple(input_shape), tuple(items), output[0], output[1], order, num_classes)


@dataclass
class Mismatch:
    step: str
    array: str
    index: tuple | None
    ours: object
    ref: object

    def __str__(self) -> str:
        where = f" at index {self.index}" if self.index is not None else ""
        return f"MISMATCH step {self.step}, array {self.array!r}{where}: ours={self.ours}, reference={self.ref}"


@dataclass
class StepReport:
    step: str
    arrays: int
    mismatches: list[Mismatch] = field(default_factory=list)


def compare_arrays(step: str, ref: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> StepReport:
    """Every reference array must exist in `ours` with the same dtype, shape and values."""
    rep = StepReport(step, len(ref))
    for key, r in ref.items():
        if key not in ours:
            rep.mismatches.append(Mismatch(step, key, None, "<not produced>", f"{r.dtype}{r.shape}"))
            continue
        o = np.asarray(ours[key])
        if o.dtype != r.dtype or o.shape != r.shape:
            rep.mismatches.append(Mismatch(step, key, None, f"{o.dtype}{o.shape}", f"{r.dtype}{r.shape}"))
            continue
        diff = np.argwhere(o != r)
        if diff.size:
            idx = tuple(int(i) for i in diff[0])
            rep.mismatches.append(Mismatch(step, key, idx, o[idx].item(), r[idx].item()))
    return rep


def run_conformance(vec_dir: str | Path, tag: str,
                    on_step: Callable[[StepReport], None] | None = None) -> list[StepReport]:
    """Replay the recorded steps of `tag` from its initial weights; compare every array."""
    vec_dir = Path(vec_dir)
    meta_path = vec_dir / f"{tag}_meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise NitroError(f"no vector set {tag!r} in {vec_dir} (missing {meta_path.name})") from None
    except json.JSONDecodeError as exc:
        raise NitroError(f"corrupt meta file {meta_path}: {exc}") from None
    data = _load_npz(vec_dir / f"{tag}_data.npz")
    init = _load_npz(vec_dir / f"{tag}_init.npz")
    x1, y1 = data["step1_x"], data["step1_y_onehot"]
    spec = spec_from_meta(meta, x1.shape[1:], y1.shape[1])
    net = Network(spec, {k.removesuffix(".weight"): v for k, v in init.items()})
    lr_inv = int(meta.get("config", {}).get("lr_inv", 512))
    reports = []
    for k in range(1, int(meta.get("steps", 3)) + 1):
        ref = _load_npz(vec_dir / f"{tag}_step{k}.npz")
        trace = Trace()
        res = net.train_step(data[f"step{k}_x"], data[f"step{k}_y_onehot"], lr_inv, trace=trace)
        ours = dict(trace)
        ours["ref_train_acc"] = np.float64(res.correct / len(res.y_hat))
        ours["ref_l2_loss_output"] = np.float64(rss_loss_reference(trace["out"], trace["y_onehot"]))
        reports.append(compare_arrays(str(k), ref, ours))
        if on_step:
            on_step(reports[-1])
    ref = _load_npz(vec_dir / f"{tag}_after3.npz")
    test_x = data["test_x"]
    pred = net.predict(test_x, batch=128)
    ours = {f"{k}.weight": v for k, v in net.params.items()}
    ours["pred_out"] = pred
    ours["pred_class"] = np.argmax(pred, axis=1).astype(np.int64)
    ours.update({f"pred_local/{k}": v for k, v in net.predict_local(test_x, batch=128).items()})
    reports.append(compare_arrays("after", ref, ours))
    if on_step:
        on_step(reports[-1])
    return reports

