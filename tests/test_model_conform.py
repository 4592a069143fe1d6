"""Bit-exact conformance with the official implementation's vectors (../shared/refvectors)."""
import json
import re
import shutil

import numpy as np
import pytest

from model.conform import constant_arrays, load_set, run_conformance, spec_from_meta
from model.paths import REPO
from model.spec import Hyper, build_cnn, build_mlp
from scripts.cli import main

TAGS = ["mlp", "mlp_warm1500", "cnn", "cnnx"]


@pytest.mark.parametrize("tag", TAGS)
def test_every_array_of_every_step_matches(shared_dir, tag):
    reports = run_conformance(shared_dir / "refvectors", tag)
    assert [r.step for r in reports] == ["1", "2", "3", "after"]
    for r in reports:
        assert r.arrays > 8
        assert not r.mismatches, str(r.mismatches[0])


@pytest.mark.parametrize("tag", TAGS)
def test_builders_reproduce_the_reference_construction(shared_dir, tag):
    """build_mlp/build_cnn from the reference config give exactly the network the meta describes."""
    meta = json.loads((shared_dir / "refvectors" / f"{tag}_meta.json").read_text())
    cfg = meta["config"]
    hp = Hyper(cfg["lr_amp_factor"], cfg["fwd_decay_inv"], cfg["subnet_decay_inv"])
    if "architecture" in cfg:
        built = build_cnn((1, 28, 28), cfg["architecture"], cfg["num_fc_hidden"], hp, cfg["pred_decoder_dim"])
    else:
        built = build_mlp((1, 28, 28), cfg["num_fc_hidden"], hp)
    assert built == spec_from_meta(meta, (1, 28, 28), 10)


def test_cli_conform_passes(shared_dir, capsys):
    assert main(["conform", str(shared_dir / "refvectors"), "mlp"]) == 0
    out = capsys.readouterr().out
    assert "mlp step 3: 59 arrays, all match" in out


def test_cli_conform_reports_first_mismatch(tampered_mlp_set, capsys):
    folder = tampered_mlp_set({"wgrad/linear_pred_01": ((3, 7), 1)})
    assert main(["conform", str(folder), "mlp"]) == 1
    out = capsys.readouterr().out
    assert "mlp step 1: 59 arrays, all match" in out
    assert "MISMATCH step 2, array 'wgrad/linear_pred_01' at index (3, 7)" in out


def test_a_step_file_holding_no_array_is_refused(tampered_mlp_set, capsys):
    """What keeps a replay from passing with nothing compared: a step's file without arrays is
    refused when the set is read, before any step is replayed."""
    with np.load(tampered_mlp_set({}) / "mlp_step2.npz") as f:
        names = list(f.files)
    folder = tampered_mlp_set(dict.fromkeys(names))
    assert main(["conform", str(folder), "mlp"]) == 2
    err = capsys.readouterr()
    assert "mlp_step2.npz holds no arrays: nothing to compare" in err.err and "step 1" not in err.out


@pytest.mark.parametrize("dropped", [["wgrad/linear_pred_01"], ["fwd/scaling_00", "out", "y_onehot", "wupd/linear_02"]])
def test_a_set_lacking_arrays_the_model_produces_is_refused(tampered_mlp_set, capsys, dropped):
    """A set missing some of a step's arrays would pass on those it holds: the replay names them
    instead (exit 2), and step 1, which holds them all, still matched."""
    folder = tampered_mlp_set(dict.fromkeys(dropped))
    assert main(["conform", str(folder), "mlp"]) == 2
    cap = capsys.readouterr()
    assert "mlp step 1: 59 arrays, all match" in cap.out and "step 2" not in cap.out
    named = re.search(r"step 2 lacks (\d+) of the 59 arrays the golden model produces \((.*?)(, \.\.\.)?\)",
                      cap.err)
    assert named and int(named[1]) == len(dropped) and set(named[2].split(", ")) <= set(dropped)
    assert len(named[2].split(", ")) == min(3, len(dropped)) and bool(named[3]) == (len(dropped) > 3)


def test_piped_output_closed_early_is_no_error(shared_dir):
    """A reader that stops reading (`nitro conform ... | head -1`) ends the command quietly with
    the SIGPIPE status, not with "nitro: error: Broken pipe"."""
    import os
    import signal
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # the first write fails
    try:
        p = subprocess.run([sys.executable, "-m", "scripts.cli", "conform", str(shared_dir / "refvectors"),
                            "mlp"], stdout=w, stderr=subprocess.PIPE, text=True, cwd=REPO)
    finally:
        os.close(w)
    assert (p.returncode, p.stderr) == (128 + signal.SIGPIPE, "")


def test_constant_arrays_are_named(tampered_mlp_set, capsys):
    """The official mlp set's first scaled outputs hold one value in all three steps: conform says
    so; one element changed in one step and the array varies."""
    vs = load_set(tampered_mlp_set({}), "mlp")
    const = constant_arrays(vs)
    assert "fwd/scaling_00" in const and "out" not in const
    assert all(len({int(v) for ref in vs.refs.values() if n in ref for v in ref[n].ravel()}) == 1 for n in const)
    varied = load_set(tampered_mlp_set({"fwd/scaling_00": ((0, 0), 1)}), "mlp")
    assert constant_arrays(varied) == [n for n in const if n != "fwd/scaling_00"]
    assert main(["conform", str(tampered_mlp_set({})), "mlp"]) == 0
    assert f"mlp: {len(const)} of them hold one value throughout" in capsys.readouterr().out


def test_cli_conform_missing_or_corrupt_vectors(shared_dir, tmp_path, capsys):
    assert main(["conform", str(tmp_path / "absent"), "mlp"]) == 2
    assert "absent not found (no such folder)" in capsys.readouterr().err
    assert main(["conform", str(tmp_path), "mlp"]) == 2
    assert "no vector set 'mlp'" in capsys.readouterr().err
    shutil.copy(shared_dir / "refvectors" / "mlp_meta.json", tmp_path)
    (tmp_path / "mlp_data.npz").write_bytes(b"not a zip")
    assert main(["conform", str(tmp_path), "mlp"]) == 2
    assert "cannot read vector file" in capsys.readouterr().err
