"""`nitro conform --engine`: reference vector sets replayed on the Verilated engine, every array it
produces compared bit for bit (issue 13, acceptance 2; issue 14, acceptance 1)."""
import pytest

from scripts.cli import main


@pytest.mark.parametrize("tag", ["mlp", "mlp_warm1500"])
def test_official_mlp_sets_on_the_engine(shared_dir, tag, capsys):
    assert main(["conform", "--engine", str(shared_dir / "refvectors"), tag]) == 0
    out = capsys.readouterr().out
    # per step: 5 weights + 2 transposed copies + 12 stored forward / loss / delta tensors
    for k in (1, 2, 3):
        assert f"{tag} step {k}: 19 arrays, all match" in out
    # after: 5 weights + 2 copies + pred_out, pred_class and 2 local predictions
    assert f"{tag} step after: 11 arrays, all match" in out
    assert f"{tag}: every array the engine produces matches bit for bit (68 arrays, 4 steps: " in out


def test_any_mlp_set_the_meta_describes(tmp_path, capsys):
    """A set exported by the golden model for another MLP (odd sizes, batch 12) replays too."""
    out = _export_and_replay(tmp_path, capsys, "odd", 'kind = "mlp"\nhidden = [37, 19, 11]\n'
                             '[train]\nbatch_size = 12\n', 30)
    assert "odd step 2: 27 arrays, all match" in out and "odd step after: 15 arrays" in out


def _export_and_replay(tmp_path, capsys, tag: str, network: str, test_images: int) -> str:
    """`nitro vectors` of an embedded-data network (`network`: its [network] keys onwards), 2
    steps from its initial weights x64, then `nitro conform --engine` on the set; its standard
    output. From the initial weights themselves several scaled outputs are one constant, which a
    wrong forward would match; x64 every array varies but the untrained network's predicted
    class (the host's argmax of pred_out, which varies)."""
    from model.conform import constant_arrays, load_set
    from model.train import save_start_checkpoint

    cfg = tmp_path / f"{tag}.toml"
    cfg.write_text(f'name = "{tag}"\n[data]\ndataset = "embedded"\n[network]\n{network}')
    start = save_start_checkpoint(cfg, tmp_path / "start.npz", scale=64)
    assert main(["vectors", "--config", str(cfg), "--checkpoint", str(start), "--out", str(tmp_path / "v"),
                 "--tag", tag, "--steps", "2", "--test-images", str(test_images)]) == 0
    assert constant_arrays(load_set(tmp_path / "v", tag)) == ["pred_class"]
    assert main(["conform", "--engine", str(tmp_path / "v"), tag]) == 0
    return capsys.readouterr().out


def test_any_cnn_set_the_meta_describes(tmp_path, capsys):
    """A CNN set exported by the golden model: conv8 - pool - conv16 with a (4, 4) and a padded
    (4, 2) learning pool, an FC block trained twice per step, batch 8: what the official `cnn`
    and `cnnx` sets exercise, at a size for CI (those two replay in about 3 minutes each:
    `scripts/bench_engine.py conform`, benchmarks/engine/conform_*.json)."""
    net = ('kind = "cnn"\narchitecture = [["Conv2d", 8, 3, 1, 1], ["MaxPool2d", 2, 2], '
           '["Conv2d", 16, 3, 1, 1]]\nhidden = [24]\npred_decoder_dim = 512\n'
           '[train]\nbatch_size = 8\n')
    out = _export_and_replay(tmp_path, capsys, "c", net, 16)
    assert "c step 2: 27 arrays, all match" in out and "c step after: 15 arrays, all match" in out


def _trained_cnn_set(tmp_path, channels: int, p) -> tuple:
    """conv{channels} - pool - conv16 with learning pools (4, 4) and (4, 2) with 2 rows of
    padding, an FC block, batch 16, trained for an epoch on the golden model, then a 2-step set
    exported from those weights (with the initial ones the second block's scaled outputs are all
    zero, and a wrong forward would go unseen). Returns (its program on engine `p`, a function
    replaying the set on that engine and asserting that every array matches)."""
    from hw.engine.compiler import compile_network
    from hw.engine.tiling import lower
    from model.config import load_config
    from model.conform import constant_arrays, load_set
    from sim.engine.conform import run_engine_conformance

    cfg = tmp_path / "w.toml"
    cfg.write_text('name = "w"\n[data]\ndataset = "embedded"\n[network]\nkind = "cnn"\n'
                   f'architecture = [["Conv2d", {channels}, 3, 1, 1], ["MaxPool2d", 2, 2], '
                   '["Conv2d", 16, 3, 1, 1]]\nhidden = [32]\npred_decoder_dim = 512\n'
                   '[train]\nbatch_size = 16\n')
    ep = lower(compile_network(load_config(cfg).build_spec((1, 28, 28)), 16, p))

    def replay() -> None:
        assert main(["train", "--config", str(cfg), "--epochs", "1", "--out", str(tmp_path / "run"),
                     "--no-progress"]) == 0
        assert main(["vectors", "--config", str(cfg), "--checkpoint",
                     str(tmp_path / "run" / "checkpoint.npz"), "--out", str(tmp_path / "v"),
                     "--tag", "w", "--steps", "2", "--test-images", "16"]) == 0
        # (the predicted class is the host's argmax of pred_out, compared and varying itself)
        assert set(constant_arrays(load_set(tmp_path / "v", "w"))) <= {"pred_class"}
        reports = run_engine_conformance(tmp_path / "v", "w", params=p, work_dir=tmp_path / "sim")
        assert [(r.step, r.arrays, r.mismatches) for r in reports] == [
            ("1", 27, []), ("2", 27, []), ("after", 15, [])]
    return ep, replay


def test_trained_cnn_set_on_an_engine_cut_like_vgg8b(tmp_path):
    """The cuts VGG8B's forward and deltas need, forced on a small CNN by an engine with a
    16-word WMEM and a 128-word WTMEM: the second convolution's forward in chunks of K of one
    window tap each (8 input channels; the taps' padding rows masked), their partial sums in
    pmem; the delta GEMM through the second learning pool in segments of whole pooling windows
    of one image row, its B tiles the segment's pooled pixels. Every array matches."""
    from hw.engine.params import EngineParams

    ep, replay = _trained_cnn_set(tmp_path, 8, EngineParams(wmem_depth=16, wtmem_depth=128))
    fwd = [t.gemm for t in ep.tiles if t.parent.name == "conv_block_02/fwd"]
    assert {g.conv.taps for g in fwd} == {(ky, ky + 1, kx, kx + 1) for ky in range(3)
                                          for kx in range(3)}
    assert all(g.p_in == (g.conv.taps != (0, 1, 0, 1)) for g in fwd)
    segs = {t.gemm.unpool.seg for t in ep.tiles if t.parent.name == "conv_block_02/delta"}
    assert 0 not in segs and len(segs) == 2
    replay()


def test_trained_cnn_set_with_weight_gradients_of_some_channels(tmp_path):
    """A 16 -> 16 convolution's weight gradient whose K does not fit, on an engine whose PMEM
    holds one C tile: each MAC-array tile's chunks load only its own input channels'
    activations and output channels' deltas (strided blocks of both operands, as VGG8B's
    512-channel layers need). Every array matches."""
    from hw.engine.params import EngineParams

    ep, replay = _trained_cnn_set(tmp_path, 16, EngineParams(pmem_depth=64))
    wg = [t.gemm for t in ep.tiles if t.parent.name == "conv_block_02/update_fwd"]
    assert {(g.conv.a_words, g.conv.a_word, g.conv.b_word) for g in wg} == {(1, 0, 0)}
    assert any(g.k_hold for g in wg)
    replay()


def test_engine_conform_reports_first_mismatch(tampered_mlp_set, capsys):
    """A set with one activation and one weight update changed: the engine's replay names the
    first differing array of the step and exits 1."""
    folder = tampered_mlp_set({"fwd/non_linearity_01": ((3, 7), 1),
                               "wupd/linear_02": ((1, 2), 1)})  # the weights after step 2 change
    assert main(["conform", "--engine", str(folder), "mlp"]) == 1
    out = capsys.readouterr().out
    assert "mlp step 1: 19 arrays, all match" in out
    assert "mlp step 2: 19 arrays, 2 differ" in out
    assert "MISMATCH step 2, array 'fwd/non_linearity_01' at index (3, 7)" in out


def test_engine_conform_refuses_a_set_lacking_an_engine_array(tampered_mlp_set, capsys):
    """An array the engine produces but the set lacks would go unchecked: refused before building."""
    folder = tampered_mlp_set({"bwd_out/non_linearity_01": None})
    assert main(["conform", "--engine", str(folder), "mlp"]) == 2
    err = capsys.readouterr().err
    assert "'mlp' step 2 lacks 1 of the" in err and "arrays the engine produces (bwd_out/non_linearity_01)" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("bad", ["float64", "shape (3, 3)", "shape (1,)"])
def test_a_malformed_update_array_is_named_before_the_build(tampered_mlp_set, capsys, monkeypatch, bad):
    """The replay derives each step's weights from the set's wupd/* arrays: one of another dtype
    or shape is named before the build, not cast or broadcast into a difference the engine
    would be blamed for, or a failure inside the simulation."""
    import numpy as np

    import sim.engine.build

    monkeypatch.setattr(sim.engine.build, "build_engine", lambda *a, **k: pytest.fail("built"))
    malformed = {"float64": lambda w: w.astype(np.float64), "shape (3, 3)": lambda w: w[:3, :3],
                 "shape (1,)": lambda w: w[0, :1]}[bad]
    folder = tampered_mlp_set({"wupd/linear_02": malformed})
    assert main(["conform", "--engine", str(folder), "mlp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wupd/linear_02 of step 2 is" in err[0] and "the update of linear_02 is int32(10, 50)" in err[0]


def test_a_set_whose_weights_outgrow_the_engine_is_refused_before_the_build(tampered_mlp_set, capsys,
                                                                             monkeypatch):
    """The engine holds weights past its storage width wrapped: a set whose weights leave it
    during the replay (here an update that takes one weight past int16 in step 2) is refused
    before the build, naming the step, the layer and the width, instead of replayed into a
    mismatch the engine would be blamed for."""
    import sim.engine.build

    monkeypatch.setattr(sim.engine.build, "build_engine", lambda *a, **k: pytest.fail("built"))
    folder = tampered_mlp_set({"wupd/linear_02": ((1, 2), -40_000)})
    assert main(["conform", "--engine", str(folder), "mlp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("at the end of step 2, the set's weights of linear_02 exceed the "
                              "engine's 16-bit weight storage") in err[0], err
