"""Training loop: reproduces the reference's CPU run, resumes exactly, guards its files."""
import json
from dataclasses import replace

import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from model.config import load_config, with_seed
from model.numerics import NitroError
from model.train import batches_per_epoch, prepare, train

from conftest import REPO


def test_first_epoch_reproduces_the_reference_run(shared_dir, tmp_path):
    """Seed 42, full MNIST: same init, shuffles and arithmetic as the reference -> same accuracies."""
    bench = json.loads((shared_dir / "refvectors" / "bench_mlp.json").read_text())["epochs"][0]
    cfg = load_config(REPO / "configs/mlp_mnist.toml")
    res = train(cfg, tmp_path, shared_dir / "datasets" / "mnist", epochs=1, progress=False)
    row = res.history[0]
    assert row.train_acc == bench["train_acc"]  # 0.5133..., float of an exact count
    assert row.test_acc == bench["test_acc_ref"]  # 0.8868..., 9984 test images
    assert row.wraps == 0


@pytest.fixture
def small_cfg():
    return load_config(REPO / "configs/embedded_mlp.toml")


def test_resume_is_bit_identical(small_cfg, tmp_path):
    """A resumed run trains only the epochs left (retraining from scratch would give the same
    weights) and ends where the straight run does."""
    from model.parallel import LocalStepper

    straight = train(small_cfg, tmp_path / "a", epochs=2, progress=False)
    train(small_cfg, tmp_path / "b", epochs=1, progress=False)
    planned = []

    def counted(net, steps):
        planned.append(steps)
        return LocalStepper(net)

    resumed = train(small_cfg, tmp_path / "b", epochs=2, resume=True, progress=False, make_stepper=counted)
    assert planned == [batches_per_epoch(small_cfg, prepare(small_cfg, None)[0])]  # one epoch, not two
    for k, w in straight.network.params.items():
        np.testing.assert_array_equal(resumed.network.params[k], w)
    untimed = lambda h: [replace(r, train_s=0.0, train_img_s=0.0) for r in h]
    assert untimed(resumed.history) == untimed(straight.history)
    accs = [r.test_acc for r in straight.history]
    assert accs[1] > accs[0] and accs[1] > 0.3  # it learns (chance is 0.1) on the embedded subset
    for f in ("metrics.csv", "metrics.json", "curves.png", "checkpoint.npz"):
        assert (tmp_path / "a" / f).stat().st_size > 0


def test_checkpoint_guards(small_cfg, tmp_path):
    train(small_cfg, tmp_path, epochs=1, progress=False)
    ck = tmp_path / "checkpoint.npz"
    before = ck.read_bytes()
    with pytest.raises(NitroError, match="already holds checkpoint.npz.*pass --resume"):
        train(small_cfg, tmp_path, epochs=1, progress=False)
    assert ck.read_bytes() == before  # nothing overwritten
    other = load_config(REPO / "configs/mlp_mnist.toml")
    with pytest.raises(NitroError, match="different config"):
        train(other, tmp_path, "embedded", epochs=2, resume=True, progress=False)
    seeded = tmp_path / "seeded"  # a --seed run resumed without its --seed is told which
    train(with_seed(small_cfg, 7), seeded, epochs=1, progress=False)
    with pytest.raises(NitroError, match="trained with seed 7: resume it with --seed 7"):
        train(small_cfg, seeded, epochs=2, resume=True, progress=False)
    assert train(with_seed(small_cfg, 7), seeded, epochs=2, resume=True, progress=False).epochs_run == 2
    damaged = bytearray(before)
    damaged[len(damaged) // 2] ^= 0xFF
    ck.write_bytes(bytes(damaged))
    with pytest.raises(NitroError, match="corrupt"):
        load_checkpoint(ck)
    ck.write_bytes(b"garbage")
    with pytest.raises(NitroError, match="corrupt or not a checkpoint"):
        train(small_cfg, tmp_path, epochs=2, resume=True, progress=False)
