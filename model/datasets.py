"""Raw dataset files: IDX (MNIST, Fashion-MNIST), CIFAR-10 python batches, and where to find them.

Everything here returns the pixels exactly as stored (uint8, channel-first); the integer
preprocessing of the reference lives in `preprocess.py`. `find_dataset_dir` is the one place that
knows the data directories.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import pickletools
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fileio import write_atomic
from .numerics import NitroError

DATA_DIR_ENV = "NITRO_DATA_DIR"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded" / "mnist-subset"
EMBEDDED = "embedded"

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

DATASETS = ("mnist", "fashion-mnist", "cifar10")
ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "cifar-10": "cifar10"}
NUM_CLASSES = 10
_IMAGE_SHAPE = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}

# IDX type codes (third magic byte) -> big-endian element type.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_GUNZIP_LIMIT = 1 << 30  # a few kB of gzip can expand to any size; MNIST's largest file has 47 MB
_IDX_MAX_DIMS = 32  # NumPy 1.x's array rank limit (2.x allows 64); image files have 3


@dataclass
class RawDataset:
    """Pixels and labels as stored: x uint8 (N, C, H, W) channel-first (RGB for CIFAR-10), y uint8 (N,)."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: Path


def one_line(exc: BaseException) -> str:
    """A library's error message on one line (some span several): the CLI reports an error as one line."""
    return " ".join(str(exc).split())


# --------------------------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip magic (the name is not trusted)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise NitroError(f"{path}: cannot read ({e.strerror or one_line(e)})") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                data = f.read(_GUNZIP_LIMIT + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise NitroError(f"{path}: corrupt or truncated gzip data ({one_line(e)})") from None
        if len(data) > _GUNZIP_LIMIT:
            raise NitroError(f"{path}: gzip data expands to more than {_GUNZIP_LIMIT} bytes")
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or plain, detected by magic bytes) into a native-endian array.

    The dtype is the file's (uint8 for MNIST); the shape is the declared dimensions.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise NitroError(f"{path}: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise NitroError(f"{path}: bad IDX magic {data[:4].hex()} (expected 0000<type><ndim>)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise NitroError(f"{path}: unknown IDX data type code 0x{code:02x}")
    if not 1 <= ndim <= _IDX_MAX_DIMS:
        raise NitroError(f"{path}: IDX header declares {ndim} dimensions (1..{_IDX_MAX_DIMS} supported)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise NitroError(
            f"{path}: truncated IDX header ({ndim} dimensions need {header} bytes, file has {len(data)})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if 0 in dims:
        raise NitroError(f"{path}: IDX header declares shape {dims}: a file with no entries")
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow however large the header
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "trailing bytes"
        raise NitroError(
            f"{path}: {what}: header declares shape {dims} = {expected} data bytes, file has {actual}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return arr.astype(dtype.newbyteorder("=")).reshape(dims)  # copy: native order, writable


def write_idx(path: str | Path, arr: np.ndarray) -> None:
    """Write `arr` as an IDX file, gzipped (reproducibly: mtime 0) when `path` ends in .gz.

    Atomic: written to a temporary file in the same folder, then renamed over `path`.
    """
    path = Path(path)
    arr = np.asarray(arr)
    native = arr.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        raise NitroError(f"{path}: IDX cannot store dtype {arr.dtype}")
    if not 1 <= arr.ndim <= _IDX_MAX_DIMS:
        raise NitroError(f"{path}: IDX files here hold 1..{_IDX_MAX_DIMS} dimensions, array has {arr.ndim}")
    header = bytes([0, 0, _IDX_CODES[native], arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=native.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    write_atomic(path, payload)


def write_random_cifar10(folder: str | Path, n_per_batch: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 folder in the official python-batch format holding random images and labels,
    `n_per_batch` in each of its six files (CIFAR-10 itself is not shipped: tests and the
    engine's regression train on CIFAR-shaped inputs from this). Returns every file's rows
    (N x 3072) and labels, in file order."""
    folder, rng = Path(folder), np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for name in CIFAR10_FILES:
        data = rng.randint(0, 256, (n_per_batch, 3072)).astype(np.uint8)
        lab = [int(v) for v in rng.randint(0, NUM_CLASSES, n_per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": lab, b"data": data,
                 b"filenames": [b"img%d.png" % i for i in range(n_per_batch)]}
        write_atomic(folder / name, pickle.dumps(batch, protocol=2))
        rows.append(data)
        labels.append(lab)
    return np.concatenate(rows), np.concatenate(labels)


# ------------------------------------------------------------------------------- directory look-up


def canonical_name(name: str) -> str:
    """'mnist', 'fashion-mnist' or 'cifar10' (accepts aliases such as 'fmnist'), or 'embedded'."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS and key != EMBEDDED:
        raise NitroError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS + (EMBEDDED,))}")
    return key


def image_shape(name: str) -> tuple[int, int, int]:
    """(C, H, W) of every image of dataset `name`: the loaders refuse files of any other shape."""
    key = canonical_name(name)
    return _IMAGE_SHAPE["mnist" if key == EMBEDDED else key]


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_files(folder: Path, name: str) -> list[str]:
    if name == "cifar10":
        return [f for f in CIFAR10_FILES if not (folder / f).is_file()]
    return [f for f in MNIST_FILES if _idx_file(folder, f) is None]


def _candidates(root: Path, name: str) -> list[Path]:
    # A root may be the dataset folder itself or a parent holding `<name>/`; CIFAR-10 files may
    # additionally sit in the `cifar-10-batches-py/` folder of the official archive.
    folders = [root, root / name]
    if name == "cifar10":
        folders += [root / CIFAR10_FOLDER, root / name / CIFAR10_FOLDER]
    return folders


def _search(roots: list[Path], name: str, searched: list[str]) -> Path | None:
    for root in roots:
        for folder in _candidates(root, name):
            missing = _missing_files(folder, name) if folder.is_dir() else None
            if missing == []:
                return folder
            if missing is None:
                searched.append(f"{folder} ({'not a folder' if folder.exists() else 'no such folder'})")
            else:
                searched.append(f"{folder} (missing {', '.join(missing)})")
    return None


def data_dir_for(name: str, data_dir: str | Path | None) -> str | Path | None:
    """A data folder given to a tool that runs several configs, as one of them should read it:
    not at all when its dataset is the embedded subset (which `find_dataset_dir` refuses to look
    for in a folder)."""
    return None if canonical_name(name) == EMBEDDED else data_dir


def find_dataset_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """Folder holding the files of dataset `name`.

    Order: explicit `data_dir` (only it is searched: an explicit folder that lacks the files is an
    error), then $NITRO_DATA_DIR, then /usr/share/datasets/<name>. Each of `data_dir` and
    $NITRO_DATA_DIR may be the dataset folder itself or a parent holding `<name>/`; the value
    'embedded' (or name 'embedded') selects the MNIST subset shipped in the repository.
    """
    name = canonical_name(name)
    if name == EMBEDDED and data_dir is not None and str(data_dir) != EMBEDDED:
        raise NitroError(f"--data-dir {data_dir}: dataset 'embedded' is the MNIST subset in the "
                         f"repository and is read from there; drop --data-dir, or set [data] dataset "
                         f"= \"mnist\" in the config to read MNIST from {data_dir}")
    if name == EMBEDDED or (data_dir is not None and str(data_dir) == EMBEDDED):
        if name not in (EMBEDDED, "mnist"):
            raise NitroError(f"the embedded dataset is an MNIST subset; it cannot stand in for {name!r}")
        return EMBEDDED_DIR
    searched: list[str] = []
    if data_dir is not None:
        found = _search([Path(data_dir).expanduser()], name, searched)
        if found is None:
            raise NitroError(_not_found(name, searched, f"data_dir {data_dir}"))
        return found
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        if env == EMBEDDED:
            return find_dataset_dir(name, EMBEDDED)
        found = _search([Path(env).expanduser()], name, searched)
        if found is not None:
            return found
    else:
        searched.append(f"${DATA_DIR_ENV} (not set)")
    found = _search([SYSTEM_DATA_DIR / name], name, searched)
    if found is None:
        raise NitroError(_not_found(name, searched, "any known location"))
    return found


def _not_found(name: str, searched: list[str], where: str) -> str:
    if name == "cifar10":
        need = f"{CIFAR10_FOLDER}/ with {', '.join(CIFAR10_FILES)} (the official 'python version')"
    else:
        need = f"{', '.join(MNIST_FILES)} (each optionally .gz)"
    return (
        f"dataset {name!r} not found in {where}; searched: {'; '.join(searched)}. "
        f"Put {need} in <dir>/{name}/ and pass --data-dir <dir> or set {DATA_DIR_ENV}=<dir>"
    )


# ------------------------------------------------------------------------------------------ loaders


def load_raw(name: str, data_dir: str | Path | None = None) -> RawDataset:
    """Load 'mnist', 'fashion-mnist' ('fmnist'), 'cifar10' or 'embedded' as uint8 arrays.

    MNIST-like: x (N, 1, 28, 28); CIFAR-10: x (N, 3, 32, 32) RGB; labels uint8 (N,) in 0..9.
    """
    key = canonical_name(name)
    folder = find_dataset_dir(key, data_dir)
    if folder == EMBEDDED_DIR:
        key = EMBEDDED
    if key == "cifar10":
        (tr_x, tr_y), (te_x, te_y) = _load_cifar10(folder)
    else:
        shape = image_shape(key)
        tr_x, tr_y = _load_idx_pair(folder, "train", shape)
        te_x, te_y = _load_idx_pair(folder, "t10k", shape)
        _check_identity(key, te_y, folder)
    return RawDataset(key, tr_x, tr_y, te_x, te_y, folder)


# MNIST and Fashion-MNIST share file names and shapes: the full sets' test labels tell them apart
TEST_LABELS_SHA256 = {
    "mnist": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    "fashion-mnist": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}


def _check_identity(name: str, test_y: np.ndarray, folder: Path) -> None:
    """Refuse a folder that holds the other full dataset (files of neither are taken as given)."""
    digest = hashlib.sha256(np.ascontiguousarray(test_y).tobytes()).hexdigest()
    other = [n for n, d in TEST_LABELS_SHA256.items() if d == digest and n != name]
    if other:
        raise NitroError(f"{folder} holds {other[0]}, not {name}: point --data-dir at the {name} "
                         f"files (or at the folder holding {name}/)")


def _load_idx_pair(folder: Path, split: str, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    img_path = _idx_file(folder, f"{split}-images-idx3-ubyte")
    lbl_path = _idx_file(folder, f"{split}-labels-idx1-ubyte")
    assert img_path is not None and lbl_path is not None  # find_dataset_dir checked
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.dtype != np.uint8 or images.shape[1:] != shape[1:]:
        raise NitroError(
            f"{img_path}: expected uint8 images of {shape[1]}x{shape[2]}, "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise NitroError(f"{lbl_path}: expected a 1-D uint8 label vector, got {labels.dtype} {labels.shape}")
    _check_labels(labels, lbl_path)
    if len(images) != len(labels):
        raise NitroError(f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels")
    return images.reshape((len(images),) + shape), labels


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise NitroError(f"{path}: label {int(labels.max())} outside 0..{NUM_CLASSES - 1}")


# Objects a CIFAR-10 batch pickle legitimately references; anything else is refused.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise NitroError(f"{path}: cannot read ({e.strerror or one_line(e)})") from None
    try:
        # Walk the opcodes first, executing nothing: every length an opcode declares must fit in the
        # file, so the unpickler never allocates for a length that is not there (a bytearray of
        # 2^40 bytes: MemoryError, and CPython prints a SystemError of its own on stderr).
        for _ in pickletools.genops(data):
            pass
        # NumPy reports some corrupt arrays only to sys.unraisablehook (a traceback on stderr)
        old_hook, unraisable = sys.unraisablehook, []
        sys.unraisablehook = unraisable.append
        try:
            obj = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
        except Exception:
            if not unraisable:
                raise
        finally:
            sys.unraisablehook = old_hook
        if unraisable:  # the error NumPy reported that way, not the one it left behind
            raise unraisable[0].exc_value
    except Exception as e:  # a corrupt pickle can raise almost anything
        raise NitroError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {one_line(e)})") from None
    if not isinstance(obj, dict):
        raise NitroError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    data, labels = obj.get(b"data", obj.get("data")), obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise NitroError(f"{path}: 'data' must be a uint8 array of N x 3072, got {got}")
    labels = _cifar_labels(labels, path)
    if len(labels) != len(data):
        raise NitroError(f"{path}: {len(data)} images but 'labels' has shape {labels.shape}")
    # Rows are 1024 R, 1024 G, 1024 B values, each plane row-major: a plain reshape is (N, 3, 32, 32).
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_labels(labels: object, path: Path) -> np.ndarray:
    """'labels' as uint8 classes: a list of ints (the official batches) or a 1-D integer array.
    Checked before any conversion, which would wrap, overflow or warn about other values."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise NitroError(f"{path}: 'labels' must be a list of integers")
    if not all(0 <= v < NUM_CLASSES for v in labels):
        raise NitroError(f"{path}: labels outside 0..{NUM_CLASSES - 1}")
    return np.asarray(labels, dtype=np.uint8)


def _load_cifar10(folder: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    batches = [_load_cifar_batch(folder / f) for f in CIFAR10_FILES[:-1]]
    train = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    return train, _load_cifar_batch(folder / CIFAR10_FILES[-1])
