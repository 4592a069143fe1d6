"""Bit-exact conformance against reference vectors (`TAG_init.npz`, `TAG_data.npz`,
`TAG_stepK.npz`, `TAG_after3.npz`, `TAG_meta.json`; see ../shared/refvectors/README.md).

The network is built from the meta file's own description (`structure`, `leaves`,
`backward_block_order`), so any network the reference can describe is checked, not only the
shipped four. Everything read is validated first (types, the shape of every layer's input, the
arrays of every step), so a malformed vector set is one clear error naming its file, never a
failure deep inside the replay.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import INT64_MAX, check_divisor, is_int, short_repr
from .datasets import one_line
from .layers import SLOPE_INV, check_slope_inv
from .network import Network
from .numerics import NitroError
from .spec import Block, Conv2d, Flatten, Linear, MaxPool2d, NetworkSpec, NitroReLU, Scaling
from .vectors import check_tag, final_arrays, read_npz, set_file, step_arrays

_MISSING = object()


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    return read_npz(path, "vector file")


def _int(d: dict, key: str, what: str, lo: int, hi: int = INT64_MAX, default: Any = _MISSING) -> int:
    """d[key] as an integer in lo..hi (`default` when absent, if given)."""
    v = d.get(key, default)
    if v is _MISSING:
        raise NitroError(f"{what} lacks {key!r}")
    if not is_int(v) or not lo <= v <= hi:
        raise NitroError(f"{what}: {key!r} must be an integer in {lo}..{hi}, got {short_repr(v)}")
    return v


def _pair(d: dict, key: str, what: str, lo: int, default: Any = _MISSING) -> tuple[int, int]:
    """d[key] as (h, w): a list of two integers >= lo, or one integer for both."""
    v = d.get(key, default)
    if v is _MISSING:
        raise NitroError(f"{what} lacks {key!r}")
    v = list(v) if isinstance(v, (list, tuple)) else [v, v]
    if len(v) != 2 or not all(is_int(e) and lo <= e <= INT64_MAX for e in v):
        raise NitroError(f"{what}: {key!r} must be 2 integers >= {lo}, got {short_repr(v)}")
    return v[0], v[1]


def _dict(v: Any, what: str) -> dict:
    if not isinstance(v, dict):
        raise NitroError(f"{what} must be a JSON object, got {type(v).__name__}")
    return v


def _list(v: Any, what: str, of: type) -> list:
    if not isinstance(v, list) or not all(isinstance(e, of) for e in v):
        raise NitroError(f"{what} must be a list of {of.__name__}")
    return v


def _gemm_leaf(leaf: dict, what: str) -> Linear | Conv2d:
    opt = _dict(leaf.get("optimizer", {}), f"{what} optimizer")
    amp = _int(opt, "effective_lr_amp_factor", what, 1,
               default=_int(leaf, "lr_amp_factor", what, 1, default=1))
    decay = _int(opt, "weight_decay_inv", what, 0, default=_int(leaf, "decay_rate_inv", what, 0, default=0))
    if leaf["type"] == "IntegerLinear":
        return Linear(leaf["name"], _int(leaf, "in_features", what, 1), _int(leaf, "out_features", what, 1),
                      amp, decay)
    kh, kw = _pair(leaf, "kernel_size", what, 1)
    ph, pw = _pair(leaf, "padding", what, 0, default=0)
    if kh != kw or ph != pw or _pair(leaf, "stride", what, 1, default=1) != (1, 1):
        raise NitroError(f"{what}: only square stride-1 convolutions with equal padding")
    if ph >= kh:
        raise NitroError(f"{what}: padding {ph} must be below the kernel size {kh}")
    return Conv2d(leaf["name"], _int(leaf, "in_channels", what, 1), _int(leaf, "out_channels", what, 1),
                  kh, ph, amp, decay)


def _maxpool_leaf(leaf: dict, what: str) -> MaxPool2d:
    kernel = _pair(leaf, "kernel_size", what, 1)
    if _pair(leaf, "stride", what, 1, default=list(kernel)) != kernel:
        raise NitroError(f"{what}: only stride == kernel max-pools are supported")
    padding = _pair(leaf, "padding", what, 0, default=0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise NitroError(f"{what}: padding {padding} is more than half the kernel {kernel}")
    return MaxPool2d(leaf["name"], kernel, padding)


def _relu_leaf(leaf: dict, what: str) -> NitroReLU:
    slope = _int(leaf, "negative_slope_inv", what, 1, default=SLOPE_INV)
    try:
        check_slope_inv(slope)
    except NitroError as exc:
        raise NitroError(f"{what}: {exc}") from None
    return NitroReLU(leaf["name"], slope)


_LEAF_TYPES = {
    "IntegerLinear": _gemm_leaf,
    "IntegerConv2d": _gemm_leaf,
    "ConstantScaling": lambda leaf, what: Scaling(leaf["name"], _int(leaf, "fwd_factor", what, 1)),
    "NitroLeakyReLU": _relu_leaf,
    "MaxPool2d": _maxpool_leaf,
    "Flatten": lambda leaf, what: Flatten(leaf["name"]),
}


def _leaf(leaf: Any, index: int):
    leaf = _dict(leaf, f"leaves[{index}]")
    name, t = leaf.get("name"), leaf.get("type")
    if not isinstance(name, str) or not name:
        raise NitroError(f"leaves[{index}]: 'name' must be a non-empty string")
    what = f"layer {name!r}"
    if t == "Dropout":
        raise NitroError(f"{what} is a dropout layer: conformance replays deterministic networks only")
    if not isinstance(t, str) or t not in _LEAF_TYPES:
        raise NitroError(f"{what} has unknown type {short_repr(t)}")
    return _LEAF_TYPES[t](leaf, what)


def _resolve(leaves: dict, names: Any, what: str, types: list[type | tuple]) -> list:
    """The leaves `names` refers to, which must have the given types in order."""
    if not isinstance(names, list) or len(names) != len(types):
        raise NitroError(f"{what} must be a list of {len(types)} layer names, got {short_repr(names)}")
    out = []
    for n, t in zip(names, types):
        if not isinstance(n, str) or n not in leaves:
            raise NitroError(f"{what} names layer {short_repr(n)}, which 'leaves' does not describe")
        if not isinstance(leaves[n], t):
            raise NitroError(f"{what}: layer {n!r} is a {type(leaves[n]).__name__}, not the expected kind")
        out.append(leaves[n])
    return out


_PRED_HEADS = ([], [MaxPool2d], [Flatten], [MaxPool2d, Flatten])  # before a block's Linear, Scaling


def _block(st: dict, leaves: dict, what: str) -> Block:
    """fwd: GEMM, Scaling, ReLU; pred: [MaxPool2d] [Flatten] Linear Scaling (the reference's order)."""
    name = st.get("name")
    if not isinstance(name, str) or not name:
        raise NitroError(f"{what}: 'name' must be a non-empty string")
    layer, scaling, relu = _resolve(leaves, st.get("fwd"), f"block {name!r} fwd",
                                    [(Linear, Conv2d), Scaling, NitroReLU])
    where = f"block {name!r} pred"
    pred_names = _list(st.get("pred"), where, str)
    head = [type(leaves.get(n)) for n in pred_names[:-2]]
    if len(pred_names) < 2 or head not in _PRED_HEADS:
        raise NitroError(f"{where} must name [MaxPool2d] [Flatten] IntegerLinear ConstantScaling layers")
    pred = _resolve(leaves, pred_names, where, head + [Linear, Scaling])
    pool = next((p for p in pred if isinstance(p, MaxPool2d)), None)
    flat = next((p for p in pred if isinstance(p, Flatten)), None)
    return Block(name, layer, scaling, relu, pool, flat, pred[-2], pred[-1])


def spec_from_meta(meta: Any, input_shape: tuple[int, int, int], num_classes: int) -> NetworkSpec:
    """Build the network the reference meta file describes; NitroError if it is malformed or if a
    layer does not accept the shape of its input."""
    meta = _dict(meta, "the meta file")
    for key in ("leaves", "structure", "backward_block_order"):
        if key not in meta:
            raise NitroError(f"meta file lacks key {key!r}")
    described = [_leaf(leaf, i) for i, leaf in enumerate(_list(meta["leaves"], "'leaves'", dict))]
    leaves = {leaf.name: leaf for leaf in described}
    if len(leaves) != len(described):
        raise NitroError("'leaves' describes two layers of the same name")
    items, outputs = [], []
    for i, st in enumerate(_list(meta["structure"], "'structure'", dict)):
        what, kind = f"structure[{i}]", st.get("kind")
        if kind == "block":
            items.append(_block(st, leaves, what))
        elif kind == "leaf":
            items += _resolve(leaves, [st.get("name")], what, [(MaxPool2d, Flatten)])
        elif kind == "output":
            outputs.append(_resolve(leaves, st.get("layers"), what, [Linear, Scaling]))
        else:
            raise NitroError(f"{what}: unknown structure kind {short_repr(kind)}")
    if len(outputs) != 1:
        raise NitroError(f"'structure' must have one output layer, has {len(outputs)}")
    blocks = {it.name for it in items if isinstance(it, Block)}
    if len(blocks) != sum(isinstance(it, Block) for it in items):
        raise NitroError("'structure' has two blocks of the same name")
    order = tuple(_list(meta["backward_block_order"], "'backward_block_order'", str))
    unknown = sorted(set(order) - blocks)
    if unknown:
        raise NitroError(f"'backward_block_order' names {unknown}, which are not blocks of 'structure'")
    spec = NetworkSpec(tuple(input_shape), tuple(items), outputs[0][0], outputs[0][1], order, num_classes)
    _check_shapes(spec)
    return spec


def _gemm_output(layer: Linear | Conv2d, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(layer, Linear):
        if shape != (layer.in_features,):
            raise NitroError(f"layer {layer.name!r} takes {layer.in_features} features, its input has shape {shape}")
        return (layer.out_features,)
    if len(shape) != 3 or shape[0] != layer.in_channels:
        raise NitroError(f"layer {layer.name!r} takes {layer.in_channels} channels, its input has shape {shape}")
    h, w = (side + 2 * layer.padding - layer.kernel + 1 for side in shape[1:])
    if h < 1 or w < 1:
        raise NitroError(f"layer {layer.name!r}: kernel {layer.kernel} is larger than its input {shape}")
    return (layer.out_channels, h, w)


def _pool_output(pool: MaxPool2d, shape: tuple[int, ...]) -> tuple[int, ...]:
    (kh, kw), (ph, pw) = pool.kernel, pool.padding
    if len(shape) != 3 or shape[1] + 2 * ph < kh or shape[2] + 2 * pw < kw:
        raise NitroError(f"max-pool {pool.name!r} (kernel {pool.kernel}) does not fit its input {shape}")
    return (shape[0], (shape[1] + 2 * ph) // kh, (shape[2] + 2 * pw) // kw)


def _classifier(layer: Linear, shape: tuple[int, ...], classes: int) -> None:
    _gemm_output(layer, shape)
    if layer.out_features != classes:
        raise NitroError(f"layer {layer.name!r} has {layer.out_features} outputs, the targets {classes} classes")


def _check_shapes(spec: NetworkSpec) -> None:
    """Walk the input shape through the network: each layer must accept what reaches it."""
    shape = tuple(spec.input_shape)
    for it in spec.items:
        if isinstance(it, Block):
            shape = _gemm_output(it.layer, shape)
            pred = _pool_output(it.pool, shape) if it.pool else shape
            _classifier(it.pred, (math.prod(pred),) if it.flatten else pred, spec.num_classes)
        elif isinstance(it, MaxPool2d):
            shape = _pool_output(it, shape)
        else:
            shape = (math.prod(shape),)
    _classifier(spec.output, shape, spec.num_classes)


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
        diff = np.argwhere(o != r)  # (count, ndim): one row per differing element, also for 0-d arrays
        if len(diff):
            idx = tuple(int(i) for i in diff[0])
            rep.mismatches.append(Mismatch(step, key, idx, o[idx].item(), r[idx].item()))
    return rep


def _read_meta(path: Path, tag: str) -> dict:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise NitroError(f"vector folder {path.parent} not found (no such folder)") from None
        raise NitroError(f"no vector set {tag!r} in {path.parent} (missing {path.name})") from None
    except OSError as exc:
        raise NitroError(f"cannot read meta file {path}: {exc.strerror or one_line(exc)}") from None
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSON and text-encoding errors; absurd nesting
        raise NitroError(f"corrupt meta file {path}: {type(exc).__name__}: {one_line(exc)}") from None
    return _in_file(path, _dict, meta, "the meta file")


def _batch(data: dict, key: str, ndim: int) -> np.ndarray:
    a = data.get(key)
    if a is None:
        raise NitroError(f"lacks array {key!r}")
    if a.dtype != np.int8 or a.ndim != ndim or 0 in a.shape:
        raise NitroError(f"array {key!r} must be a non-empty {ndim}-D int8 array, got {a.dtype}{a.shape}")
    return a


def _check_data(data: dict, steps: int) -> tuple[tuple[int, ...], int]:
    """Input shape (C, H, W) and class count of the recorded batches, which must all agree."""
    shape, classes = _batch(data, "step1_x", 4).shape[1:], _batch(data, "step1_y_onehot", 2).shape[1]
    for k in range(1, steps + 1):
        x, y = _batch(data, f"step{k}_x", 4), _batch(data, f"step{k}_y_onehot", 2)
        if x.shape[1:] != shape or y.shape != (len(x), classes):
            raise NitroError(f"step {k}: images {x.shape} and targets {y.shape} do not match step 1's "
                             f"{shape} images of {classes} classes")
    if _batch(data, "test_x", 4).shape[1:] != shape:
        raise NitroError(f"'test_x' images have shape {data['test_x'].shape[1:]}, the training images {shape}")
    return shape, classes


def _in_file(path: Path, check: Callable, *args, **kwargs):
    """check(*args, **kwargs), its error prefixed with the file it is about."""
    try:
        return check(*args, **kwargs)
    except NitroError as exc:
        raise NitroError(f"{path}: {exc}") from None


def _reference(path: Path) -> dict[str, np.ndarray]:
    ref = _load_npz(path)
    if not ref:
        raise NitroError(f"vector file {path} holds no arrays: nothing to compare")
    return ref


@dataclass
class VectorSet:
    net: Network  # built from the meta file, holding the initial weights
    lr_inv: int
    data: dict[str, np.ndarray]
    refs: dict[str, dict[str, np.ndarray]]  # "1".."N", "after" -> the reference arrays


def load_set(vec_dir: Path, tag: str) -> VectorSet:
    """Read and check every file of the set before anything is replayed."""
    check_tag(tag)
    meta_path, data_path, init_path = (set_file(vec_dir, tag, part) for part in ("meta", "data", "init"))
    meta = _read_meta(meta_path, tag)
    steps = _in_file(meta_path, _int, meta, "steps", "the meta file", 1)
    config = _in_file(meta_path, _dict, meta.get("config", {}), "'config'")
    lr_inv = _in_file(meta_path, _int, config, "lr_inv", "'config'", 1, default=512)
    data = _load_npz(data_path)
    shape, classes = _in_file(data_path, _check_data, data, steps)
    spec = _in_file(meta_path, spec_from_meta, meta, shape, classes)
    _in_file(meta_path, check_divisor, spec, lr_inv, "config.lr_inv")
    init = _load_npz(init_path)
    if any(w.dtype != np.int32 for w in init.values()):
        raise NitroError(f"{init_path}: initial weights must be int32")
    net = _in_file(init_path, Network, spec, {k.removesuffix(".weight"): v for k, v in init.items()})
    refs = {str(k): _reference(set_file(vec_dir, tag, f"step{k}")) for k in range(1, steps + 1)}
    refs["after"] = _reference(set_file(vec_dir, tag, "after3"))
    return VectorSet(net, lr_inv, data, refs)


def constant_arrays(vs: VectorSet) -> list[str]:
    """The set's arrays that hold one value, every element in every step: a replay that matches
    them shows little about what produced them."""
    names = dict.fromkeys(n for ref in vs.refs.values() for n in ref)
    return [n for n in names
            if np.unique(np.concatenate([np.ravel(ref[n]) for ref in vs.refs.values() if n in ref])).size == 1]


def require_arrays(tag: str, step, ref: dict, names: list[str], producer: str) -> None:
    """NitroError unless step `step` of set `tag` holds every array in `names` (those `producer`
    produces): a set missing some would pass on what it holds."""
    if lacking := [n for n in names if n not in ref]:
        raise NitroError(f"vector set {tag!r} step {step} lacks {len(lacking)} of the {len(names)} "
                         f"arrays {producer} produces ({', '.join(lacking[:3])}"
                         f"{', ...' if len(lacking) > 3 else ''}): they could not be compared")


def run_conformance(vec_dir: str | Path, tag: str,
                    on_step: Callable[[StepReport], None] | None = None) -> list[StepReport]:
    """Replay the recorded steps of `tag` from its initial weights; compare every array, and
    every array the golden model produces must be in the set (else NitroError: a set missing
    some would pass on what it holds)."""
    vs = load_set(Path(vec_dir), tag)
    reports = []
    for step, ref in vs.refs.items():
        ours = (final_arrays(vs.net, vs.data["test_x"]) if step == "after" else
                step_arrays(vs.net, vs.data[f"step{step}_x"], vs.data[f"step{step}_y_onehot"], vs.lr_inv))
        require_arrays(tag, step, ref, list(ours), "the golden model")
        reports.append(compare_arrays(step, ref, ours))
        if on_step:
            on_step(reports[-1])
    return reports
