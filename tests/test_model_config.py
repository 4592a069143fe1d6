"""Config validation and the CLI's handling of bad input: one clear line, non-zero exit."""
import numpy as np
import pytest

from model.config import load_config, parse_config, to_toml, with_seed
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
    ('[model]\nx = 1', "unknown top-level key"),
    ('nme = "x"', "['nme'] (known: 'name' and the tables"),
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


TINY = '[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\nhidden = [16]\n[train]\n'


@pytest.mark.parametrize("text,message", [
    ("", r"missing table \[data\]"),
    ('[data]\ndataset = "mnist"\n[train]\n', r"missing table \[network\]"),
    ('[data]\n[network]\nkind = "mlp"\n[train]\n', "missing key 'data.dataset'"),
    ('[data]\ndataset = "mnist"\n[network]\nhidden = [8]\n[train]\n', "missing key 'network.kind'"),
    (TINY.replace("[16]", "[]"), "'network.hidden' must list at least one hidden layer"),
    ('name = "../x"\n' + TINY, "'name' must be a plain name"),
    ('name = ".hidden"\n' + TINY, "'name' must be a plain name"),
    ('name = "a/b"\n' + TINY, "'name' must be a plain name"),
    ("name = 5\n" + TINY, "'name' must be a plain name"),
    (TINY + "seed = -1\n", "'train.seed' must be >= 0"),
    (TINY + f"seed = {2**32}\n", "'train.seed' must be at most 4294967295"),
    (TINY + "eval_batch = 0\n", "'train.eval_batch' must be positive"),
    (TINY + "fwd_decay_inv = -1\n", "'train.fwd_decay_inv' must be >= 0"),
    (TINY.replace("[16]", "[16]\ndropout = nan"), r"'network.dropout' must be in \[0, 1\)"),
    (TINY.replace("[16]", "[16]\ndropout = true"), "'network.dropout' must be float"),
    (TINY.replace("[16]", "[16]\npred_decoder_dim = 0"), "'network.pred_decoder_dim' must be positive"),
    (TINY.replace('"embedded"', '"embedded"\nonehot_value = 128'), "'data.onehot_value' must be at most 127"),
    (TINY.replace('"embedded"', '"embedded"\ncrop_padding = 29'), "'data.crop_padding' must be at most 28"),
    (TINY.replace('"embedded"', '"imagenet"'), "'data.dataset': unknown dataset"),
    (TINY + "[schedule]\nmin_delta = inf\n", r"'schedule.min_delta' must be in \[0, 1\]"),
    (TINY + "[schedule]\nfactor = 0\n", "'schedule.factor' must be positive"),
    (TINY + "seed = " + "[" * 3000 + "]" * 3000 + "\n", "invalid TOML: arrays or tables nested too deeply"),
    (TINY + "seed = " + "9" * 5000 + "\n", "invalid TOML: Exceeds the limit"),
    (TINY.replace('"mlp"\nhidden = [16]', '"cnn"\narchitecture = [["Conv2d", 4, 3, 1, "a"]]'),
     r"'network.architecture\[0\] padding' must be int"),
    (TINY.replace('"mlp"\nhidden = [16]', '"cnn"\narchitecture = [["Conv2d", 4, 3, 1, 3]]'),
     r"'network.architecture\[0\] padding' must be at most 2"),
    (TINY.replace('"mlp"\nhidden = [16]', '"cnn"\narchitecture = [[["Conv2d"]]]'),
     r"'network.architecture\[0\]': unknown layer type \['Conv2d'\]"),
    (TINY.replace("[16]", "[65536, 65536]"), "weights, more than the"),
])
def test_bad_config_files_are_rejected_naming_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(NitroError, match=f"^config {path}: .*{message}"):
        load_config(path)


def test_a_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(TINY.encode() + b"# \xff\n")
    with pytest.raises(NitroError, match="is not UTF-8 text"):
        load_config(path)


def test_the_exact_loss_gradient_declares_16_bits_unless_the_config_says():
    assert parse_config(TINY).numerics.widths.loss_grad == 8
    assert parse_config(TINY + "[quirks]\nloss_grad_wrap = false\n").numerics.widths.loss_grad == 16
    declared = TINY + "[quirks]\nloss_grad_wrap = false\n[numerics]\nwidths = { loss_grad = 12 }\n"
    assert parse_config(declared).numerics.widths.loss_grad == 12


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_to_toml_reads_back_to_the_same_config(path):
    cfg = load_config(path)
    again = parse_config(to_toml(cfg), complete=True)
    assert (again.name, again.digest()) == (cfg.name, cfg.digest())


def test_with_seed_checks_names_and_restates_the_seed():
    cfg = load_config(REPO / "configs/embedded_mlp.toml")
    seeded = with_seed(cfg, 7)
    assert (seeded.name, seeded.train.seed) == ("embedded_mlp_seed7", 7)
    assert parse_config(seeded.source).digest() == seeded.digest()  # a checkpoint's config text has seed 7
    for bad in (-1, 2**32, True, "7"):
        with pytest.raises(NitroError, match="'train.seed'"):
            with_seed(cfg, bad)


# conv4 whose learning pool (8, 8) pads 4 rows and columns, and conv4 - pool - conv4 whose pools
# (4, 4) and (2, 2) tile their maps exactly, with an FC block after them
QUIRK_NETS = {
    "padded_cnn": 'kind = "cnn"\narchitecture = [["Conv2d", 4, 3, 1, 1]]\nhidden = []\npred_decoder_dim = 64',
    "fc_cnn": 'kind = "cnn"\narchitecture = [["Conv2d", 4, 3, 1, 1], ["MaxPool2d", 2, 2], '
              '["Conv2d", 4, 3, 1, 1]]\nhidden = [12]\npred_decoder_dim = 256',
    "mlp": 'kind = "mlp"\nhidden = [16]',
}


def _two_steps(cfg):
    """Every traced tensor of two training steps on the embedded subset from the initial weights
    x64 (at their own scale most scaled outputs round to 0 and hide a difference)."""
    from model.network import Network, Trace
    from model.train import prepare

    ds, net, _ = prepare(cfg, None)
    net = Network(net.spec, {k: v * 64 for k, v in net.params.items()}, cfg.policy())
    out = {}
    for step in range(2):
        trace = Trace()
        sl = slice(16 * step, 16 * step + 16)
        net.train_step(ds.train_x[sl], ds.train_y[sl], 512, trace=trace)
        out.update({f"{step}/{k}": v for k, v in trace.items()})
    return out | {f"w/{k}": v for k, v in net.params.items()}


def test_a_quirk_not_in_effect_leaves_training_as_the_references():
    """quirks_in_effect decides which fixed quirks `nitro vectors` refuses: a fixed quirk it leaves
    out must train exactly as the reference; each quirk it names changes the
    training of at least one of these networks."""
    from dataclasses import fields

    from model.spec import Quirks

    left_out, changed = 0, set()
    for net in QUIRK_NETS.values():
        text = TINY.replace('kind = "mlp"\nhidden = [16]', net)
        want = _two_steps(parse_config(text))
        for f in fields(Quirks):
            cfg = parse_config(f"{text}[quirks]\n{f.name} = {str(not f.default).lower()}\n")
            got = _two_steps(cfg)
            same = got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
            if cfg.quirks_in_effect((1, 28, 28)):
                changed |= {f.name} if not same else set()
            else:
                assert same, (net, f.name)
                left_out += 1
    assert left_out == 5 and changed == {f.name for f in fields(Quirks)}
