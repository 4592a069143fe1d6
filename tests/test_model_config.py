"""Config validation and the CLI's handling of bad input: one clear line, non-zero exit."""
import pytest

from model.config import load_config, parse_config
from model.numerics import NitroError
from scripts.cli import main

from conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.toml"))


def test_the_seven_paper_experiments_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"mlp_mnist", "mlp_fmnist", "mlp_cifar10", "vgg8b_mnist", "vgg8b_fmnist", "vgg8b_cifar10",
            "vgg11b_cifar10"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_parses(path):
    cfg = load_config(path)
    assert cfg.name == path.stem


@pytest.mark.parametrize("text,message", [
    ('[network]\nkind = "mlp"\nhiden = [100]', "unknown key 'network.hiden'"),
    ('[network]\nkind = "cnn"\narchitecture = [["Conv3d", 8, 3, 1, 1]]', "unknown layer type 'Conv3d'"),
    ('[network]\nkind = "mlp"\nhidden = [100, -5]', "list of positive integers"),
    ('[network]\nkind = "mlp"\nslope_inv = 6', "unsupported NITRO-ReLU slope inverse 6"),
    ('[network]\nkind = "mlp"\ndropout = 0.12', "unsupported dropout rate"),
    ('[train]\nbatch_size = 0', "'train.batch_size' must be positive"),
    ('[train]\nlr_inv = "512"', "'train.lr_inv' must be int"),
    ('[numerics]\nmode = "saturate"', "'numerics.mode'"),
    ('[numerics]\nwidths = { weight = 1 }', "width of 'weight'"),
    ('[network]\nkind = "cnn"\narchitecture = [["Conv2d", 8, 3, 2, 1]]', "only stride 1"),
    ('[network]\nkind = "cnn"\narchitecture = [["MaxPool2d", 64, 64]]', "larger than side"),
    ('[model]\nx = 1', "unknown table"),
    ('[network\n', "invalid TOML"),
])
def test_bad_configs_are_rejected_clearly(text, message):
    with pytest.raises(NitroError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_config(text)


def test_cli_bad_config_one_line_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\nkind = "mlp"\nslope_inv = 5.5\n')
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("nitro: error:") and "slope_inv" in err
    assert not (tmp_path / "o").exists()


def test_cli_missing_dataset_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NITRO_DATA_DIR", raising=False)
    rc = main(["train", "--config", str(REPO / "configs/mlp_fmnist.toml"), "--data-dir", str(tmp_path),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "fashion-mnist" in err


def test_network_rejects_wrong_shapes():
    import numpy as np
    from model.init import init_params
    from model.network import Network

    spec = load_config(REPO / "configs/mlp_mnist.toml").build_spec((1, 28, 28))
    params = init_params(spec, np.random.RandomState(0))
    net = Network(spec, params)
    with pytest.raises(NitroError, match=r"input batch must have shape \(B, 1, 28, 28\)"):
        net.train_step(np.zeros((4, 1, 28, 27), np.int8), np.zeros((4, 10), np.int8), 512)
    with pytest.raises(NitroError, match=r"targets must have shape \(4, 10\)"):
        net.train_step(np.zeros((4, 1, 28, 28), np.int8), np.zeros((4, 9), np.int8), 512)
    params["linear_02"] = params["linear_02"][:, :10]
    with pytest.raises(NitroError, match="weights of 'linear_02' have shape"):
        Network(spec, params)


def test_cli_train_eval_and_checkpoint_errors(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = str(REPO / "configs/embedded_mlp.toml")
    assert main(["train", "--config", cfg, "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    ck = out / "checkpoint.npz"
    assert main(["eval", "--checkpoint", str(ck)]) == 0
    acc = json_best(out)
    assert f"test accuracy {100 * acc:.2f}%" in capsys.readouterr().out
    before = ck.read_bytes()
    other = str(REPO / "configs/mlp_mnist.toml")
    assert main(["train", "--config", other, "--data-dir", "embedded", "--out", str(out), "--resume"]) == 2
    assert "different config" in capsys.readouterr().err
    assert ck.read_bytes() == before
    ck.write_bytes(before[:1000])  # truncated
    assert main(["eval", "--checkpoint", str(ck)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "corrupt" in err


def json_best(out):
    import json

    return json.loads((out / "metrics.json").read_text())["best"]["test_acc"]
