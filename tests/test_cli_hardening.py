"""Issue 12: bad input gives one `nitro: error:` line and exit 2 before any work, nothing of the
user's is overwritten, interrupted writes leave the previous file and no temp file, and every check
that compared nothing fails."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from model.fileio import remove_stale_temps, write_atomic
from model.numerics import NitroError
from scripts.cli import build_parser, main

from conftest import REPO

TINY = """name = "tiny"
[data]
dataset = "embedded"
[network]
kind = "mlp"
hidden = [16]
[train]
batch_size = 64
epochs = 1
"""


def nitro(capsys, *argv) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit code, stderr) after checking the one-line rule."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nitro: error: "), err
        assert "Traceback" not in err
    return rc, err


@pytest.fixture
def tiny(tmp_path) -> Path:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    return cfg


def snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("name", ["metrics.csv", "metrics.json", "curves.png", "checkpoint.npz"])
def test_train_refuses_to_overwrite_any_output(capsys, tiny, tmp_path, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(b"the user's file")
    before = snapshot(out)
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", out, "--no-progress")
    assert rc == 2 and f"already holds {name}" in err and "--force" in err
    assert snapshot(out) == before


def test_a_folder_where_an_output_goes_is_refused_before_training(capsys, tiny, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint.npz").mkdir(parents=True)
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", out, "--force", "--no-progress")
    assert rc == 2 and "checkpoint.npz is not a file" in err and not (out / "metrics.csv").exists()


def test_distributed_training_checks_its_input_before_ray_starts(capsys, tiny, tmp_path, monkeypatch):
    import scripts.scaleout as scaleout

    monkeypatch.setattr(scaleout, "ray_session", lambda *a, **k: pytest.fail("Ray started first"))
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("the user's file")
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", out, "--pipeline", "1", "--no-progress")
    assert rc == 2 and "already holds metrics.csv" in err
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", tmp_path / "r2", "--pipeline", "5",
                    "--no-progress")
    assert rc == 2 and "--pipeline 5: the network has only" in err


def test_train_force_overwrites(capsys, tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("old")
    rc, _ = nitro(capsys, "train", "--config", tiny, "--out", out, "--no-progress", "--force")
    assert rc == 0 and (out / "metrics.csv").read_text().startswith("epoch,")


@pytest.mark.parametrize("argv, msg", [
    (["--epochs", "0"], "--epochs: expected a positive integer up to 2147483647, got 0"),
    (["--epochs", "99999999999"], "--epochs: expected a positive integer up to 2147483647, got 99999999999"),
    (["--epochs", "x"], "--epochs: expected a positive integer"),
    (["--seed", "-1"], "--seed: expected a seed from 0 to 4294967295, got -1"),
    (["--seed", str(1 << 32)], "--seed: expected a seed from 0 to 4294967295, got 4294967296"),
    (["--resume", "--force"], "not allowed with argument --resume"),
])
def test_train_bad_arguments(capsys, tiny, tmp_path, argv, msg):
    out = tmp_path / "run"
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", out, "--no-progress", *argv)
    assert rc == 2 and msg in err
    assert not out.exists() or not any(out.iterdir())


def test_train_out_is_a_file(capsys, tiny, tmp_path):
    f = tmp_path / "afile"
    f.write_text("mine")
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", f, "--no-progress")
    assert rc == 2 and "is not a folder" in err and f.read_text() == "mine"
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", f / "sub", "--no-progress")
    assert rc == 2 and "not writable" in err and f.read_text() == "mine"


@pytest.mark.parametrize("text, msg", [
    ("", "missing"),
    (TINY.replace("hidden = [16]", "hidden = []"), "hidden"),
    (TINY.replace('name = "tiny"', 'name = "../escape"'), "name"),
    (TINY.replace('name = "tiny"', 'name = "/tmp/abs"'), "name"),
    (TINY.replace("epochs = 1", "epochs = 1\nseed = 4294967296"), "train.seed"),
])
def test_train_bad_configs(capsys, tmp_path, text, msg):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "run"
    rc, err = nitro(capsys, "train", "--config", cfg, "--out", out, "--no-progress")
    assert rc == 2 and msg in err
    assert not out.exists()


def test_small_test_set_fails_before_training(capsys, tmp_path):
    cfg = tmp_path / "big_eval.toml"
    cfg.write_text(TINY.replace("epochs = 1", "epochs = 1\neval_batch = 4096"))
    out = tmp_path / "run"
    rc, err = nitro(capsys, "train", "--config", cfg, "--out", out, "--no-progress")
    assert rc == 2 and "train.eval_batch = 4096" in err
    assert not out.exists()  # no epoch ran: the folder it made is gone again


def test_a_failed_run_leaves_no_folder_it_made_and_keeps_the_users(capsys, tmp_path):
    cfg = tmp_path / "big_eval.toml"
    cfg.write_text(TINY.replace("epochs = 1", "epochs = 1\neval_batch = 4096"))
    rc, _ = nitro(capsys, "train", "--config", cfg, "--out", tmp_path / "a" / "b" / "run", "--no-progress")
    assert rc == 2 and not (tmp_path / "a").exists()  # the parents it made as well
    mine = tmp_path / "mine"
    mine.mkdir()
    rc, _ = nitro(capsys, "train", "--config", cfg, "--out", mine / "run", "--no-progress")
    assert rc == 2 and mine.is_dir() and list(mine.iterdir()) == []
    rc, _ = nitro(capsys, "train", "--config", cfg, "--out", mine, "--no-progress")
    assert rc == 2 and mine.is_dir()  # an empty folder of the user's is theirs


@pytest.mark.parametrize("width, where", [
    ("activation = 4", "non_linearity_00: output value -36 at index (0, 0) does not fit the declared "
                       "4-bit activation width"),
    ("loss_grad = 2", "linear_02: loss gradient value -32 at index (0, 2) does not fit the declared "
                      "2-bit loss_grad width"),
])
def test_declared_activation_and_loss_grad_widths_are_enforced(capsys, tmp_path, width, where):
    cfg = tmp_path / "narrow.toml"
    cfg.write_text(TINY.replace("hidden = [16]", "hidden = [100, 50]")
                   + f'[numerics]\nmode = "check"\nwidths = {{ {width} }}\n')
    rc, err = nitro(capsys, "numerics", "--config", cfg, "--steps", "1", "--no-progress")
    assert rc == 2 and where in err


def test_declared_widths_wrap_and_count_in_wrap_mode(tmp_path):
    from model.config import load_config
    from model.train import prepare

    cfg = tmp_path / "narrow.toml"
    cfg.write_text(TINY + '[numerics]\nwidths = { activation = 4 }\n')
    ds, net, rng = prepare(load_config(cfg), None)
    net.train_step(ds.train_x[:64], ds.train_y[:64], 512, rng=rng)
    assert net.policy.wraps[("non_linearity_00", "output")] > 0


def test_vectors_refuse_to_overwrite_a_set(capsys, tiny, tmp_path):
    out = tmp_path / "vec"
    out.mkdir()
    (out / "golden_meta.json").write_text("{}")
    rc, err = nitro(capsys, "vectors", "--config", tiny, "--out", out, "--steps", "1")
    assert rc == 2 and "already holds vector set 'golden'" in err
    assert (out / "golden_meta.json").read_text() == "{}"
    rc, err = nitro(capsys, "vectors", "--config", tiny, "--out", tmp_path / "v2", "--steps", "1000")
    assert rc == 2 and "--steps 1000 needs 64000 training images" in err
    # checked before a look at each step's file (2^31 of them took hours)
    rc, err = nitro(capsys, "vectors", "--config", tiny, "--out", tmp_path / "v2", "--steps", "2147483647")
    assert rc == 2 and "--steps 2147483647 needs 137438953408 training images" in err


def test_vectors_force_replaces_the_whole_set_and_only_it(capsys, tiny, tmp_path):
    """A set whose tag starts with another's is not that set; --force leaves no file of the old set
    (a longer earlier run's golden_step2.npz) beside the new one."""
    out = tmp_path / "vec"
    rc, _ = nitro(capsys, "vectors", "--config", tiny, "--out", out, "--steps", "2", "--tag", "golden_b")
    assert rc == 0
    rc, _ = nitro(capsys, "vectors", "--config", tiny, "--out", out, "--steps", "2")
    assert rc == 0 and (out / "golden_step2.npz").exists()
    rc, _ = nitro(capsys, "vectors", "--config", tiny, "--out", out, "--steps", "1", "--force")
    assert rc == 0 and not (out / "golden_step2.npz").exists() and (out / "golden_b_step2.npz").exists()


@pytest.mark.parametrize("tag", ["../escape", "sub/x", ".hidden", ""])
def test_vectors_tag_is_a_plain_name(capsys, tiny, tmp_path, tag):
    """The tag names files inside --out: a path in it would write elsewhere."""
    rc, err = nitro(capsys, "vectors", "--config", tiny, "--out", tmp_path / "v", "--tag", tag,
                    "--steps", "1")
    assert rc == 2 and "tag must be a plain name" in err
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob("*_meta.json"))


def test_unknown_command_and_missing_argument_are_one_line(capsys):
    assert nitro(capsys, "bogus")[0] == 2
    assert nitro(capsys, "train")[0] == 2
    assert nitro(capsys, "cosim", "--config", "x", "--batch", "0")[0] == 2
    rc, err = nitro(capsys, "cosim", "--config", "x", "--force")  # nothing it could overwrite
    assert rc == 2 and "give --out" in err
    rc, err = nitro(capsys, "train", "--config", "")
    assert rc == 2 and "--config: expected a path" in err


def test_cosim_checkpoint_of_another_network_is_refused_before_the_build(capsys, tmp_path, monkeypatch):
    """--checkpoint: a missing file, a run of another network, or weights wider than the engine
    stores, is one error line; nothing is built."""
    import sim.engine.build
    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.train import start_checkpoint

    monkeypatch.setattr(sim.engine.build, "build_engine", lambda *a, **k: pytest.fail("built"))
    cfg = REPO / "configs" / "embedded_mlp.toml"
    rc, err = nitro(capsys, "cosim", "--config", cfg, "--checkpoint", tmp_path / "none.npz")
    assert rc == 2 and "does not exist" in err
    rc, err = nitro(capsys, "cosim", "--config", cfg, "--checkpoint", tmp_path)
    assert rc == 2 and f"checkpoint {tmp_path} is a folder, not a file" in err
    wide = tmp_path / "wide.toml"
    wide.write_text(cfg.read_text().replace("hidden = [100, 50]", "hidden = [120, 50]"))
    wcfg = load_config(wide)
    save_checkpoint(tmp_path / "wide.npz", start_checkpoint(wcfg))
    rc, err = nitro(capsys, "cosim", "--config", cfg, "--checkpoint", tmp_path / "wide.npz")
    assert rc == 2 and "written for a different config" in err
    # weights a run grew past the engine's storage (CNN weights outgrow int16): refused up front
    big = start_checkpoint(load_config(cfg), scale=4096)
    save_checkpoint(tmp_path / "big.npz", big)
    rc, err = nitro(capsys, "cosim", "--config", cfg, "--checkpoint", tmp_path / "big.npz")
    assert rc == 2 and "exceed the engine's 16-bit weight storage (|W| up to" in err


def test_cosim_refuses_widths_the_engine_does_not_compute_with(capsys, tiny, tmp_path, monkeypatch):
    """Widths other than the reference's (a narrower accumulator wraps in the golden model, not in
    the engine) are refused before the build, not reported as the engine's mismatch."""
    import sim.engine.build

    monkeypatch.setattr(sim.engine.build, "build_engine", lambda *a, **k: pytest.fail("built"))
    cfg = tmp_path / "narrow.toml"
    cfg.write_text(TINY + "[numerics]\nwidths = { accumulator = 12, delta = 20 }\n")
    rc, err = nitro(capsys, "cosim", "--config", cfg, "--steps", "1")
    assert rc == 2 and ("engine: it computes what the reference's widths give (int32 wrap); the config sets "
                        "numerics.widths.accumulator = 12, numerics.widths.delta = 20") in err


def test_every_option_says_what_it_does():
    """`nitro CMD --help` explains each option (and its default where it has one)."""
    import argparse

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert len(subs.choices) >= 10
    bare = [f"{name} {'/'.join(a.option_strings)}" for name, p in subs.choices.items()
            for a in p._actions if a.option_strings and a.help is None]
    assert bare == []


@pytest.mark.parametrize("argv, msg", [
    (["--seed", "2"], "apply to the engine"),
    (["--seed", "1"], "apply to the engine"),  # the default's value, given without --engine
    (["--unit", "stream_engine"], "synthesized by `nitro synth --engine"),
    (["--unit", "stream_engine_cnn"], "synthesized by `nitro synth --engine"),
    (["--weight-bits", "24"], "apply to the engine"),
    (["--no-route"], "apply to the engine"),
    (["--speed", "8"], "apply to the engine"),
    (["--speed", "6"], "apply to the engine"),  # the default grade, given without --engine
    (["--engine", "--seed", "0"], "expected a positive integer up to 2147483647"),
    (["--engine", "--route-minutes", "x"], "expected a positive integer"),
    (["--unit", "mac", "--unit", "bogus"], "unknown unit 'bogus'"),
    (["--engine", "--unit", "mac"], "apply to the units"),
    (["--engine", "--no-pnr"], "apply to the units"),
    (["--engine", "--baseline"], "apply to the units"),
    (["--engine", "--no-route", "--route-minutes", "5"], "not with --no-route"),
])
def test_synth_bad_arguments(capsys, tmp_path, argv, msg):
    rc, err = nitro(capsys, "synth", "--out", tmp_path / "s", *argv)
    assert rc == 2 and msg in err and not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv, result", [
    (["synth", "--engine", "--out", "s"], "s/engine/synth.json"),
    (["synth", "--engine", "--out", "s"], "s/engine/floorplan.png"),
    (["synth", "--out", "s"], "s/synth.json"),
    (["synth", "--out", "s"], "s/synth.md"),
    (["synth", "--out", "s"], "s/synth.png"),
    (["cosim", "--config", REPO / "configs" / "embedded_mlp.toml", "--out", "c.json"], "c.json"),
])
def test_synth_and_cosim_keep_an_earlier_result(capsys, tmp_path, monkeypatch, argv, result):
    """A routed engine took the better part of an hour: rerunning into the same --out (another
    --seed, say) must not replace it unless --force."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / result).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / result).write_text("the user's result")
    rc, err = nitro(capsys, *argv)
    assert rc == 2 and f"{result} already exists" in err and "--force" in err
    assert (tmp_path / result).read_text() == "the user's result"


def test_rtl_unknown_unit_writes_nothing(capsys, tmp_path):
    rc, err = nitro(capsys, "rtl", "--out", tmp_path / "r", "--unit", "mac", "--unit", "bogus")
    assert rc == 2 and "unknown unit 'bogus'" in err and not (tmp_path / "r").exists()


# ---- interrupted writes ----------------------------------------------------------------------

KILLED_WRITER = textwrap.dedent("""
    import os, sys, time
    import model.fileio as F
    def hang(fd):  # the payload is in the temp file, the rename has not happened: kill here
        print("writing", flush=True)
        time.sleep(600)
    F.os.fsync = hang
    F.write_atomic(sys.argv[1], b"new" * 1000)
""")


def kill_during_write(path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()


def temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_kill_during_checkpoint_write_keeps_the_previous_file_and_resume_cleans_up(capsys, tiny, tmp_path):
    out = tmp_path / "run"
    assert nitro(capsys, "train", "--config", tiny, "--out", out, "--no-progress")[0] == 0
    ck = out / "checkpoint.npz"
    before = ck.read_bytes()
    kill_during_write(ck)
    assert ck.read_bytes() == before and load_checkpoint(ck).epoch == 1
    assert len(temps(out)) == 1  # the killed writer's
    rc, _ = nitro(capsys, "train", "--config", tiny, "--out", out, "--no-progress", "--resume",
                  "--epochs", "2")
    assert rc == 0 and load_checkpoint(ck).epoch == 2
    assert temps(out) == []


def test_next_write_of_the_same_file_removes_a_dead_writers_temp(tmp_path):
    f = tmp_path / "report.md"
    write_atomic(f, b"old")
    kill_during_write(f)
    assert f.read_bytes() == b"old" and len(temps(tmp_path)) == 1
    write_atomic(f, b"newer")
    assert f.read_bytes() == b"newer" and temps(tmp_path) == []



def test_a_dead_exports_staging_folder_is_removed_by_the_next_run(capsys, tmp_path):
    """`nitro vectors` stages a set in a folder named like a temp file: one left by a killed
    export goes with the next run into that folder."""
    out = tmp_path / "vec"
    out.mkdir()
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "from model.fileio import temp_folder; "
                    "(temp_folder(Path(sys.argv[1]), 'k') / 'k_step1.npz').write_bytes(b'partial')",
                    str(out)], cwd=REPO, check=True)
    assert len(temps(out)) == 1
    rc, _ = nitro(capsys, "vectors", "--config", str(REPO / "configs/embedded_mlp.toml"), "--out", out,
                  "--tag", "k", "--steps", "1", "--test-images", "8")
    assert rc == 0 and temps(out) == [] and (out / "k_meta.json").is_file()


HOLDER = """import sys, time
from model.fileio import removed_if_left_empty, writable_folder
with removed_if_left_empty():
    writable_folder(sys.argv[1])
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_folder_another_command_holds_is_refused(capsys, tiny, tmp_path):
    """Two runs into one folder: the second is refused while the first runs (both used to end
    with exit 0, one's results silently replacing the other's), and runs once the first ends."""
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        rc, err = nitro(capsys, "train", "--config", tiny, "--out", out, "--no-progress")
        assert rc == 2 and "is in use by another nitro command" in err
        assert not (out / "checkpoint.npz").exists()
    finally:
        holder.kill()
        holder.wait()
    assert nitro(capsys, "train", "--config", tiny, "--out", out, "--no-progress")[0] == 0

def test_a_live_writers_temp_is_kept(tmp_path):
    live = tmp_path / f".x.{os.getpid()}.abcd1234.tmp"
    live.write_text("in progress")
    assert remove_stale_temps(tmp_path) == [] and live.exists()


def test_a_users_file_shaped_like_a_temp_is_kept(tmp_path):
    """Only tempfile's own names count as temps: a dead pid in a name of the user's is not enough."""
    mine = tmp_path / ".mynotes.999999999.x.tmp"
    mine.write_text("my notes")
    assert remove_stale_temps(tmp_path) == [] and mine.exists()


def test_vectors_force_that_fails_keeps_the_old_set(capsys, tiny, tmp_path):
    """--force replaces a set only with a complete new one: an export that fails (dropout makes a
    network non-deterministic) leaves the old set as it was, and no staging folder."""
    out = tmp_path / "vec"
    assert nitro(capsys, "vectors", "--config", tiny, "--out", out, "--steps", "1")[0] == 0
    before = snapshot(out)
    drop = tmp_path / "drop.toml"
    drop.write_text(TINY.replace("hidden = [16]", "hidden = [16]\ndropout = 0.5"))
    rc, err = nitro(capsys, "vectors", "--config", drop, "--out", out, "--steps", "1", "--force")
    assert rc == 2 and "deterministic network" in err
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)


# conv4 with a learning pool of (8, 8) padded by 4 rows and columns (28 = 3 x 8 + 4)
TINY_PADDED_CNN = TINY.replace('kind = "mlp"\nhidden = [16]', 'kind = "cnn"\narchitecture = '
                               '[["Conv2d", 4, 3, 1, 1]]\nhidden = []\npred_decoder_dim = 64')


@pytest.mark.parametrize("config, extra, named", [
    (TINY, "[quirks]\nloss_grad_wrap = false\n", "quirks.loss_grad_wrap = false, numerics.widths.loss_grad = 16"),
    (TINY_PADDED_CNN, "[quirks]\nmaxpool_pad_zero = false\n", "quirks.maxpool_pad_zero = false"),
    (TINY_PADDED_CNN, "[quirks]\nconv_amp_inert = false\n", "quirks.conv_amp_inert = false"),
    (TINY, "[numerics]\nwidths = { accumulator = 16 }\n", "numerics.widths.accumulator = 16"),
])
def test_vectors_refuse_what_no_replay_reproduces(capsys, tmp_path, config, extra, named):
    """conform replays a set with the reference's behaviours and widths, which its meta file
    implies: a set of a network that a fixed quirk trains otherwise, or with other widths, would
    not replay."""
    cfg = tmp_path / "fixed.toml"
    cfg.write_text(config + extra)
    rc, err = nitro(capsys, "vectors", "--config", cfg, "--out", tmp_path / "v", "--steps", "1")
    assert rc == 2 and f"this network sets {named}" in err
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").iterdir())


def test_vectors_take_quirks_the_network_never_meets(capsys, tmp_path):
    """The MLP has no convolution, learning pool or FC block after convolutions: the fixes of
    those quirks leave its training as the reference's, and its set replays."""
    cfg = tmp_path / "fixed.toml"
    cfg.write_text(TINY + "[quirks]\nmaxpool_pad_zero = false\nfc_double_update = false\n"
                   "conv_amp_inert = false\n")
    assert nitro(capsys, "vectors", "--config", cfg, "--out", tmp_path / "v", "--steps", "1")[0] == 0
    assert main(["conform", str(tmp_path / "v"), "golden"]) == 0
    assert "golden: every array of every step matches bit for bit" in capsys.readouterr().out


def test_vectors_name_a_folder_in_the_way_before_any_work(capsys, tiny, tmp_path):
    """A folder where a part of the new set goes is named before any work (not as a temporary
    file's failure midway), and the old set stays whole, --force or not."""
    out = tmp_path / "vec"
    assert nitro(capsys, "vectors", "--config", tiny, "--out", out, "--steps", "1")[0] == 0
    before = snapshot(out)
    (out / "golden_step2.npz").mkdir()
    rc, err = nitro(capsys, "vectors", "--config", tiny, "--out", out, "--steps", "2", "--force")
    assert rc == 2 and f"{out / 'golden_step2.npz'} is not a file: the set's step2 part goes there" in err
    assert snapshot(out) == before


def test_rtl_names_a_manifest_folder_before_writing(capsys, tmp_path):
    out = tmp_path / "rtl"
    (out / "manifest.json").mkdir(parents=True)
    for force in ([], ["--force"]):
        rc, err = nitro(capsys, "rtl", "--out", out, "--unit", "mac", *force)
        assert rc == 2 and f"{out / 'manifest.json'} is not a file" in err
        assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_vectors_take_the_checkpoints_weights(capsys, tiny, tmp_path):
    """vectors --checkpoint: the set's initial weights are the checkpoint's, not the config's."""
    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.train import prepare, start_checkpoint

    cfg = load_config(tiny)
    weights = {k: v * 3 for k, v in prepare(cfg, None)[1].params.items()}
    save_checkpoint(tmp_path / "ck.npz", start_checkpoint(cfg, weights))
    for bad in ({"params": weights, "scale": 3}, {"scale": 0}):  # a scale it would not apply
        with pytest.raises(NitroError, match="scale must be a positive integer"):
            start_checkpoint(cfg, **bad)
    rc, _ = nitro(capsys, "vectors", "--config", tiny, "--checkpoint", tmp_path / "ck.npz", "--steps", "1",
                  "--out", tmp_path / "v")
    init = np.load(tmp_path / "v" / "golden_init.npz")
    assert rc == 0 and sorted(init.files) == sorted(f"{k}.weight" for k in weights)
    assert all(np.array_equal(init[f"{k}.weight"], w) for k, w in weights.items())


def test_a_seeded_runs_checkpoint_serves_numerics_and_vectors(capsys, tiny, tmp_path):
    """`train --seed 5` writes a checkpoint of tiny_seed5: numerics and vectors take it with the
    config it came from (tiny.toml), and refuse it with another config."""
    rc, _ = nitro(capsys, "train", "--config", tiny, "--seed", "5", "--out", tmp_path / "r", "--no-progress")
    ck = tmp_path / "r" / "checkpoint.npz"
    assert rc == 0 and ck.exists()
    rc, _ = nitro(capsys, "numerics", "--config", tiny, "--checkpoint", ck, "--steps", "1", "--no-progress")
    assert rc == 0
    rc, _ = nitro(capsys, "vectors", "--config", tiny, "--checkpoint", ck, "--steps", "1", "--out", tmp_path / "v")
    assert rc == 0 and (tmp_path / "v" / "golden_meta.json").exists()
    other = tmp_path / "other.toml"
    other.write_text(TINY.replace("hidden = [16]", "hidden = [32]"))
    rc, err = nitro(capsys, "numerics", "--config", other, "--checkpoint", ck, "--steps", "1")
    assert rc == 2 and "was written for a different config" in err


@pytest.mark.parametrize("argv, msg", [
    (["numerics", "--steps", "100000"], "--steps 100000 needs 6400000 training images"),
    (["vectors", "--test-images", "100000"], "--test-images 100000: the data has"),
])
def test_counts_beyond_the_data_are_errors_not_cut_down(capsys, tiny, tmp_path, argv, msg):
    rc, err = nitro(capsys, *argv, "--config", tiny, *(["--out", tmp_path / "v"] if argv[0] == "vectors" else []))
    assert rc == 2 and msg in err


def test_a_config_with_a_byte_order_mark_reads_as_without(tmp_path, tiny):
    from model.config import load_config

    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + tiny.read_bytes())
    assert load_config(bom).digest() == load_config(tiny).digest()


@pytest.mark.parametrize("cmd", ["vectors", "numerics", "eval", "cosim"])
def test_an_empty_checkpoint_path_is_refused(capsys, tiny, cmd):
    """--checkpoint "" would silently mean the initial weights."""
    rc, err = nitro(capsys, cmd, *(["--config", tiny] if cmd != "eval" else []), "--checkpoint", "")
    assert rc == 2 and "expected a path" in err


@pytest.mark.parametrize("argv", [["conform", "", "mlp"], ["train", "--out", "r", "--data-dir", ""],
                                  ["sweep", "--seeds", "1", "--data-dir", ""]])
def test_an_empty_data_path_is_refused(capsys, tiny, argv):
    """An empty vector folder or --data-dir would silently mean the current folder."""
    rc, err = nitro(capsys, *argv, *(["--config", tiny] if argv[0] != "conform" else []))
    assert rc == 2 and "expected a path, got an empty string" in err


def test_out_of_memory_is_one_line(capsys, tiny, tmp_path, monkeypatch):
    """numpy's allocation failure (a MemoryError) is one error line, not a traceback."""
    import model.train

    def too_big(*a, **k):
        np.empty(1 << 62, dtype=np.uint8)

    monkeypatch.setattr(model.train, "_epochs", too_big)
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", tmp_path / "run", "--no-progress")
    assert rc == 2 and "train: out of memory" in err


def test_a_config_that_is_not_a_regular_file_is_refused(capsys, tmp_path):
    """A device, a pipe or a folder as --config: one error line, nothing read without end."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    for path, msg in (("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                      (tmp_path, "not a regular file"), (big, "not an experiment TOML")):
        rc, err = nitro(capsys, "train", "--config", path, "--out", tmp_path / "run")
        assert rc == 2 and msg in err
    assert not (tmp_path / "run").exists()


def test_resume_to_fewer_epochs_than_trained_is_an_error(capsys, tiny, tmp_path):
    out = tmp_path / "run"
    assert nitro(capsys, "train", "--config", tiny, "--out", out, "--epochs", "2", "--no-progress")[0] == 0
    before = snapshot(out)
    rc, err = nitro(capsys, "train", "--config", tiny, "--out", out, "--resume", "--epochs", "1", "--no-progress")
    assert rc == 2 and "has trained 2 epochs already, more than the 1 asked for" in err
    assert snapshot(out) == before


@pytest.mark.parametrize("command", [["rtl"], ["synth"], ["flow"], ["sweep", "--config", "x", "--seeds", "1"]])
def test_an_empty_out_path_is_refused(capsys, command):
    rc, err = nitro(capsys, *command, "--out", "")
    assert rc == 2 and "--out: expected a path, got an empty string" in err


def test_folders_of_an_inner_scope_that_succeeded_go_when_the_outer_one_fails(tmp_path):
    from model.fileio import removed_if_left_empty, writable_folder

    with pytest.raises(RuntimeError):
        with removed_if_left_empty():
            with removed_if_left_empty():
                writable_folder(tmp_path / "a" / "b")
            assert (tmp_path / "a" / "b").is_dir()
            raise RuntimeError
    assert not (tmp_path / "a").exists()


def test_resume_refuses_other_data(capsys, tmp_path):
    """A checkpoint records a digest of the images and labels it trained on: resuming it on a
    dataset of the same size but other content (another --data-dir) is refused, not continued."""
    import gzip
    import shutil

    from model.datasets import EMBEDDED_DIR

    for name in ("a", "b"):
        shutil.copytree(EMBEDDED_DIR, tmp_path / name / "mnist")
    labels = tmp_path / "b" / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # the first training label
    labels.write_bytes(gzip.compress(bytes(raw)))
    cfg = tmp_path / "m.toml"
    cfg.write_text(TINY.replace('dataset = "embedded"', 'dataset = "mnist"').replace("epochs = 1", "epochs = 2"))
    run = ["train", "--config", cfg, "--out", tmp_path / "run", "--no-progress"]
    assert nitro(capsys, *run, "--epochs", "1", "--data-dir", tmp_path / "a")[0] == 0
    rc, err = nitro(capsys, *run, "--resume", "--data-dir", tmp_path / "b")
    assert rc == 2 and "was trained on other images or labels than these" in err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.npz").epoch == 1
    assert nitro(capsys, *run, "--resume", "--data-dir", tmp_path / "a")[0] == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.npz").epoch == 2


def test_data_dir_for_the_embedded_subset_is_refused(capsys, tiny, tmp_path):
    """The embedded subset is read from the repository, so a --data-dir given with it (a wrong
    path too) would be ignored: it is refused; a sweep whose configs all use the subset says so,
    one that mixes it with on-disk data reads the folder for those configs only."""
    from scripts.sweep import plan_trials

    for argv in (["train", "--config", tiny, "--out", tmp_path / "r"],
                 ["cosim", "--config", REPO / "configs" / "embedded_mlp.toml", "--steps", "1"]):
        rc, err = nitro(capsys, *argv, "--data-dir", tmp_path / "nowhere")
        assert rc == 2 and f"--data-dir {tmp_path / 'nowhere'}: dataset 'embedded' is the MNIST subset" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(NitroError, match="every config's dataset is 'embedded'"):
        plan_trials([tiny], [1], str(tmp_path))
    mnist = tmp_path / "mnist.toml"
    mnist.write_text(TINY.replace('name = "tiny"', 'name = "m"').replace('"embedded"', '"mnist"'))
    with pytest.raises(NitroError, match=f"dataset 'mnist' not found in data_dir {tmp_path}"):
        plan_trials([tiny, mnist], [1], str(tmp_path))  # the folder is searched for mnist only
    assert len(plan_trials([tiny, mnist], [1], "embedded")) == 2
