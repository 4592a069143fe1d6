"""Fuzz every parser behind `nitro`: configs, IDX files, CIFAR-10 batches, checkpoints, vector sets,
and the option strings cosim and vectors parse themselves (--memory, --fault, --tag).

Each property hands one malformed (or by chance valid) input to the real CLI, in-process, and checks
the CLI's contract: bad input ends as ONE line `nitro: error: ...` on stderr with exit code 2,
never a traceback, and the files handed over are left as they were (same bytes, same mtime, no new
file beside them). tests/test_fuzz_parsers.py runs the properties with the "ci" profile; this script
is the long run ("long" profile), which records benchmarks/fuzz/fuzz_parsers.json and exits 1 on any
failure:

    .venv/bin/python scripts/fuzz_parsers.py [--examples 10000] [--jobs 2] [--parser configs ...]
"""
from __future__ import annotations

import argparse
import atexit
import copy
import functools
import gzip
import hashlib
import io
import json
import multiprocessing
import pickle
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterator

import hypothesis
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from model.checkpoint import load_checkpoint, write_sealed
from model.config import SECTIONS, load_config, parse_config, toml_document, toml_value
from model.datasets import CIFAR10_FILES, MNIST_FILES, load_raw, write_idx
from model.fileio import write_atomic
from model.init import init_params
from model.network import Network
from model.numerics import NitroError, Widths
from model.paths import REPO
from model.train import prepare, train
from model.vectors import export_vectors, set_file, set_files
from scripts.cli import main
from scripts.provenance import commit

RESULT = REPO / "benchmarks" / "fuzz" / "fuzz_parsers.json"
SHIPPED_CONFIGS = sorted((REPO / "configs").glob("*.toml"))

_COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("ci", max_examples=30, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=10_000, **_COMMON)


# --------------------------------------------------------------------------------- the contract


class CliTraceback(AssertionError):
    """The CLI let an exception other than NitroError escape: the user would see a traceback."""


class ContractViolation(AssertionError):
    """The CLI failed in another way than one `nitro: error:` line with exit code 2, or changed files."""


def _must(ok: bool, what: str) -> None:
    if not ok:
        raise ContractViolation(what)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`nitro argv` in-process: (exit code, stderr), with every warning Python shows by default
    counted as printed on stderr, as a user would see it (pytest would swallow it)."""
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", hidden)
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
        except Exception as exc:
            raise CliTraceback(f"nitro {' '.join(argv)}: {type(exc).__name__}: {exc}") from exc
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return rc, shown + err.getvalue()


def snapshot(folder: Path) -> dict[str, Any]:
    """Every path under `folder`: a file's mtime and content hash, a folder's mere presence."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).digest())
            if p.is_file() else "folder" for p in sorted(folder.rglob("*"))}


def check_cli(folder: Path, argv: list[str], ok: tuple[int, ...] = ()) -> int:
    """Run `nitro argv` on the inputs in `folder`: it must exit with a code in `ok` and print nothing
    on stderr, or fail with exactly one `nitro: error:` line and exit code 2; `folder` must be left
    as it was. Returns the exit code."""
    before = snapshot(folder)
    rc, err = run_cli(argv)
    if rc in ok:
        _must(err == "", f"nitro {' '.join(argv)} exited {rc} but wrote to stderr: {err!r}")
    else:
        _must(rc == 2, f"nitro {' '.join(argv)} exited {rc!r}, not 2 (stderr {err!r})")
        _must(err.startswith("nitro: error: ") and err.endswith("\n") and err.count("\n") == 1,
              f"nitro {' '.join(argv)}: stderr is not one 'nitro: error:' line: {err!r}")
        _must("Traceback" not in err, f"nitro {' '.join(argv)} printed a traceback: {err!r}")
    _must(snapshot(folder) == before, f"nitro {' '.join(argv)} changed, removed or created files in {folder}")
    return rc


def accepts(load: Callable, *args) -> bool:
    """Whether `load(*args)` accepts its input (False: NitroError); any other exception is a traceback."""
    try:
        load(*args)
    except NitroError:
        return False
    except Exception as exc:
        raise CliTraceback(f"{load.__name__}: {type(exc).__name__}: {exc}") from exc
    return True


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nitro-fuzz-case-") as d:
        yield Path(d)


# ---------------------------------------------------------------------------- shared strategies


def _flip(base: bytes, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(base)
    for pos, mask in flips:
        if pos < len(b):
            b[pos] ^= mask
    return bytes(b)


def _splice(base: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    b = bytearray(base)
    for pos, n, insert in edits:
        b[pos:pos + n] = insert
    return bytes(b)


def mutated(base: bytes, hot: int = 0) -> st.SearchStrategy[bytes]:
    """`base` truncated, with bits flipped, or with short spans replaced; with `hot` > 0 half the
    positions fall into the first `hot` bytes (a header)."""
    pos = st.integers(0, len(base))
    if hot:
        pos = st.one_of(st.integers(0, min(hot, len(base))), pos)
    return st.one_of(
        pos.map(lambda n: base[:n]),
        # lambdas, not functools.partial: hypothesis shows a partial's arguments (all of `base`) in reprs
        st.lists(st.tuples(pos, st.integers(1, 255)), min_size=1, max_size=4).map(lambda f: _flip(base, f)),
        st.lists(st.tuples(pos, st.integers(0, 8), st.binary(max_size=8)), min_size=1, max_size=3)
        .map(lambda e: _splice(base, e)),
    )


_BOUNDARY_INTS = [-1, 0, 1, 2, 127, 128, 255, 624, 625, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(_BOUNDARY_INTS) | st.floats()
    | st.text(max_size=10) | st.sampled_from(["MT19937", "IntegerLinear", "Flatten", "block", "output"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


_MOSTLY = st.sampled_from([True] * 9 + [False])  # hypothesis leans to small integers: draw flags here


@st.composite
def json_edited(draw, doc: Any) -> Any:
    """`doc` with the value at a drawn path replaced (an integer mostly by a nearby one, to get past
    the type checks), or removed."""
    doc = copy.deepcopy(doc)
    parent, key, node = None, None, doc
    while isinstance(node, (dict, list)) and node and draw(_MOSTLY):
        parent, key = node, draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        node = node[key]
    if parent is None:
        return draw(JSON_VALUES)
    near = st.sampled_from([-1, 1, 2]).map(lambda d, n=node: n * d if d == 2 else n + d)
    if draw(_MOSTLY):
        parent[key] = draw(near if isinstance(node, int) and not isinstance(node, bool) and draw(_MOSTLY)
                           else JSON_VALUES)
    else:
        del parent[key]
    return doc


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


ARRAYS = hnp.arrays(
    st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint32, np.float32, np.float64,
                     np.bool_, np.dtype("U3"), np.dtype("S2"), np.complex64]),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
)


def tiny_config(dataset: str) -> str:
    """A small complete MLP config on `dataset`: the inputs under test, not the network, cost time."""
    return f'name = "fuzz_{dataset}"\n\n[data]\ndataset = "{dataset}"\n\n[network]\nkind = "mlp"\n' \
           f'hidden = [16]\n\n[train]\nepochs = 1\n'


@functools.cache
def workspace() -> Path:
    """A per-process folder for the valid inputs the mutations start from (removed at exit)."""
    base = Path(tempfile.mkdtemp(prefix="nitro-fuzz-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    for dataset in ("embedded", "mnist", "cifar10"):
        (base / f"fuzz_{dataset}.toml").write_text(tiny_config(dataset))
    return base


# ------------------------------------------------------------------------------------- configs


_STRINGS = {"dataset": ["mnist", "fmnist", "cifar10", "embedded", " MNIST", "imagenet"],
            "kind": ["mlp", "cnn", "rnn"], "mode": ["wrap", "check", "saturate"]}
TOML_VALUES = st.recursive(
    st.booleans() | st.integers() | st.sampled_from(_BOUNDARY_INTS) | st.floats()
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=10) | st.datetimes() | st.dates() | st.times(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_SMALL_INTS = st.one_of(st.integers(-3, 300), st.sampled_from(_BOUNDARY_INTS))
_ARCH_ENTRIES = st.lists(st.one_of(st.sampled_from(["Conv2d", "MaxPool2d"]), _SMALL_INTS), max_size=6)


def _key_values(key: str, default: Any) -> st.SearchStrategy:
    """Values for one config key: of its type (near the edges of its range) or any TOML value."""
    if key == "architecture":
        typed = st.lists(_ARCH_ENTRIES, max_size=4)
    elif key == "hidden":
        typed = st.lists(_SMALL_INTS, max_size=4)
    elif key == "widths":
        typed = st.dictionaries(st.sampled_from([f.name for f in fields(Widths)] + ["bogus"]), _SMALL_INTS)
    elif isinstance(default, bool):
        typed = st.booleans()
    elif isinstance(default, int):
        typed = _SMALL_INTS
    elif isinstance(default, float):
        typed = st.one_of(st.sampled_from([0.0, 0.05, 0.15, 0.95, 1.0, -0.05, float("nan"), float("inf")]),
                          st.floats())
    else:
        typed = st.sampled_from(_STRINGS.get(key, ["x"])) | st.text(max_size=8)
    return st.one_of(typed, typed, TOML_VALUES)


@st.composite
def config_documents(draw) -> dict:
    """A config built from the real schema: mostly its tables and keys, values of mostly the right type."""
    doc = {}
    if draw(st.booleans()):
        doc["name"] = draw(st.from_regex(r"[A-Za-z0-9._/\\-]{0,12}", fullmatch=True) | TOML_VALUES)
    for table, cls in SECTIONS.items():
        if draw(_MOSTLY):
            defaults = {f.name: getattr(cls(), f.name) for f in fields(cls)}
            keys = draw(st.lists(st.sampled_from(sorted(defaults) + ["bogus"]), unique=True, max_size=len(defaults)))
            doc[table] = {k: draw(_key_values(k, defaults.get(k))) for k in keys}
    if not draw(_MOSTLY):
        doc[draw(st.text(max_size=6))] = draw(TOML_VALUES)
    return doc


@st.composite
def line_edited(draw, text: bytes) -> bytes:
    """`text` with lines dropped, doubled, or their value replaced by any TOML value."""
    lines = text.decode().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i, action = draw(st.integers(0, max(len(lines) - 1, 0))), draw(st.sampled_from(["drop", "dup", "value"]))
        if not lines:
            break
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + toml_value(draw(TOML_VALUES))
    return "\n".join(lines).encode()


def config_inputs() -> st.SearchStrategy[bytes]:
    shipped = st.sampled_from(SHIPPED_CONFIGS).map(Path.read_bytes)
    return st.one_of(
        shipped.flatmap(mutated),
        shipped.flatmap(line_edited),
        config_documents().map(lambda doc: toml_document(doc).encode()),
        st.integers(1, 3000).map(lambda n: f"[train]\nseed = {'[' * n}{']' * n}\n".encode()),
        st.integers(1, 6000).map(lambda n: f"[train]\nseed = {'9' * n}\n".encode()),
    )


def check_config(text: bytes) -> None:
    """A config the parser refuses must stop `nitro train` with one error line before any work;
    one it accepts would start training, so only the parse is run."""
    with scratch() as d:
        path = d / "config.toml"
        path.write_bytes(text)
        if accepts(load_config, path):
            return
        check_cli(d, ["train", "--config", str(path), "--epochs", "1", "--out", str(d / "run"),
                      "--no-progress", "--data-dir", "embedded"])


# ----------------------------------------------------------------------------------------- IDX


IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte")


@functools.cache
def idx_base() -> Path:
    """128 training and 64 test images of the embedded subset, as mnist IDX files (images gzipped)."""
    folder = workspace() / "idx"
    raw = load_raw("embedded")
    arrays = (raw.train_x[:128, 0], raw.train_y[:128], raw.test_x[:64, 0], raw.test_y[:64])
    for name, arr in zip(IDX_NAMES, arrays):
        write_idx(folder / name, arr)
    assert [n.removesuffix(".gz") for n in IDX_NAMES] == list(MNIST_FILES)
    return folder


def _plain(name: str) -> bytes:
    data = (idx_base() / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


@st.composite
def idx_files(draw) -> bytes:
    """A well-formed IDX header of any type code and shape, with a payload of about its size."""
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]) | st.integers(0, 255))
    dims = draw(st.lists(st.sampled_from([0, 1, 2, 27, 28, 64, 128, 2**31, 2**32 - 1]) | st.integers(0, 130),
                         max_size=4))
    ndim = draw(st.just(len(dims)) | st.integers(0, 255))
    size = int(np.prod(dims, dtype=object)) * {0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(code, 1) if dims else 0
    size = size if size <= 1 << 20 else draw(st.integers(0, 64))
    payload = bytes([draw(st.integers(0, 255))]) * max(size + draw(st.sampled_from([0, 0, -1, 1])), 0)
    return bytes([0, 0, code, ndim]) + np.asarray(dims, dtype=">u4").tobytes() + payload


def _content(name: str) -> st.SearchStrategy[bytes]:
    plain = _plain(name)
    body = st.one_of(mutated(plain, hot=20), idx_files(), st.binary(max_size=64))
    packed = gzip.compress(plain, mtime=0)
    return st.one_of(body, body.map(lambda b: gzip.compress(b, mtime=0)), mutated(packed, hot=24))


def idx_inputs() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.sampled_from(IDX_NAMES).flatmap(lambda name: st.tuples(st.just(name), _content(name)))


def check_idx(case: tuple[str, bytes]) -> int:
    """`nitro numerics` on an mnist folder with one file replaced: it runs or fails cleanly.
    Returns the exit code (a regression test of a known-bad input requires 2)."""
    name, content = case
    with scratch() as d:
        shutil.copytree(idx_base(), d, dirs_exist_ok=True)
        (d / name).write_bytes(content)
        return check_cli(d, ["numerics", "--config", str(workspace() / "fuzz_mnist.toml"), "--data-dir",
                             str(d), "--steps", "1", "--no-progress"], ok=(0,))


# ------------------------------------------------------------------------------------- CIFAR-10


def _cifar_batch(data: Any, labels: Any) -> bytes:
    return pickle.dumps({b"batch_label": b"fuzz", b"data": data, b"labels": labels}, protocol=2)


@functools.cache
def cifar_base() -> Path:
    """Six CIFAR-10 python batches of 16 random images each."""
    folder = workspace() / "cifar"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for name in CIFAR10_FILES:
        data = rng.randint(0, 256, size=(16, 3072)).astype(np.uint8)
        (folder / name).write_bytes(_cifar_batch(data, rng.randint(0, 10, size=16).tolist()))
    return folder


_LABELS = st.one_of(st.lists(_SMALL_INTS, max_size=20), ARRAYS, JSON_VALUES)
_PICKLED = st.one_of(
    st.builds(_cifar_batch, st.one_of(ARRAYS, hnp.arrays(np.uint8, st.tuples(st.integers(0, 20), st.sampled_from(
        [3072, 3071, 1]))), JSON_VALUES), _LABELS),
    JSON_VALUES.map(lambda v: pickle.dumps(v, protocol=2)),
)


def cifar_inputs() -> st.SearchStrategy[tuple[str, bytes]]:
    base = (cifar_base() / CIFAR10_FILES[0]).read_bytes()
    return st.tuples(st.sampled_from(CIFAR10_FILES), st.one_of(mutated(base, hot=64), _PICKLED))


def check_cifar(case: tuple[str, bytes]) -> int:
    """`nitro numerics` on a CIFAR-10 folder with one batch replaced: it runs or fails cleanly.
    Returns the exit code."""
    name, content = case
    with scratch() as d:
        shutil.copytree(cifar_base(), d, dirs_exist_ok=True)
        (d / name).write_bytes(content)
        return check_cli(d, ["numerics", "--config", str(workspace() / "fuzz_cifar10.toml"), "--data-dir",
                             str(d), "--steps", "1", "--no-progress"], ok=(0,))


# ---------------------------------------------------------------------------------- checkpoints


@functools.cache
def checkpoint_base() -> tuple[bytes, dict[str, np.ndarray]]:
    """A real checkpoint (one epoch of the tiny embedded MLP): its bytes and its arrays."""
    cfg = load_config(workspace() / "fuzz_embedded.toml")
    out = workspace() / "run"
    with redirect_stdout(io.StringIO()):  # the epoch line
        train(cfg, out, epochs=1, progress=False)
    data = (out / "checkpoint.npz").read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return data, {k: f[k] for k in f.files}


def _shipped_text() -> st.SearchStrategy[bytes]:
    return st.sampled_from(SHIPPED_CONFIGS).map(Path.read_bytes)


@st.composite
def _array_edit(draw, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One array of a checkpoint dropped, replaced, retyped, reshaped, or one of its values changed."""
    arrays = dict(arrays)
    key = draw(st.sampled_from(sorted(arrays) + ["param/extra"]))
    action = draw(st.sampled_from(["drop", "replace", "astype", "truncate", "value"]))
    a = arrays.get(key, np.zeros(3, np.int32))
    if action == "drop":
        arrays.pop(key, None)
    elif action == "replace":
        arrays[key] = draw(ARRAYS)
    elif action == "astype":
        arrays[key] = a.astype(draw(st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint32, np.float64])))
    elif action == "truncate":
        arrays[key] = a.reshape(-1)[:draw(st.integers(0, a.size))]
    elif a.size:
        a = a.copy()
        value = np.uint64(draw(st.sampled_from(_BOUNDARY_INTS)) % 2**64)  # wraps into any integer dtype
        a.reshape(-1)[draw(st.integers(0, a.size - 1))] = value.astype(a.dtype)
        arrays[key] = a
    return arrays


@st.composite
def _content_edit(draw, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The JSON state or the config text of a checkpoint edited."""
    arrays = dict(arrays)
    if draw(st.booleans()):
        state = json.loads(arrays["state"].tobytes())
        arrays["state"] = np.frombuffer(json_bytes(draw(json_edited(state))), np.uint8)
    else:
        text = draw(st.one_of(mutated(arrays["config_text"].tobytes()), line_edited(arrays["config_text"].tobytes()),
                              _shipped_text()))
        arrays["config_text"] = np.frombuffer(text, np.uint8)
    return arrays


@st.composite
def checkpoint_inputs(draw) -> tuple[str, Any]:
    """("raw", file bytes) | ("sealed", arrays, config digest) | ("unsealed", arrays with an edited meta)."""
    data, arrays = checkpoint_base()
    body = {k: v for k, v in arrays.items() if k != "meta"}
    meta = json.loads(arrays["meta"].tobytes())
    kind = draw(st.sampled_from(["raw", "sealed", "sealed", "unsealed"]))
    if kind == "raw":
        return kind, draw(mutated(data, hot=512))
    if kind == "sealed":
        edited = draw(st.one_of(_array_edit(body), _content_edit(body)))
        return kind, edited, draw(st.sampled_from([meta["config_digest"]] * 8 + ["0123456789abcdef", "", "\n"]))
    return kind, {**body, "meta": np.frombuffer(json_bytes(draw(json_edited(meta))), np.uint8)}


def _write_checkpoint(path: Path, case: tuple) -> None:
    if case[0] == "raw":
        path.write_bytes(case[1])
    elif case[0] == "sealed":
        write_sealed(path, case[1], case[2])
    else:
        buf = io.BytesIO()
        np.savez(buf, **case[1])
        write_atomic(path, buf.getvalue())


def check_checkpoint(case: tuple) -> int:
    """`nitro eval`, `nitro train --resume` (with nothing left to train) and `nitro numerics
    --checkpoint` on a damaged checkpoint: each runs or fails cleanly. numerics loads the data before
    the checkpoint, so it runs only for a checkpoint load_checkpoint accepts (it refuses the others
    through the same call); resuming one at epoch 0 would train, so it is not resumed. Returns
    `nitro eval`'s exit code."""
    with scratch() as d:
        path = d / "checkpoint.npz"
        _write_checkpoint(path, case)
        cfg = str(workspace() / "fuzz_embedded.toml")
        loads = accepts(load_checkpoint, path)
        rc = check_cli(d, ["eval", "--checkpoint", str(path), "--data-dir", "embedded"], ok=(0,))
        if not loads or load_checkpoint(path).epoch >= 1:
            check_cli(d, ["train", "--config", cfg, "--out", str(d), "--resume", "--epochs", "1", "--no-progress"],
                      ok=(0,))
        if loads:
            check_cli(d, ["numerics", "--config", cfg, "--checkpoint", str(path), "--steps", "1", "--data-dir",
                          "embedded", "--no-progress"], ok=(0,))
        return rc


# -------------------------------------------------------------------------------- vector sets

VECTOR_PARTS = ("meta", "data", "init", "step1", "step2", "after3")
_CNN = """
[network]
kind = "cnn"
architecture = [["Conv2d", 4, 3, 1, 1], ["MaxPool2d", 2, 2]]
hidden = [8]
pred_decoder_dim = 16
"""


@functools.cache
def vectors_base() -> Path:
    """Two vector sets of two steps: 'emb' (the tiny MLP on embedded data) and 'cnn' (a small CNN
    with a padded learning pool, on random 1x8x8 images)."""
    folder = workspace() / "vectors"
    cfg = load_config(workspace() / "fuzz_embedded.toml")
    ds, net, _ = prepare(cfg, None)
    batches = [(ds.train_x[k * 8:(k + 1) * 8], ds.train_y[k * 8:(k + 1) * 8]) for k in range(2)]
    export_vectors(net, batches, ds.test_x[:16], cfg.train.lr_inv, folder, "emb")
    spec = parse_config(_CNN).build_spec((1, 8, 8))
    rng = np.random.RandomState(1)
    net = Network(spec, init_params(spec, rng))
    x = rng.randint(-128, 128, size=(2, 4, 1, 8, 8)).astype(np.int8)
    y = np.zeros((2, 4, 10), np.int8)
    y[:, np.arange(4), rng.randint(0, 10, 4)] = 32
    export_vectors(net, list(zip(x, y)), x[0], 512, folder, "cnn")
    return folder


def _npz_bytes(arrays: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # object arrays are pickled here, and must be refused when read
    return buf.getvalue()


@st.composite
def _npz_edit(draw, path: Path) -> bytes:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    action = draw(st.sampled_from(["array", "array", "object", "empty", "bytes"]))
    if action == "bytes":
        return draw(mutated(path.read_bytes(), hot=128))
    if action == "empty":
        return _npz_bytes({})
    if action == "object":
        return _npz_bytes({**arrays, draw(st.sampled_from(sorted(arrays))): np.array([None, 1], dtype=object)})
    return _npz_bytes(draw(_array_edit(arrays)))


@st.composite
def vector_inputs(draw) -> tuple[str, str, bytes]:
    """(tag, part, new content): the meta file edited as JSON or as bytes, or one archive edited."""
    tag, part = draw(st.sampled_from(["emb", "cnn"])), draw(st.sampled_from(VECTOR_PARTS[:1] * 3 + VECTOR_PARTS[1:]))
    path = set_file(vectors_base(), tag, part)
    if part != "meta":
        return tag, part, draw(_npz_edit(path))
    meta = json.loads(path.read_text())
    return tag, part, draw(st.one_of(json_edited(meta).map(json_bytes), json_edited(meta).map(json_bytes),
                                     mutated(path.read_bytes())))


def check_vectors(case: tuple[str, str, bytes]) -> int:
    """`nitro conform` on a vector set with one file replaced: it matches (0), reports the first
    mismatch (1), or fails cleanly. Returns the exit code."""
    tag, part, content = case
    with scratch() as d:
        for p in set_files(vectors_base(), tag):
            shutil.copy(p, d)
        set_file(d, tag, part).write_bytes(content)
        return check_cli(d, ["conform", str(d), tag], ok=(0, 1))


# ------------------------------------------------------------------------------ option strings

EMBEDDED_MLP = REPO / "configs" / "embedded_mlp.toml"
_DIGITS = st.one_of(st.integers(-3, 2**70).map(str), st.sampled_from(["\u00b2", "\u0663", "1_0", " 7", "0x10", ""]))


@st.composite
def option_inputs(draw) -> tuple[str, str]:
    """(option, value): --memory, --fault or --tag, as text of any kind or near the valid syntax."""
    opt = draw(st.sampled_from(["--memory", "--fault", "--tag"]))
    if opt == "--memory":
        part = st.tuples(st.sampled_from(["latency", "gap", "stall", "seed", "speed", ""]),
                         st.sampled_from(["=", ":", ""]), _DIGITS).map("".join)
        near = st.lists(part, min_size=1, max_size=5).map(",".join)
    elif opt == "--fault":
        layer = st.sampled_from(["linear_encoder_00", "linear_encoder_01", "conv_encoder_00", "x", ""])
        near = st.tuples(_DIGITS, layer, _DIGITS, _DIGITS, _DIGITS).map(
            lambda t: f"{t[0]}:{t[1]}:{t[2]},{t[3]}:{t[4]}")
    else:
        near = st.text(st.sampled_from("abc./_-\\"), max_size=12)
    return opt, draw(st.one_of(st.text(max_size=40), near, st.sampled_from(["ideal", "ddr3", "golden"])))


def check_option(case: tuple[str, str]) -> int:
    """A cosim or vectors run whose option string may be malformed and whose training data is
    too small either way: one error line, exit 2, before anything is built or written."""
    opt, value = case
    with scratch() as d:
        if opt == "--tag":
            argv = ["vectors", "--config", str(EMBEDDED_MLP), "--out", str(d), "--tag", value,
                    "--steps", "100000", "--data-dir", "embedded"]
        else:
            argv = ["cosim", "--config", str(EMBEDDED_MLP), "--steps", "1", "--train-images", "1",
                    "--out", str(d / "r.json"), "--data-dir", "embedded", opt, value]
        return check_cli(d, argv)


# ------------------------------------------------------------------------------------- runner


# parser -> (its inputs, its property); strategies are built on first use (they read base files).
PARSERS: dict[str, tuple[Callable[[], st.SearchStrategy], Callable[[Any], None]]] = {
    "configs": (config_inputs, check_config),
    "idx": (idx_inputs, check_idx),
    "cifar": (cifar_inputs, check_cifar),
    "checkpoints": (checkpoint_inputs, check_checkpoint),
    "vectors": (vector_inputs, check_vectors),
    "options": (option_inputs, check_option),
}


def fuzz(parser: str, profile: settings, ran: Counter) -> None:
    """Run `parser`'s property under `profile`, counting the inputs run in ran[parser]. A failure is
    raised (shrunk to its smallest input) as CliTraceback or ContractViolation."""
    inputs, prop = PARSERS[parser]

    @profile
    @given(inputs())
    def run(case: Any) -> None:
        ran[parser] += 1
        prop(case)

    run()


def _failures(exc: BaseException) -> list[dict]:
    """Each distinct failure hypothesis reported (one, or a group of them)."""
    group = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
    return [{"kind": "traceback" if isinstance(e, CliTraceback) else type(e).__name__,
             "message": str(e)[:2000], "example": "\n".join(getattr(e, "__notes__", []))[:4000]} for e in group]


def fuzz_one(parser: str, examples: int) -> dict:
    """The long run of one parser: inputs run, seconds, failures."""
    t0, ran, failures = time.perf_counter(), Counter(), []
    try:
        fuzz(parser, settings(settings.get_profile("long"), max_examples=examples), ran)
    except Exception as exc:
        failures = _failures(exc)
    return {"inputs": ran[parser], "seconds": round(time.perf_counter() - t0, 1), "failures": failures,
            "tracebacks": sum(f["kind"] == "traceback" for f in failures)}


def main_long(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=10_000, help="inputs per parser (default 10000)")
    ap.add_argument("--parser", action="append", choices=sorted(PARSERS), help="only this parser (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="parsers fuzzed in parallel processes")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    names = args.parser or list(PARSERS)
    head, t0 = commit(), time.perf_counter()  # the code under test: HEAD when the run starts
    # spawn, not fork: each worker then exits normally and removes its workspace (atexit)
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = dict(zip(names, pool.map(fuzz_one, names, [args.examples] * len(names))))
    doc = {"hypothesis": hypothesis.__version__, "python": platform.python_version(), "numpy": np.__version__,
           "git_commit": head, "examples_asked": args.examples, "seconds": round(time.perf_counter() - t0, 1),
           "tracebacks": sum(r["tracebacks"] for r in results.values()),
           "failures": sum(len(r["failures"]) for r in results.values()), "parsers": results}
    write_atomic(args.out, (json.dumps(doc, indent=1) + "\n").encode())
    for name, r in results.items():
        print(f"{name:12s} {r['inputs']:>7,d} inputs  {r['seconds']:>8.1f} s  {len(r['failures'])} failures")
    print(f"results: {args.out}")
    return 1 if doc["failures"] else 0


if __name__ == "__main__":
    sys.exit(main_long())
