"""Training checkpoints: atomic writes, a content hash, and exact resume.

A checkpoint is one .npz holding the weights, the RNG state, the schedule state, the metrics so far
and the config text, plus `meta` (JSON) with a sha256 over every other array. Loading re-hashes and
refuses a file whose content does not match, or whose config differs from the run's.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fileio import write_atomic
from .numerics import NitroError


@dataclass
class Checkpoint:
    epoch: int  # epochs completed
    params: dict[str, np.ndarray]
    rng_state: tuple
    state: dict  # schedule/best/history/wraps: JSON-serialisable
    config_text: str
    config_digest: str
    order: np.ndarray  # current training-set row order (the reference reshuffles cumulatively)


def _content_hash(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, ck: Checkpoint) -> str:
    """Write `ck` atomically; returns its content hash."""
    name, keys, pos, has_gauss, cached = ck.rng_state
    arrays = {f"param/{k}": v for k, v in ck.params.items()}
    arrays["rng/keys"] = np.asarray(keys, dtype=np.uint32)
    arrays["order"] = np.asarray(ck.order, dtype=np.int64)
    arrays["state"] = np.frombuffer(json.dumps({
        "epoch": ck.epoch, "rng": [name, int(pos), int(has_gauss), float(cached)], **ck.state,
    }).encode(), dtype=np.uint8)
    arrays["config_text"] = np.frombuffer(ck.config_text.encode(), dtype=np.uint8)
    digest = _content_hash(arrays)
    meta = {"format": "nitro-checkpoint-1", "sha256": digest, "config_digest": ck.config_digest}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(Path(path), buf.getvalue())
    return digest


def load_checkpoint(path: Path, config_digest: str | None = None) -> Checkpoint:
    """Read and verify a checkpoint; `config_digest` (if given) must match the file's."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise NitroError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise NitroError(f"checkpoint {path} is corrupt or not a checkpoint: {exc}") from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes())
        if meta.get("format") != "nitro-checkpoint-1":
            raise ValueError(f"unknown format {meta.get('format')!r}")
        if _content_hash(arrays) != meta["sha256"]:
            raise ValueError("content hash mismatch (file modified or damaged)")
        state = json.loads(arrays.pop("state").tobytes())
        config_text = arrays.pop("config_text").tobytes().decode()
        keys = arrays.pop("rng/keys")
        order = arrays.pop("order")
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise NitroError(f"checkpoint {path} is corrupt: {exc}") from None
    if config_digest is not None and meta["config_digest"] != config_digest:
        raise NitroError(
            f"checkpoint {path} was written for a different config (digest {meta['config_digest']}, "
            f"this run {config_digest}); resume with the config it was trained with"
        )
    name, pos, has_gauss, cached = state.pop("rng")
    epoch = state.pop("epoch")
    params = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
    return Checkpoint(epoch, params, (name, keys, pos, has_gauss, cached), state, config_text,
                      meta["config_digest"], order)
