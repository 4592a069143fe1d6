"""Dataset files, directory look-up, integer preprocessing (vs reference vectors), augmentation."""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from model import datasets
from model.datasets import MNIST_FILES, find_dataset_dir, load_raw, read_idx, write_idx, write_random_cifar10
from model.numerics import NitroError
from model.preprocess import augment_batch, epoch_permutation, normalize_images, one_hot, preprocess

from conftest import REPO, SHARED


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.fail(f"{path} is missing: the shared reference data must sit at ../shared next to the repo")
    return path


def make_mnist_dir(folder: Path, n_train: int = 5, n_test: int = 3, seed: int = 0, gz: bool = True) -> dict:
    """Write a tiny MNIST-format dataset; returns the arrays written."""
    rng = np.random.RandomState(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.randint(0, 256, (n_train, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte": rng.randint(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.randint(0, 256, (n_test, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.randint(0, 10, n_test).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arr)
    return arrays


@pytest.fixture
def no_default_dirs(tmp_path, monkeypatch):
    """Hide $NITRO_DATA_DIR and /usr/share/datasets (CI machines may have real data there)."""
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path / "system"


# ---------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "arr",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-70000, 0, 1, 2**31 - 1], dtype=np.int32),
        np.array([[-300, 7], [32767, -32768]], dtype=np.int16),
    ],
    ids=["uint8-3d", "int32-1d", "int16-2d"],
)
def test_idx_round_trip(tmp_path, suffix, arr):
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, arr)
    back = read_idx(path)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # atomic write left no temp file


def test_idx_layout_is_the_standard_one(tmp_path):
    write_idx(tmp_path / "x", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    assert (tmp_path / "x").read_bytes() == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    write_idx(tmp_path / "y", np.array([258], dtype=np.int32))  # big-endian payload
    assert (tmp_path / "y").read_bytes()[-4:] == bytes([0, 0, 1, 2])


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    raw = bytes([0, 0, 8, 1, 0, 0, 0, 3, 9, 8, 7])
    (tmp_path / "labels").write_bytes(gzip.compress(raw))
    (tmp_path / "plain.gz").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), [9, 8, 7])
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), [9, 8, 7])


GOOD = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4])


@pytest.mark.parametrize(
    "content, why",
    [
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "trailing bytes"),
        (b"\x12\x34" + GOOD[2:], "bad IDX magic"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX data type code 0x07"),
        (GOOD[:7], "truncated IDX header"),
        (b"\x00\x00", "too short"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (gzip.compress(GOOD)[:-6], "corrupt or truncated gzip"),
    ],
    ids=["truncated", "trailing", "magic", "dtype", "header", "short", "ndim0", "gzip"],
)
def test_idx_corrupt_files_name_the_file(tmp_path, content, why):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(NitroError, match=why) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_idx_truncated_message_gives_sizes(tmp_path):
    path = tmp_path / "t"
    path.write_bytes(GOOD[:-1])
    with pytest.raises(NitroError, match=r"shape \(2, 2\) = 4 data bytes, file has 3"):
        read_idx(path)


# ------------------------------------------------------------------------------ MNIST-format loader


@pytest.mark.parametrize("gz", [True, False])
def test_load_raw_mnist_format(tmp_path, no_default_dirs, gz):
    arrays = make_mnist_dir(tmp_path / "mnist", gz=gz)
    for where in (tmp_path / "mnist", tmp_path):  # the dataset folder itself, or its parent
        raw = load_raw("mnist", where)
        assert raw.name == "mnist" and raw.source == tmp_path / "mnist"
        assert raw.train_x.shape == (5, 1, 28, 28) and raw.train_x.dtype == np.uint8
        assert raw.test_x.shape == (3, 1, 28, 28) and raw.test_y.dtype == np.uint8
        np.testing.assert_array_equal(raw.train_x[:, 0], arrays["train-images-idx3-ubyte"])
        np.testing.assert_array_equal(raw.train_y, arrays["train-labels-idx1-ubyte"])
        np.testing.assert_array_equal(raw.test_x[:, 0], arrays["t10k-images-idx3-ubyte"])
        np.testing.assert_array_equal(raw.test_y, arrays["t10k-labels-idx1-ubyte"])


def test_fmnist_alias_reads_fashion_mnist_folder(tmp_path, no_default_dirs):
    arrays = make_mnist_dir(tmp_path / "fashion-mnist", seed=3)
    raw = load_raw("fmnist", tmp_path)
    assert raw.name == "fashion-mnist"
    np.testing.assert_array_equal(raw.train_y, arrays["train-labels-idx1-ubyte"])


def test_label_count_mismatch(tmp_path, no_default_dirs):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(NitroError, match="holds 5 images but .*train-labels-idx1-ubyte.gz holds 4 labels"):
        load_raw("mnist", tmp_path)


def test_wrong_image_size_and_bad_labels(tmp_path, no_default_dirs):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(NitroError, match=r"t10k-images-idx3-ubyte.gz: expected uint8 images of 28x28"):
        load_raw("mnist", tmp_path)
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 10], np.uint8))
    with pytest.raises(NitroError, match=r"train-labels-idx1-ubyte.gz: label 10 outside 0..9"):
        load_raw("mnist", tmp_path)


def test_unknown_dataset_name():
    with pytest.raises(NitroError, match="unknown dataset 'svhn'.*mnist, fashion-mnist, cifar10"):
        load_raw("svhn")


# ---------------------------------------------------------------------------------- directory order


def test_missing_dataset_lists_searched_locations(tmp_path, no_default_dirs, monkeypatch):
    with pytest.raises(NitroError) as err:
        find_dataset_dir("mnist")
    msg = str(err.value)
    assert "$NITRO_DATA_DIR (not set)" in msg
    assert f"{no_default_dirs / 'mnist'} (no such folder)" in msg
    assert all(f in msg for f in MNIST_FILES) and "\n" not in msg

    env = tmp_path / "env"
    (env / "mnist").mkdir(parents=True)
    (env / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setenv("NITRO_DATA_DIR", str(env))
    with pytest.raises(NitroError) as err:
        find_dataset_dir("mnist")
    msg = str(err.value)
    assert f"{env / 'mnist'} (missing train-labels-idx1-ubyte, t10k-images" in msg
    assert f"{no_default_dirs / 'mnist'} (no such folder)" in msg

    a_file = tmp_path / "a_file"  # --data-dir given a file
    a_file.write_bytes(b"")
    with pytest.raises(NitroError, match=f"{a_file} \\(not a folder\\)"):
        find_dataset_dir("mnist", a_file)


def test_directory_precedence(tmp_path, no_default_dirs, monkeypatch):
    explicit, env, system = tmp_path / "explicit", tmp_path / "env", no_default_dirs
    make_mnist_dir(explicit / "mnist", seed=1)
    make_mnist_dir(env, seed=2)  # env var pointing at the dataset folder itself
    make_mnist_dir(system / "mnist", seed=3)
    monkeypatch.setenv("NITRO_DATA_DIR", str(env))
    assert find_dataset_dir("mnist", explicit) == explicit / "mnist"
    assert find_dataset_dir("mnist") == env
    monkeypatch.setenv("NITRO_DATA_DIR", str(tmp_path / "nothing-here"))
    assert find_dataset_dir("mnist") == system / "mnist"  # env without the dataset falls through
    monkeypatch.delenv("NITRO_DATA_DIR")
    assert find_dataset_dir("mnist") == system / "mnist"
    # an explicit folder is authoritative: no silent fall-back to other locations
    with pytest.raises(NitroError, match=f"not found in data_dir {tmp_path / 'empty'}"):
        find_dataset_dir("mnist", tmp_path / "empty")


def test_embedded_selectors(monkeypatch, no_default_dirs):
    assert find_dataset_dir("embedded") == datasets.EMBEDDED_DIR
    assert find_dataset_dir("mnist", "embedded") == datasets.EMBEDDED_DIR
    monkeypatch.setenv("NITRO_DATA_DIR", "embedded")
    assert find_dataset_dir("mnist") == datasets.EMBEDDED_DIR
    with pytest.raises(NitroError, match="MNIST subset; it cannot stand in for 'cifar10'"):
        find_dataset_dir("cifar10", "embedded")


# ------------------------------------------------------------------------------------------ CIFAR-10


def test_cifar10_loader_shapes_and_channel_order(tmp_path, no_default_dirs):
    rows, labels = write_random_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py")
    raw = load_raw("cifar10", tmp_path)
    assert raw.source == tmp_path / "cifar10" / "cifar-10-batches-py"
    assert raw.train_x.shape == (10, 3, 32, 32) and raw.train_x.dtype == np.uint8
    assert raw.test_x.shape == (2, 3, 32, 32) and raw.train_y.dtype == np.uint8
    np.testing.assert_array_equal(raw.train_y, labels[:10])
    np.testing.assert_array_equal(raw.test_y, labels[10:])
    # row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major
    n, c, h, w = 7, 2, 5, 30
    assert raw.train_x[n, c, h, w] == rows[n, c * 1024 + h * 32 + w]
    assert raw.test_x[1, 0, 31, 0] == rows[11, 31 * 32]
    # the batch folder itself is accepted too
    assert load_raw("cifar-10", tmp_path / "cifar10" / "cifar-10-batches-py").train_x.shape == (10, 3, 32, 32)


def test_cifar10_corrupt_batches(tmp_path, no_default_dirs):
    folder = tmp_path / "cifar10"
    write_random_cifar10(folder)
    bad = folder / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(NitroError, match="data_batch_3: not a CIFAR-10 python batch") as err:
        load_raw("cifar10", tmp_path)
    assert str(bad) in str(err.value)

    write_random_cifar10(folder)
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": os.getcwd}))
    with pytest.raises(NitroError, match=r"data_batch_3: .*refusing to load"):
        load_raw("cifar10", tmp_path)

    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(NitroError, match=r"data_batch_3: 'data' must be a uint8 array of N x 3072"):
        load_raw("cifar10", tmp_path)

    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}))
    with pytest.raises(NitroError, match=r"data_batch_3: 2 images but 'labels' has shape \(3,\)"):
        load_raw("cifar10", tmp_path)


def test_cifar10_missing_file_named(tmp_path, no_default_dirs):
    write_random_cifar10(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "test_batch").unlink()
    with pytest.raises(NitroError, match=f"{tmp_path / 'cifar10'} \\(missing test_batch\\)"):
        load_raw("cifar10", tmp_path)


# ------------------------------------------------------------------------------- preprocessing units


def test_permutation_equals_shuffled_index_vector():
    a = np.random.RandomState(7).permutation(1000)
    rng = np.random.RandomState(7)
    idx = np.arange(1000)
    rng.shuffle(idx)
    np.testing.assert_array_equal(a, idx)


def test_normalize_images_truncates_toward_zero():
    x = np.array([0, 127, 128, 129, 140, 255], np.uint8).reshape(1, 1, 2, 3)
    # v - mean = x - 128 - (-3) = x - 125; times 51, tdiv by 10, clip
    got = normalize_images(x, np.array([-3]), np.array([10]))
    expected = [-128, 10, 15, 20, 76, 127]  # e.g. (127-125)*51/10 = 10.2 -> 10; -637.5 clips to -128
    np.testing.assert_array_equal(got.ravel(), expected)
    x = np.array([124, 123], np.uint8).reshape(1, 1, 1, 2)
    np.testing.assert_array_equal(normalize_images(x, np.array([-3]), np.array([10])).ravel(), [-5, -10])
    assert got.dtype == np.int8
    with pytest.raises(NitroError, match="MAD"):
        normalize_images(x, np.array([0]), np.array([0]))


def test_statistics_use_first_25000_shuffled_images(tmp_path):
    n = 30000
    perm = np.random.RandomState(5).permutation(n)  # what preprocess draws (see the RNG-stream test)
    x = np.zeros((n, 1, 1, 2), np.uint8)  # images at shuffled positions >= 25000 stay 0 (v = -128)
    x[perm[:25000]] = np.array([[200, 100]], np.uint8)  # v = 72 / -28: mean 22, mad 50
    y = np.zeros(n, np.uint8)
    raw = datasets.RawDataset("t", x, y, x[:1], y[:1], tmp_path)
    ds = preprocess(raw, np.random.RandomState(5))
    np.testing.assert_array_equal(ds.train_index, perm)
    assert ds.norm_mean.tolist() == [22] and ds.norm_mad.tolist() == [50]


def test_one_hot_parameters():
    y = one_hot(np.array([2, 0]), num_classes=3, value=16)
    np.testing.assert_array_equal(y, [[0, 0, 16], [16, 0, 0]])
    assert y.dtype == np.int8
    with pytest.raises(NitroError, match="outside 0..2"):
        one_hot(np.array([3]), num_classes=3)


def test_preprocess_per_channel_stats_and_parameters(tmp_path):
    x = np.zeros((4, 3, 2, 2), np.uint8)
    x[:, 0] = 128  # channel 0: v = 0 except one 4 and one 72 -> mean trunc(76/16) = 4,
    x[0, 0, 0, :2] = [132, 200]  # mad trunc((0 + 68 + 14*4)/16) = 7
    x[:, 1] = np.array([100, 200, 100, 200], np.uint8)[:, None, None]  # v = -28 / 72: mean 22, mad 50
    x[:, 2] = 127
    x[3, 2, 1, 1] = 129  # v = -1 fifteen times, 1 once: mean trunc(-14/16) = 0 (floor would give -1)
    raw = datasets.RawDataset("t", x, np.array([0, 1, 2, 3], np.uint8), x[:2], np.array([4, 5], np.uint8), tmp_path)
    ds = preprocess(raw, np.random.RandomState(0), num_classes=6, onehot_value=100)
    np.testing.assert_array_equal(ds.norm_mean, [4, 22, 0])
    np.testing.assert_array_equal(ds.norm_mad, [7, 50, 1])
    # (4-4)*51/7 = 0; (72-4)*51/7 clips to 127; (0-4)*51/7 = -29.1 -> -29 (toward zero);
    # (-28-22)*51/50 = -51
    np.testing.assert_array_equal(ds.test_x[0, 0], [[0, 127], [-29, -29]])
    np.testing.assert_array_equal(ds.test_x[:, 1, 0, 0], [-51, 51])
    np.testing.assert_array_equal(ds.train_x[:, 2].reshape(4, -1).min(axis=1), [-51] * 4)
    assert ds.train_x.dtype == np.int8 and ds.test_x.dtype == np.int8
    # the shuffle is a permutation of rows, applied to images and labels alike
    np.testing.assert_array_equal(np.sort(ds.train_index), np.arange(4))
    np.testing.assert_array_equal(ds.train_labels, raw.train_y[ds.train_index])
    np.testing.assert_array_equal(ds.train_x, normalize_images(x[ds.train_index], ds.norm_mean, ds.norm_mad))
    assert ds.train_y.shape == (4, 6) and ds.train_y.dtype == np.int8
    np.testing.assert_array_equal(ds.train_y[np.arange(4), ds.train_labels], [100] * 4)
    assert int(np.count_nonzero(ds.train_y)) == 4
    np.testing.assert_array_equal(ds.test_labels, [4, 5])


# ------------------------------------------------------------------- reference conformance (MNIST)

# Initial-weight draws of the `mlp` reference run (spec 7.3 bounds), in construction order: they sit
# in the RNG stream between the preprocessing shuffle and the epoch-1 shuffle.
MLP_INIT_DRAWS = [
    ("linear_encoder_00", 10), ("linear_pred_00", 30), ("linear_encoder_01", 30),
    ("linear_pred_01", 43), ("linear_02", 43),
]


@pytest.fixture(scope="module")
def mnist_full():
    return load_raw("mnist", shared("datasets/mnist"))


@pytest.fixture(scope="module")
def reference_run(mnist_full):
    """Seed 42 as the reference: preprocess, draw the MLP's initial weights, epoch-1 permutation."""
    rng = np.random.RandomState(42)
    ds = preprocess(mnist_full, rng)
    init = np.load(shared("refvectors/mlp_init.npz"))
    weights = {n: rng.randint(-b, b + 1, size=init[f"{n}.weight"].shape, dtype=np.int32) for n, b in MLP_INIT_DRAWS}
    return ds, weights, init, epoch_permutation(rng, len(ds.train_x))


def test_full_mnist_shapes(mnist_full):
    assert mnist_full.train_x.shape == (60000, 1, 28, 28) and mnist_full.test_x.shape == (10000, 1, 28, 28)
    assert mnist_full.train_y[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]


def test_reference_normalisation_and_test_set(reference_run):
    ds = reference_run[0]
    ref = np.load(shared("refvectors/mlp_data.npz"))
    assert ds.norm_mean.tolist() == [int(ref["norm_mean"])] == [-94]
    assert ds.norm_mad.tolist() == [int(ref["norm_mad"])] == [55]
    np.testing.assert_array_equal(ds.test_x[:256], ref["test_x"])
    np.testing.assert_array_equal(ds.test_y[:256], ref["test_y_onehot"])
    np.testing.assert_array_equal(ds.test_labels[:256], ref["test_label"])


def test_reference_training_images_by_mnist_index(reference_run):
    ds = reference_run[0]
    row_of = np.argsort(ds.train_index)  # MNIST training index -> row of the shuffled set
    ref = np.load(shared("refvectors/mlp_data.npz"))
    for k in (1, 2, 3):
        rows = row_of[ref[f"step{k}_mnist_index"]]
        np.testing.assert_array_equal(ds.train_x[rows], ref[f"step{k}_x"])
        np.testing.assert_array_equal(ds.train_y[rows], ref[f"step{k}_y_onehot"])
        np.testing.assert_array_equal(ds.train_labels[rows], ref[f"step{k}_label"])


def test_reference_epoch1_order(reference_run):
    ds, weights, init, perm = reference_run
    for name, w in weights.items():  # proves the RNG stream is where the reference's was
        np.testing.assert_array_equal(w, init[f"{name}.weight"])
    order = ds.train_index[perm]  # MNIST index at each position of the epoch-1 order
    x_epoch = ds.train_x[perm]
    for tag, start in (("mlp", 0), ("mlp_warm1500", 1500 * 32)):
        ref = np.load(shared(f"refvectors/{tag}_data.npz"))
        for k in (1, 2, 3):
            lo = start + 32 * (k - 1)
            np.testing.assert_array_equal(order[lo : lo + 32], ref[f"step{k}_mnist_index"], err_msg=f"{tag} step{k}")
            np.testing.assert_array_equal(x_epoch[lo : lo + 32], ref[f"step{k}_x"], err_msg=f"{tag} step{k}")


def test_rng_stream_preprocess_draws_one_permutation(reference_run):
    ds = reference_run[0]
    rng = np.random.RandomState(42)
    np.testing.assert_array_equal(ds.train_index, rng.permutation(60000))
    # Without the weight-init draws in between, the next permutation is not the epoch-1 order.
    first = ds.train_index[epoch_permutation(rng, 60000)[:32]]
    assert not np.array_equal(first, np.load(shared("refvectors/mlp_data.npz"))["step1_mnist_index"])


# -------------------------------------------------------------------------------------- augmentation


def replay(seed: int, n: int) -> list[int]:
    r = np.random.RandomState(seed)
    return [int(r.randint(1 << 30)) for _ in range(n)]


def _after(rng: np.random.RandomState, n: int) -> list[int]:
    return [int(rng.randint(1 << 30)) for _ in range(n)]


def augment_case() -> np.ndarray:
    x = np.full((2, 1, 3, 3), 50, np.int8)
    x[0, 0] = np.arange(9).reshape(3, 3) - 4  # a..i = -4..4
    x[1, 0, 2, 2] = -100  # batch minimum, lives in the other image
    return x


def test_augment_crop_uses_drawn_offsets_and_batch_minimum():
    # seed 6 draws: crop 1, top 0, left 2, flip 0 (checked below via the raw draws)
    r = np.random.RandomState(6)
    assert (r.binomial(1, 0.5), r.randint(0, 3), r.randint(0, 3), r.binomial(1, 0.5)) == (1, 0, 2, 0)
    x = augment_case()
    rng = np.random.RandomState(6)
    out = augment_batch(x, rng, crop_padding=1, flip=True)
    m = -100
    np.testing.assert_array_equal(out[0, 0], [[m, m, m], [-3, -2, m], [0, 1, m]])
    np.testing.assert_array_equal(out[1, 0], [[m, m, m], [50, 50, m], [50, 50, m]])  # its -100 is cropped away
    assert out.dtype == np.int8 and out.shape == x.shape and out.flags.c_contiguous
    ref = np.random.RandomState(6)
    ref.binomial(1, 0.5), ref.randint(0, 3), ref.randint(0, 3), ref.binomial(1, 0.5)
    assert _after(rng, 3) == _after(ref, 3)  # exactly four draws consumed


def test_augment_crop_then_flip():
    r = np.random.RandomState(13)
    assert (r.binomial(1, 0.5), r.randint(0, 3), r.randint(0, 3), r.binomial(1, 0.5)) == (1, 2, 0, 1)
    out = augment_batch(augment_case(), np.random.RandomState(13), crop_padding=1, flip=True)
    m = -100
    np.testing.assert_array_equal(out[0, 0], [[0, -1, m], [3, 2, m], [m, m, m]])


def test_augment_no_crop_and_flip_only_when_enabled():
    x = augment_case()
    r = np.random.RandomState(1)
    assert (r.binomial(1, 0.5), r.binomial(1, 0.5)) == (0, 1)
    np.testing.assert_array_equal(augment_batch(x, np.random.RandomState(1), 1, flip=True), x[..., ::-1])
    rng = np.random.RandomState(1)
    np.testing.assert_array_equal(augment_batch(x, rng, 1, flip=False), x)
    ref = np.random.RandomState(1)
    ref.binomial(1, 0.5)
    assert _after(rng, 3) == _after(ref, 3)  # flip disabled: only the crop decision was drawn
    rng = np.random.RandomState(1)
    np.testing.assert_array_equal(augment_batch(x, rng, 0, flip=False), x)
    assert _after(rng, 3) == replay(1, 3)  # no transform, no draw


def test_augment_mnist_padding_two_offsets():
    x = np.arange(2 * 28 * 28, dtype=np.int16).reshape(2, 1, 28, 28) - 7
    rng = np.random.RandomState(4)
    r = np.random.RandomState(4)
    assert r.binomial(1, 0.5) == 1
    top, left = r.randint(0, 5), r.randint(0, 5)
    out = augment_batch(x, rng, crop_padding=2, flip=False)
    # output pixel (i, j) is input pixel (i + top - 2, j + left - 2), or the batch minimum outside
    i, j = np.meshgrid(np.arange(28) + top - 2, np.arange(28) + left - 2, indexing="ij")
    inside = (i >= 0) & (i < 28) & (j >= 0) & (j < 28)
    expected = np.where(inside, x[:, :, i.clip(0, 27), j.clip(0, 27)], x.min())
    np.testing.assert_array_equal(out, expected)
    assert (top, left) != (2, 2) and out.dtype == np.int16


# ------------------------------------------------------------------------------------ embedded subset


def test_embedded_subset(mnist_full):
    raw = load_raw("embedded")
    assert raw.name == "embedded" and raw.source == datasets.EMBEDDED_DIR
    assert raw.train_x.shape == (10000, 1, 28, 28) and raw.test_x.shape == (2000, 1, 28, 28)
    assert raw.train_y.shape == (10000,) and raw.test_y.shape == (2000,)
    assert raw.train_x.dtype == np.uint8 and set(np.unique(raw.train_y).tolist()) == set(range(10))
    for part, n in (("train_x", 10000), ("train_y", 10000), ("test_x", 2000), ("test_y", 2000)):
        np.testing.assert_array_equal(getattr(raw, part), getattr(mnist_full, part)[:n])
    size = sum(p.stat().st_size for p in datasets.EMBEDDED_DIR.iterdir())
    assert size <= 3 * 2**20


def test_make_embedded_subset_script(tmp_path, no_default_dirs):
    spec = importlib.util.spec_from_file_location("make_embedded_subset", REPO / "scripts" / "make_embedded_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    arrays = make_mnist_dir(tmp_path / "full", n_train=6, n_test=4, gz=False)
    out = tmp_path / "sub"
    assert script.main(["--src", str(tmp_path / "full"), "--out", str(out), "--train", "4", "--test", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.gz" for s in MNIST_FILES)
    raw = load_raw("mnist", out)
    np.testing.assert_array_equal(raw.train_x[:, 0], arrays["train-images-idx3-ubyte"][:4])
    np.testing.assert_array_equal(raw.train_y, arrays["train-labels-idx1-ubyte"][:4])
    np.testing.assert_array_equal(raw.test_x[:, 0], arrays["t10k-images-idx3-ubyte"][:2])
    np.testing.assert_array_equal(raw.test_y, arrays["t10k-labels-idx1-ubyte"][:2])
    assert script.main(["--src", str(tmp_path / "full"), "--out", str(out), "--train", "7"]) == 1


@pytest.mark.parametrize("asked, other", [("fashion-mnist", "mnist"), ("mnist", "fashion-mnist")])
def test_the_other_dataset_in_the_folder_is_refused(asked, other):
    """MNIST and Fashion-MNIST share file names and shapes: each full set is known by its test
    labels, so one given for the other is an error, not a silent swap."""
    with pytest.raises(NitroError, match=f"holds {other}, not {asked}"):
        load_raw(asked, shared(f"datasets/{other}"))
    assert load_raw(asked, shared("datasets")).name == asked  # the parent folder finds the right one
