"""Training checkpoints: atomic writes, a content hash, and exact resume.

A checkpoint is one .npz holding the weights, the RNG state, the schedule state, the metrics so far
and the config text, plus `meta` (JSON) with a sha256 over every other array. Loading re-hashes,
refuses a file whose content does not match or whose config differs from the run's, and then
checks the whole structure (a valid hash only proves the file is what was written), so nothing
that uses a loaded checkpoint can fail on its content.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .config import ExperimentConfig, check_divisor, is_int, parse_config, short_repr, with_seed
from .datasets import image_shape, one_line
from .fileio import write_atomic
from .numerics import NitroError
from .optim import PlateauState
from .spec import NetworkSpec
from .vectors import read_npz

FORMAT = "nitro-checkpoint-2"  # 2: the state records its data digest
READABLE = ("nitro-checkpoint-1", FORMAT)
MT_KEYS = 624  # words of numpy's MT19937 state


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a run: the row train.py appends to the history (and to metrics.csv)."""

    epoch: int
    lr_inv: int
    train_acc: float
    test_acc: float
    train_s: float
    train_img_s: float
    wraps: int
    stopped: bool


@dataclass(frozen=True)
class BestEpoch:
    """The epoch with the best test accuracy so far (test_acc -1.0 before the first)."""

    test_acc: float = -1.0
    train_acc: float = 0.0
    epoch: int = 0


def _field_types(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


# what a checkpoint's state holds, as JSON objects with these keys and types
HISTORY_FIELDS = _field_types(EpochRecord)
BEST_FIELDS = _field_types(BestEpoch)
PLATEAU_FIELDS = _field_types(PlateauState)
STATE_KEYS = ("lr_inv", "plateau", "stopper", "best", "history", "wraps")


@dataclass
class Checkpoint:
    epoch: int  # epochs completed
    params: dict[str, np.ndarray]
    rng_state: tuple
    state: dict  # schedule/best/history/wraps: JSON-serialisable
    config_text: str
    config_digest: str
    order: np.ndarray  # current training-set row order (the reference reshuffles cumulatively)


class _Corrupt(Exception):
    """Content that cannot be a checkpoint; load_checkpoint names the file."""


def _content_hash(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def _json_bytes(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def save_checkpoint(path: Path, ck: Checkpoint) -> str:
    """Write `ck` atomically; returns its content hash."""
    name, keys, pos, has_gauss, cached = ck.rng_state
    arrays = {f"param/{k}": v for k, v in ck.params.items()}
    arrays["rng/keys"] = np.asarray(keys, dtype=np.uint32)
    arrays["order"] = np.asarray(ck.order, dtype=np.int64)
    arrays["state"] = _json_bytes({"epoch": ck.epoch, "rng": [name, int(pos), int(has_gauss), float(cached)],
                                   **ck.state})
    arrays["config_text"] = np.frombuffer(ck.config_text.encode(), dtype=np.uint8)
    return write_sealed(path, arrays, ck.config_digest)


def write_sealed(path: Path, arrays: dict[str, np.ndarray], config_digest: str) -> str:
    """Hash `arrays`, add the `meta` record and write the .npz atomically; returns the hash.

    save_checkpoint's back end; public so that tools (the parser fuzzer) can seal edited contents
    and reach the checks behind the hash.
    """
    digest = _content_hash(arrays)
    meta = {"format": FORMAT, "sha256": digest, "config_digest": config_digest}
    buf = io.BytesIO()
    np.savez(buf, **arrays, meta=_json_bytes(meta))
    write_atomic(Path(path), buf.getvalue())
    return digest


def load_checkpoint(path: Path, config_digest: str | None = None) -> Checkpoint:
    """Read and verify a checkpoint; `config_digest` (if given) must match the file's."""
    path = Path(path)
    arrays = read_npz(path, "checkpoint")
    try:
        meta = _verified_meta(arrays)
        if config_digest is not None:
            _same_config(path, meta["config_digest"], config_digest)
        return _decode(arrays, meta["config_digest"])
    except _Corrupt as exc:
        raise NitroError(f"checkpoint {path} is corrupt: {exc}") from None


def _same_config(path: Path, written: str, wanted: str) -> None:
    if written != wanted:
        raise NitroError(f"checkpoint {path} was written for a different config (digest {written}, "
                         f"this config {wanted}): use it with the config it was trained with")


def load_checkpoint_to_resume(path: Path, cfg: ExperimentConfig) -> Checkpoint:
    """A checkpoint of `cfg`'s own run; one of `cfg` run with another seed (`load_checkpoint_for`)
    is named as such (the run resumes with the same --seed)."""
    ck, written_for = load_checkpoint_for(path, cfg)
    if written_for is not cfg:
        seed = written_for.train.seed
        raise NitroError(f"checkpoint {path} was trained with seed {seed}: resume it with --seed {seed}")
    return ck


def load_checkpoint_for(path: Path, cfg: ExperimentConfig) -> tuple[Checkpoint, ExperimentConfig]:
    """A checkpoint of `cfg`'s run, or of `cfg` run with another seed (`train --seed`), and the
    config it was written for (`cfg`, or `cfg` with that seed)."""
    ck = load_checkpoint(path)
    if ck.config_digest != cfg.digest():
        cfg = with_seed(cfg, parse_config(ck.config_text, cfg.name).train.seed)
        _same_config(Path(path), ck.config_digest, cfg.digest())
    return ck, cfg


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise _Corrupt(what)


def _json(arrays: dict[str, np.ndarray], key: str) -> Any:
    a = arrays.pop(key, None)
    _need(a is not None, f"no {key!r} record")
    _need(a.dtype == np.uint8 and a.ndim == 1, f"{key!r} is {a.dtype}{a.shape}, not a byte string")
    try:
        return json.loads(a.tobytes())
    except (ValueError, RecursionError) as exc:  # JSON and text-encoding errors; absurd nesting
        raise _Corrupt(f"{key!r} is not JSON ({type(exc).__name__}: {one_line(exc)})") from None


def _verified_meta(arrays: dict[str, np.ndarray]) -> dict:
    meta = _json(arrays, "meta")
    _need(isinstance(meta, dict) and meta.get("format") in READABLE,
          f"unknown format (expected a {' or '.join(map(repr, READABLE))} meta record)")
    _need(isinstance(meta.get("sha256"), str) and isinstance(meta.get("config_digest"), str)
          and re.fullmatch(r"[0-9a-f]+", meta["config_digest"]) is not None,
          "meta record lacks its sha256 or its config_digest (hexadecimal)")
    _need(_content_hash(arrays) == meta["sha256"], "content hash mismatch (file modified or damaged)")
    return meta


def _typed(v: Any, kind: type) -> bool:
    """JSON value `v` is a `kind` (int: not bool; float: any number)."""
    if kind is int:
        return is_int(v)
    if kind is float:
        return is_int(v) or isinstance(v, float)
    return isinstance(v, kind)


def _record(v: Any, spec: dict[str, type], what: str) -> dict:
    """A JSON object with exactly the keys of `spec`, each of its type; counts are >= 0."""
    _need(isinstance(v, dict) and set(v) == set(spec), f"{what} must have exactly the keys {sorted(spec)}")
    for key, kind in spec.items():
        _need(_typed(v[key], kind) and not (kind is int and v[key] < 0),
              f"{what}: {key!r} must be a {'count' if kind is int else kind.__name__}, got {short_repr(v[key])}")
    return v


def _check_state(state: dict, epoch: int) -> None:
    """The schedule, best result, history and wrap counts train.py saves and resume restores."""
    _need(_typed(state["lr_inv"], int) and state["lr_inv"] > 0, "'lr_inv' must be a positive integer")
    _record(state["plateau"], PLATEAU_FIELDS, "'plateau'")
    _record(state["stopper"], PLATEAU_FIELDS, "'stopper'")
    _record(state["best"], BEST_FIELDS, "'best'")
    history = state["history"]
    _need(isinstance(history, list) and len(history) == epoch, f"'history' must hold one row per epoch ({epoch})")
    for i, row in enumerate(history):
        _need(_record(row, HISTORY_FIELDS, f"'history'[{i}]")["epoch"] == i + 1, f"'history'[{i}] is not epoch {i + 1}")
    data = state.get("data", "0" * 16)
    _need(isinstance(data, str) and re.fullmatch(r"[0-9a-f]{16}", data) is not None,
          "'data' must be a digest of 16 hexadecimal digits")
    wraps = state["wraps"]
    _need(isinstance(wraps, list) and all(
        isinstance(w, list) and len(w) == 3 and isinstance(w[0], str) and isinstance(w[1], str)
        and is_int(w[2]) and w[2] >= 0 for w in wraps), "'wraps' must be a list of [layer, tensor, count]")


def _rng_state(words: Any, rng: Any) -> tuple:
    """numpy RandomState.set_state's tuple: ('MT19937', 624 uint32 words, pos, has_gauss, cached)."""
    _need(isinstance(words, np.ndarray) and words.dtype == np.uint32 and words.shape == (MT_KEYS,),
          f"'rng/keys' must be {MT_KEYS} uint32 words")
    _need(isinstance(rng, list) and len(rng) == 4 and rng[0] == "MT19937" and is_int(rng[1])
          and 0 <= rng[1] <= MT_KEYS and rng[2] in (0, 1) and is_int(rng[2]) and _typed(rng[3], float),
          "'rng' must be ['MT19937', position 0..624, has_gauss 0/1, cached gaussian]")
    return rng[0], words, rng[1], rng[2], float(rng[3])


def _order(order: Any) -> np.ndarray:
    _need(isinstance(order, np.ndarray) and order.dtype == np.int64 and order.ndim == 1 and order.size > 0,
          "'order' must be a non-empty int64 vector")
    _need(np.array_equal(np.sort(order), np.arange(order.size)), "'order' is not a permutation of the training rows")
    return order


def _config(text_bytes: Any) -> ExperimentConfig:
    _need(isinstance(text_bytes, np.ndarray) and text_bytes.dtype == np.uint8 and text_bytes.ndim == 1,
          "'config_text' must be a byte string")
    try:
        return parse_config(text_bytes.tobytes().decode("utf-8"), "checkpoint")
    except UnicodeDecodeError:
        raise _Corrupt("'config_text' is not UTF-8") from None
    except NitroError as exc:
        raise _Corrupt(f"'config_text' is not a valid config ({exc})") from None


def _params(arrays: dict[str, np.ndarray], spec: NetworkSpec, bits: int) -> dict[str, np.ndarray]:
    """The weights of exactly the network's layers, each of its shape, integers of `bits` bits."""
    params = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
    layers = {layer.name: layer.weight_shape for layer in spec.param_layers()}
    _need(set(params) == set(layers), f"weights for {sorted(params)}, the config has layers {sorted(layers)}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for name, w in params.items():
        _need(w.dtype.kind == "i" and w.shape == layers[name],
              f"weights of {name!r} are {w.dtype}{w.shape}, expected signed integers of shape {layers[name]}")
        _need(w.size == 0 or lo <= int(w.min()) and int(w.max()) <= hi,
              f"weights of {name!r} exceed the declared {bits}-bit weight width")
    return params


def _decode(arrays: dict[str, np.ndarray], config_digest: str) -> Checkpoint:
    state = _json(arrays, "state")
    keys = {"epoch", "rng", *STATE_KEYS}
    _need(isinstance(state, dict) and set(state) in (keys, keys | {"data"}),
          f"'state' must have the keys {sorted(keys)}, and optionally 'data'")
    epoch = state.pop("epoch")
    _need(is_int(epoch) and epoch >= 0, f"'epoch' must be a count of epochs, got {short_repr(epoch)}")
    rng_state = _rng_state(arrays.pop("rng/keys", None), state.pop("rng"))
    _check_state(state, epoch)
    cfg = _config(arrays.pop("config_text", None))
    spec = cfg.build_spec(image_shape(cfg.data.dataset))
    try:
        check_divisor(spec, state["lr_inv"], "lr_inv")
    except NitroError as exc:
        raise _Corrupt(str(exc)) from None
    order = _order(arrays.pop("order", None))
    params = _params(arrays, spec, cfg.numerics.widths.weight)
    extra = sorted(set(arrays) - {f"param/{k}" for k in params})
    _need(not extra, f"unexpected arrays {extra}")
    return Checkpoint(epoch, params, rng_state, state, cfg.source, config_digest, order)
