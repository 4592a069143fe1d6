"""Export conformance vectors from the golden model, in the reference's own folder format.

`export_vectors` records `steps` training steps of any network (from any state, e.g. a trained
checkpoint) as `TAG_init.npz`, `TAG_data.npz`, `TAG_stepK.npz`, `TAG_after3.npz` and
`TAG_meta.json`, readable by `conform.run_conformance` and by the hardware testbenches: a hardware
team gets bit-exact expected values for every tensor of every step without running Python.
"""
from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .config import ExperimentConfig
from .datasets import image_shape, one_line
from .fileio import PLAIN_NAME_RULE, is_plain_name, write_atomic
from .layers import rss_loss_reference
from .network import Network, Trace
from .numerics import NitroError
from .spec import Block, Conv2d, Dropout, Flatten, Linear, MaxPool2d, NitroReLU, Scaling


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(path, buf.getvalue())


def read_npz(path: Path, kind: str) -> dict[str, np.ndarray]:
    """Every array of the .npz archive `path` (a checkpoint or a vector file: `kind`), read without
    pickle; NitroError for a missing, damaged or foreign file."""
    bad = f"cannot read {kind} {path}: corrupt or not a {kind}"
    try:
        with open(path, "rb") as f:  # np.load leaves a file it opened itself open when it fails
            if not zipfile.is_zipfile(f):  # else np.load calls any other file pickled data
                raise NitroError(f"{bad} (not an .npz archive)")
            f.seek(0)
            arrays = _members(np.load(f, allow_pickle=False))  # a zip file loads as an NpzFile
    except FileNotFoundError:
        raise NitroError(f"{kind} {path} does not exist") from None
    except IsADirectoryError:
        raise NitroError(f"{kind} {path} is a folder, not a file") from None
    except PermissionError:
        raise NitroError(f"cannot read {kind} {path}: permission denied") from None
    except NitroError:
        raise
    except Exception as exc:  # zipfile, format, pickle, size and OS errors all mean an unreadable file
        raise NitroError(f"{bad} ({one_line(exc)})") from None
    foreign = sorted(k for k, a in arrays.items() if not isinstance(a, np.ndarray))
    if foreign:  # np.load hands members that are not .npy files over as raw bytes
        raise NitroError(f"{bad} (members {foreign} are not .npy arrays)")
    return arrays


def _members(archive: np.lib.npyio.NpzFile) -> dict:
    # a header NumPy can only guess at (it warns, e.g. of a Python 2 file) is a malformed member:
    # the error, not a warning beside it
    with archive, warnings.catch_warnings():
        warnings.simplefilter("error")
        return {k: archive[k] for k in archive.files}


def _leaf(layer) -> dict:
    if isinstance(layer, Linear):
        return {"name": layer.name, "type": "IntegerLinear", "in_features": layer.in_features,
                "out_features": layer.out_features, "weight_shape": list(layer.weight_shape),
                "optimizer": {"type": "IntegerSGD", "effective_lr_amp_factor": layer.amp,
                              "weight_decay_inv": layer.decay_inv}}
    if isinstance(layer, Conv2d):
        return {"name": layer.name, "type": "IntegerConv2d", "in_channels": layer.in_channels,
                "out_channels": layer.out_channels, "kernel_size": [layer.kernel] * 2,
                "stride": [1, 1], "padding": [layer.padding] * 2, "weight_shape": list(layer.weight_shape),
                "optimizer": {"type": "IntegerSGD", "effective_lr_amp_factor": layer.amp,
                              "weight_decay_inv": layer.decay_inv}}
    if isinstance(layer, Scaling):
        return {"name": layer.name, "type": "ConstantScaling", "fwd_factor": layer.factor}
    if isinstance(layer, NitroReLU):
        return {"name": layer.name, "type": "NitroLeakyReLU", "negative_slope_inv": layer.slope_inv}
    if isinstance(layer, MaxPool2d):
        return {"name": layer.name, "type": "MaxPool2d", "kernel_size": list(layer.kernel),
                "stride": list(layer.kernel), "padding": list(layer.padding)}
    if isinstance(layer, Flatten):
        return {"name": layer.name, "type": "Flatten"}
    if isinstance(layer, Dropout):
        return {"name": layer.name, "type": "Dropout", "rate": layer.rate}
    raise NitroError(f"cannot describe layer {layer!r}")


def describe(net: Network) -> dict:
    """The meta-file description (`leaves`, `structure`, `backward_block_order`) of a network."""
    spec, leaves, structure = net.spec, [], []
    for it in spec.items:
        if isinstance(it, Block):
            pred = [p for p in (it.pool, it.flatten) if p is not None] + [it.pred, it.pred_scaling]
            leaves += [_leaf(x) for x in (it.layer, it.scaling, it.relu, *pred)]
            structure.append({"kind": "block", "name": it.name,
                              "fwd": [it.layer.name, it.scaling.name, it.relu.name],
                              "pred": [p.name for p in pred]})
        else:
            leaves.append(_leaf(it))
            structure.append({"kind": "leaf", "name": it.name, "type": _leaf(it)["type"]})
    leaves += [_leaf(spec.output), _leaf(spec.output_scaling)]
    structure.append({"kind": "output", "layers": [spec.output.name, spec.output_scaling.name]})
    return {"leaves": leaves, "structure": structure, "backward_block_order": list(spec.backward_order)}


def check_replayable(cfg: ExperimentConfig) -> None:
    """A set's meta file describes a network as the reference builds it, and conform replays it with
    the reference's behaviours and widths: a set of a network that a fixed quirk trains otherwise,
    or with other widths, would not replay."""
    changed = ([f"quirks.{c}" for c in cfg.quirks_in_effect(image_shape(cfg.data.dataset))]
               + [f"numerics.widths.{c}" for c in cfg.numerics.widths.changes()])
    if changed:
        raise NitroError(f"a vector set records the reference's behaviours and widths, which conform "
                         f"replays; this network sets {', '.join(changed)}")


def check_tag(tag) -> str:
    """A vector set's tag starts its files' names in the set's folder: a plain name."""
    if not is_plain_name(tag):
        raise NitroError(f"tag must be a plain name ({PLAIN_NAME_RULE}; it starts the set's file "
                         f"names), got {tag!r}")
    return tag


ARCHIVES = ("init", "data", "after3")  # a set's .npz parts beside step<K>.npz and meta.json


def set_file(folder: str | Path, tag: str, part: str) -> Path:
    """Part `part` of vector set `tag` in `folder`: 'meta' (the .json), 'init', 'data', 'after3'
    or 'step<K>' (archives)."""
    if part != "meta" and part not in ARCHIVES and not re.fullmatch(r"step[0-9]+", part):
        raise ValueError(f"a vector set has no part {part!r}")
    return Path(folder) / f"{tag}_{part}{'.json' if part == 'meta' else '.npz'}"


def set_files(folder: Path, tag: str) -> list[Path]:
    """The files of vector set `tag` in `folder` (as `export_vectors` names them: not those of a
    set whose tag merely starts with `tag`)."""
    name = re.compile(re.escape(tag) + r"_(?:(?:" + "|".join(ARCHIVES) + r"|step[0-9]+)\.npz|meta\.json)")
    return sorted(p for p in folder.iterdir() if name.fullmatch(p.name) and p.is_file())


def step_arrays(net: Network, x: np.ndarray, y: np.ndarray, lr_inv: int) -> dict[str, np.ndarray]:
    """One training step of `net` (which is advanced), as a set's step file holds it: every traced
    tensor, and the step's accuracy and output loss as the reference computes them."""
    trace = Trace()
    res = net.train_step(x, y, lr_inv, trace=trace)
    out = dict(trace)
    out["ref_train_acc"] = np.float64(res.correct / len(res.y_hat))
    out["ref_l2_loss_output"] = np.float64(rss_loss_reference(trace["out"], trace["y_onehot"]))
    return out


def final_arrays(net: Network, test_x: np.ndarray) -> dict[str, np.ndarray]:
    """A set's after-file: the weights after the recorded steps and the predictions on `test_x`."""
    pred = net.predict(test_x, batch=128)
    out = {f"{k}.weight": v for k, v in net.params.items()}
    out.update({"pred_out": pred, "pred_class": np.argmax(pred, axis=1).astype(np.int64)})
    out.update({f"pred_local/{k}": v for k, v in net.predict_local(test_x, batch=128).items()})
    return out


def export_vectors(net: Network, batches: list[tuple[np.ndarray, np.ndarray]], test_x: np.ndarray,
                   lr_inv: int, out_dir: str | Path, tag: str) -> Path:
    """Record len(batches) training steps of `net` (which is advanced) and its predictions after them."""
    if any(isinstance(it, Dropout) for it in net.spec.items):
        raise NitroError("vector export needs a deterministic network: remove dropout")
    out, tag = Path(out_dir), check_tag(tag)
    _save_npz(set_file(out, tag, "init"), {f"{k}.weight": v for k, v in net.params.items()})
    data = {"test_x": test_x}
    for k, (x, y) in enumerate(batches, 1):
        data[f"step{k}_x"], data[f"step{k}_y_onehot"] = x, y
        _save_npz(set_file(out, tag, f"step{k}"), step_arrays(net, x, y, lr_inv))
    _save_npz(set_file(out, tag, "data"), data)
    _save_npz(set_file(out, tag, "after3"), final_arrays(net, test_x))
    meta = {"tag": tag, "producer": "nitro golden model", "steps": len(batches),
            "config": {"lr_inv": lr_inv}, **describe(net)}
    write_atomic(set_file(out, tag, "meta"), json.dumps(meta, indent=1).encode())
    return out
