"""Vector export round trip: what the golden model exports, `nitro conform` accepts bit for bit.
A check of the file format and of replay, not of arithmetic (the golden model replays its own
vectors): agreement with the reference implementation is tests/test_model_conform.py's."""
import json

import numpy as np
import pytest

from model.conform import run_conformance
from model.config import parse_config
from model.init import init_params
from model.network import Network
from model.numerics import NitroError
from model.vectors import export_vectors, set_file
from scripts.cli import main

from conftest import REPO

CNN = """
[network]
kind = "cnn"
architecture = [["Conv2d", 4, 3, 1, 1], ["MaxPool2d", 2, 2], ["Conv2d", 8, 3, 1, 1], ["MaxPool2d", 2, 2]]
hidden = [16]
pred_decoder_dim = 128
"""


def test_cli_exports_a_vector_set_conform_accepts(tmp_path, capsys):
    cfg = str(REPO / "configs/embedded_mlp.toml")
    assert main(["vectors", "--config", cfg, "--out", str(tmp_path), "--tag", "emb", "--steps", "2",
                 "--test-images", "64"]) == 0
    assert main(["conform", str(tmp_path), "emb"]) == 0
    out = capsys.readouterr().out
    assert "emb step 2: " in out and "every array of every step matches" in out
    meta = json.loads((tmp_path / "emb_meta.json").read_text())
    assert meta["backward_block_order"] == ["linear_block_01", "linear_block_00"]


def test_cnn_with_padded_learning_pool_round_trips(tmp_path):
    spec = parse_config(CNN).build_spec((1, 14, 14))
    assert any(b.pool is not None and b.pool.padding != (0, 0) for b in spec.blocks.values())
    rng = np.random.RandomState(1)
    net = Network(spec, init_params(spec, rng))
    x = rng.randint(-128, 128, size=(3, 8, 1, 14, 14)).astype(np.int8)
    y = np.zeros((3, 8, 10), np.int8)
    y[:, np.arange(8), rng.randint(0, 10, 8)] = 32
    export_vectors(net, list(zip(x, y)), x[0], 512, tmp_path, "c")
    reports = run_conformance(tmp_path, "c")
    assert [r.step for r in reports] == ["1", "2", "3", "after"]
    assert all(r.arrays and not r.mismatches for r in reports)
    with np.load(tmp_path / "c_step1.npz") as f:
        assert "fwd/linear_pred_04@2" in f.files  # the FC block's second update (quirk D8) is recorded


def test_export_refuses_dropout(tmp_path):
    spec = parse_config('[network]\nkind = "mlp"\nhidden = [8]\ndropout = 0.1\n').build_spec((1, 4, 4))
    net = Network(spec, init_params(spec, np.random.RandomState(0)))
    with pytest.raises(NitroError, match="dropout"):
        export_vectors(net, [], np.zeros((1, 1, 4, 4), np.int8), 512, tmp_path, "d")


@pytest.mark.parametrize("part", ["meta.json", "step", "step1.npz", "after", "weights"])
def test_a_set_has_only_its_own_parts(part, tmp_path):
    assert set_file(tmp_path, "t", "step12").name == "t_step12.npz"
    assert set_file(tmp_path, "t", "meta").name == "t_meta.json"
    with pytest.raises(ValueError, match="no part"):
        set_file(tmp_path, "t", part)
