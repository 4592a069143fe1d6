"""Malformed input to `nitro` (configs, IDX files, CIFAR-10 batches, checkpoints, vector sets) ends as
one `nitro: error:` line with exit code 2: no traceback, no file touched.

The properties live in scripts/fuzz_parsers.py (its long run records benchmarks/fuzz/); here they
run under the reproducible "ci" hypothesis profile (NITRO_FUZZ_PROFILE=long for more), followed by
inputs the fuzzing found, each of which one of the parsers' checks must refuse.
"""
import gzip
import io
import json
import os
import zipfile
from collections import Counter

import numpy as np
import pytest
from hypothesis import settings

from model.conform import compare_arrays
from model.datasets import read_idx
from model.numerics import NitroError
from scripts import fuzz_parsers as fz

PROFILE = settings.get_profile(os.environ.get("NITRO_FUZZ_PROFILE", "ci"))


@pytest.mark.parametrize("parser", sorted(fz.PARSERS))
def test_malformed_input_is_one_error_line(parser):
    ran = Counter()
    fz.fuzz(parser, PROFILE, ran)
    assert ran[parser] >= PROFILE.max_examples


def _idx(code: int, dims: list[int], payload: bytes = b"") -> bytes:
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes() + payload


@pytest.mark.parametrize("name,content", [
    ("train-labels-idx1-ubyte", _idx(8, [1] * 100, b"\x01")),  # rank 100: NumPy refuses to reshape
    ("train-labels-idx1-ubyte", _idx(8, [2**31, 2**31, 4])),  # size 2^64 wrapped to 0 in int64
    ("train-images-idx3-ubyte.gz", _idx(8, [0, 28, 28])),  # no images
    ("t10k-labels-idx1-ubyte", _idx(8, [63], bytes(63))),  # 64 test images, 63 labels
    ("train-images-idx3-ubyte.gz", gzip.compress(_idx(0x0B, [128, 28, 28], bytes(128 * 28 * 28 * 2)), mtime=0)),  # int16
    ("train-images-idx3-ubyte.gz", gzip.compress(_idx(8, [128, 28, 28], bytes(100)), mtime=0)[:-9]),  # truncated gzip
])
def test_idx_files_fuzzing_found_are_refused(name, content):
    assert fz.check_idx((name, content)) == 2  # refused, not accepted


def _uncleared_cifar() -> bytes:
    """A CIFAR-10 batch with an array NumPy cannot clear: it reports that only to
    sys.unraisablehook (a traceback on stderr)."""
    return fz._flip((fz.cifar_base() / fz.CIFAR10_FILES[0]).read_bytes(), [(256, 3)])


@pytest.mark.parametrize("content", [
    pytest.param(fz._cifar_batch(np.zeros((16, 3072), np.uint8), [2**70] * 16), id="labels beyond int64"),
    pytest.param(b"P0\n.", id="persistent id: a two-line pickle error"),
    pytest.param(fz._cifar_batch(np.zeros((1, 3072), np.uint8), np.complex64(1)), id="complex labels: a warning"),
    pytest.param(b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b".", id="bytearray of 2^40 bytes"),
    pytest.param(_uncleared_cifar, id="array numpy cannot clear"),
])
def test_cifar_batches_fuzzing_found_are_refused(content):
    assert fz.check_cifar(("data_batch_1", content() if callable(content) else content)) == 2


def _state_edit(**changes):
    """The base checkpoint, resealed with its JSON state changed (None: key removed)."""
    _, arrays = fz.checkpoint_base()
    body = {k: v for k, v in arrays.items() if k != "meta"}
    state = {**json.loads(body["state"].tobytes()), **changes}
    body["state"] = np.frombuffer(fz.json_bytes({k: v for k, v in state.items() if v is not None}), np.uint8)
    return "sealed", body, json.loads(arrays["meta"].tobytes())["config_digest"]


def _array_edit(key, value):
    _, arrays = fz.checkpoint_base()
    body = {k: v for k, v in arrays.items() if k != "meta"}
    return "sealed", {**body, key: value}, json.loads(arrays["meta"].tobytes())["config_digest"]


@pytest.mark.parametrize("case", [
    pytest.param(lambda: _state_edit(lr_inv=None), id="no lr_inv"),
    pytest.param(lambda: _state_edit(plateau="x"), id="plateau a string"),
    pytest.param(lambda: _state_edit(epoch="1"), id="epoch a string"),
    pytest.param(lambda: _state_edit(lr_inv=2**70), id="lr_inv beyond int64"),
    pytest.param(lambda: _state_edit(data="not hex"), id="data digest not hex"),
    pytest.param(lambda: _state_edit(data=7), id="data digest a number"),
    pytest.param(lambda: _state_edit(history=[{"epoch": 1, "test_acc": 0.5}]), id="history row keys"),
    pytest.param(lambda: _array_edit("rng/keys", np.zeros(10, np.uint32)), id="rng keys 10 words"),
    pytest.param(lambda: _array_edit("order", np.zeros(10000, np.int64)), id="order not a permutation"),
    pytest.param(lambda: _array_edit("state", np.frombuffer(b"[1, 2]", np.uint8)), id="state a list"),
    pytest.param(lambda: ("unsealed", {"meta": np.frombuffer(b"[1]", np.uint8)}), id="meta a list"),
    # a member's .npy header that NumPy parses only as a Python 2 file, warning on stderr
    pytest.param(lambda: ("raw", fz._flip(fz.checkpoint_base()[0], [(139, 122)])), id="python 2 npy header"),
])
def test_checkpoints_fuzzing_found_are_refused(case):
    assert fz.check_checkpoint(case()) == 2


def test_an_error_numpy_reports_only_to_the_unraisable_hook_is_the_one_line(tmp_path, monkeypatch):
    """`_uncleared_cifar`: the loader reports the error NumPy sends to sys.unraisablehook in the
    one error line instead of a traceback beside it."""
    import sys

    from model.datasets import _load_cifar_batch

    f = tmp_path / "data_batch_1"
    f.write_bytes(_uncleared_cifar())
    hooked = []
    monkeypatch.setattr(sys, "unraisablehook", hooked.append)
    with pytest.raises(NitroError, match=r"not a CIFAR-10 python batch \(RuntimeError: "):
        _load_cifar_batch(f)
    assert hooked == []


def test_a_checkpoint_without_a_data_digest_still_loads(monkeypatch):
    """Checkpoints of format 1, written before the data digest was recorded, hold none."""
    import model.checkpoint

    assert "data" in json.loads(fz.checkpoint_base()[1]["state"].tobytes())
    monkeypatch.setattr(model.checkpoint, "FORMAT", "nitro-checkpoint-1")
    assert fz.check_checkpoint(_state_edit(data=None)) == 0


def _zip(member: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", member)
    return buf.getvalue()


# An .npy header of 10 102 bytes: numpy refuses it with a message of three lines.
_BIG_HEADER = b"\x93NUMPY\x01\x00" + (10102).to_bytes(2, "little") + b" " * 10101 + b"\n"


def test_an_npy_header_numpy_refuses_in_three_lines():
    assert fz.check_checkpoint(("raw", _zip(_BIG_HEADER))) == 2


def _meta(edit) -> bytes:
    meta = json.loads((fz.vectors_base() / "emb_meta.json").read_text())
    edit(meta)
    return fz.json_bytes(meta)


def _linear_in_features(value):
    def edit(meta):
        next(leaf for leaf in meta["leaves"] if leaf["type"] == "IntegerLinear")["in_features"] = value
    return edit


@pytest.mark.parametrize("part,content", [
    pytest.param("meta", lambda: b"[]", id="meta a list"),
    pytest.param("meta", lambda: _meta(_linear_in_features("abc")), id="in_features a string"),
    pytest.param("meta", lambda: _meta(_linear_in_features(783)), id="in_features off by one"),
    pytest.param("meta", lambda: _meta(lambda m: m.update(steps=0)), id="zero steps"),
    pytest.param("step1", lambda: _zip(b"not an array"), id="member not .npy"),
    pytest.param("step1", lambda: fz._npz_bytes({}), id="step file without arrays"),
])
def test_vector_sets_fuzzing_found_are_refused(part, content):
    assert fz.check_vectors(("emb", part, content())) == 2


def test_a_differing_0d_array_is_a_mismatch():
    """ref_train_acc and ref_l2_loss_output are 0-d: np.argwhere of a 0-d array has no rows to index."""
    rep = compare_arrays("1", {"ref_train_acc": np.float64(0.5)}, {"ref_train_acc": np.float64(0.25)})
    assert [(m.array, m.ours, m.ref) for m in rep.mismatches] == [("ref_train_acc", 0.25, 0.5)]


def test_gzip_that_expands_beyond_the_limit(tmp_path, monkeypatch):
    """A gzip bomb (a few kB expanding to any size) stops at the limit instead of exhausting memory."""
    monkeypatch.setattr("model.datasets._GUNZIP_LIMIT", 1000)
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_idx(8, [2000], bytes(2000))))
    with pytest.raises(NitroError, match="gzip data expands to more than 1000 bytes"):
        read_idx(path)
