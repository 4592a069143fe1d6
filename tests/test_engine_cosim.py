"""The streaming NITRO-D engine on Verilator, on the AXI4 memory model and driven over AXI4-Lite:
whole MLP training steps, bit-identical to the golden model after every step (issue 13, acceptance
1 and 3). One generated engine (cached by content hash) serves every network."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from hw.engine.memory_model import MemoryModel
from model.paths import REPO
from sim.engine.build import build_engine
from sim.engine.cosim import run_cosim


@pytest.fixture(scope="session")
def engine_build():
    return build_engine()


def _config(tmp_path: Path, hidden: list[int], batch: int) -> Path:
    cfg = tmp_path / "engine_test.toml"
    cfg.write_text(f'name = "engine_test"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                   f'hidden = {hidden}\n[train]\nbatch_size = {batch}\n')
    return cfg


def _scaled_start(tmp_path: Path, config: Path, data_dir: str | None, scale: int = 64) -> Path:
    """A checkpoint of `config` at epoch 0 holding its initial weights x`scale`. At their own
    scale most scaled outputs of the initial weights round to 0, where a wrong forward would go
    unseen; x64, every tensor the cosim compares varies from the first step."""
    from model.train import save_start_checkpoint

    return save_start_checkpoint(config, tmp_path / "start.npz", data_dir, scale)


def _cosim(tmp_path, config, steps, fault=None, batch=None, scale=64, **kw):
    """run_cosim from the weights of `_scaled_start`; a run that passed must have compared no
    tensor that stayed one constant."""
    out, data_dir = tmp_path / "result.json", kw.pop("data_dir", None)
    rc = run_cosim(config, steps, data_dir, out, False, fault=fault, batch=batch, work_dir=tmp_path / "sim",
                   checkpoint=_scaled_start(tmp_path, config, data_dir, scale), **kw)
    res = json.loads(out.read_text())
    assert rc != 0 or res["constant_tensors"] == [], res["constant_tensors"]
    return rc, res


def test_engine_mnist_mlp_batch64(engine_build, tmp_path):
    """The paper's MNIST MLP 784-100-50-10 at batch 64: 3 steps, every weight and output
    bit-identical; the RTL counters account for every cycle of the step."""
    rc, res = _cosim(tmp_path, REPO / "configs" / "embedded_mlp.toml", 3)
    assert rc == 0, res.get("message")
    assert res["ok"] and res["steps_run"] == 3 and res["network"] == "784-100-50-10"
    # each step after the first found its first run loaded during the step before; with an odd
    # number of runs the set holding it alternates from step to step
    assert res["warm_list"] == [False, True, True] and res["runs"] % 2
    u = res["units"]
    # the sequencer's states account for the step (the core's run and the stores overlap them)
    parts = u["fetch_cycles"] + u["load_cycles"] + u["wait_cycles"]
    assert 0.98 * u["cycles"] <= parts <= u["cycles"]
    assert 0.1 * u["cycles"] <= u["store_cycles"] <= u["cycles"]  # stores ran, within the step
    assert res["mac_busy_frac"] >= 0.95  # while the array runs, it is busy
    # the core's per-phase counters and the register file's run counter count the same cycles
    assert u["run_cycles"] == pytest.approx(sum(v["cycles"] for v in res["phases"].values()), abs=1e-6)
    assert res["mac_util"] >= 0.75  # double buffering: transfers overlap the runs
    assert abs(res["predicted"]["error"]) < 0.05  # the performance model (hw.engine.perf)


def test_engine_fmnist_mlp_on_the_same_engine(engine_build, tmp_path, shared_dir):
    """configs/mlp_fmnist.toml (784-200-100-50-10) on the same generated engine as the MNIST MLP."""
    rc, res = _cosim(tmp_path, REPO / "configs" / "mlp_fmnist.toml", 2, data_dir=str(shared_dir / "datasets"))
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 2 and res["network"] == "784-200-100-50-10"


def test_engine_epoch_boundary_and_lr_change(engine_build, tmp_path):
    """Steps across two epoch boundaries with an lr_inv change at each (x3: 512 -> 1536 -> 4608):
    the reshuffled batches and the new IntegerSGD constants are bit-identical too."""
    cfg = tmp_path / "lr.toml"
    cfg.write_text('name = "lr"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                   'hidden = [24]\n[train]\nbatch_size = 16\n[schedule]\nstart = 0\npatience = 1\n'
                   'min_delta = 1.0\n')
    rc, res = _cosim(tmp_path, cfg, 7, train_images=48)
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 7 and res["lr_inv"] == 4608
    # every step starts warm, its first run loaded during the step before (across the epoch
    # boundaries too), but the first and those whose lr_inv changed the command words
    assert res["warm_list"] == [False, True, True, False, True, True, False]


def test_engine_run_in_segments(engine_build, tmp_path):
    """--start-step: the golden model trains steps 0..4 alone (two of them after an epoch
    boundary and an lr_inv change), the engine takes its weights at step 5 and runs steps 5 and
    6 (across the next boundary), bit-identical; a fault in the engine's first step is caught
    there, one outside its steps is refused."""
    from model.numerics import NitroError

    cfg = tmp_path / "lr.toml"
    cfg.write_text('name = "lr"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                   'hidden = [24]\n[train]\nbatch_size = 16\n[schedule]\nstart = 0\npatience = 1\n'
                   'min_delta = 1.0\n')
    rc, res = _cosim(tmp_path, cfg, 2, train_images=48, start_step=5)
    assert rc == 0, res.get("message")
    assert (res["start_step"], res["steps_run"], res["lr_inv"]) == (5, 2, 4608)
    rc, res = _cosim(tmp_path, cfg, 2, fault="5:linear_encoder_00:0,0:1", train_images=48,
                     start_step=5)
    mm = res["mismatch"]
    assert rc == 1 and res["fault_injected"] and (mm["step"], mm["layer"], mm["index"], mm["count"]) == (
        5, "linear_encoder_00", [0, 0], 1)  # the flipped bit alone
    with pytest.raises(NitroError, match="step 4 never runs on the engine"):
        _cosim(tmp_path, cfg, 2, fault="4:linear_encoder_00:0,0:1", train_images=48, start_step=5)


def test_engine_odd_shapes(engine_build, tmp_path):
    """Batch and hidden sizes that are not multiples of the array side (masked edges)."""
    rc, res = _cosim(tmp_path, _config(tmp_path, [20], 12), 3)
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 3 and res["network"] == "784-20-10"


def test_engine_k_longer_than_the_scratchpads(engine_build, tmp_path):
    """784-1100-8-10 at batch 8: the weights after the 1100-wide layer (1100 words per panel)
    and its learning layer exceed wmem, so those GEMMs run in K chunks across runs, both ways:
    the forward (one C tile) accumulating in the MAC array, the learning layer (two C tiles)
    with its partial sums in pmem (and so does the first forward, whose loads nothing overlaps).
    Bit-identical to the golden model, on the same engine."""
    from hw.engine.compiler import compile_network
    from hw.engine.tiling import lower
    from model.config import load_config

    config = _config(tmp_path, [1100, 8], 8)
    ep = lower(compile_network(load_config(config).build_spec((1, 28, 28)), 8))
    held = {t.parent.name for t in ep.tiles if t.gemm.k_hold}
    partial = {t.parent.name for t in ep.tiles if t.gemm.p_out}
    assert held == {"linear_block_01/fwd"} and partial == {"linear_block_00/fwd", "linear_block_00/learn"}
    rc, res = _cosim(tmp_path, config, 2)
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 2 and res["k_chunks"] >= 4
    assert abs(res["predicted"]["error"]) < 0.05


def test_engine_128_bit_bus(tmp_path):
    """The engine generated with a 128-bit AXI4 port (a build of its own): the MNIST MLP's steps
    and its inference on 64 test images bit-identical to the golden model."""
    from hw.engine.params import EngineParams

    rc, res = _cosim(tmp_path, REPO / "configs" / "embedded_mlp.toml", 2, test_images=64,
                     params=EngineParams(bus_bits=128))
    assert rc == 0, res.get("message")
    assert res["ok"] and res["params"]["bus_bits"] == 128
    assert res["test"]["images"] == 64 and res["test"]["identical"]
    assert res["mac_util"] >= 0.85 and abs(res["predicted"]["error"]) < 0.05


def test_engine_results_identical_under_memory_models(engine_build, tmp_path):
    """Ideal memory, high latency, random stalls with two seeds, and read gaps with stalls:
    bit-identical results (each run is checked against the golden model), the cycle counts show
    the settings took effect, and the performance model predicts each within 5 % (with gaps and
    stalls it once charged a stall to every gap cycle too: 50 % over; found by the random
    regression)."""
    cycles, errors = {}, {}
    for name, mm in {"ideal": MemoryModel(), "latency 120": MemoryModel(latency=120),
                     "stalls seed 1": MemoryModel(latency=8, stall_pct=30, seed=1),
                     "stalls seed 2": MemoryModel(latency=8, stall_pct=30, seed=2),
                     "gap and stalls": MemoryModel(latency=10, gap=3, stall_pct=45, seed=3)}.items():
        rc, res = _cosim(tmp_path / name.replace(" ", "_"), _config(tmp_path, [20], 16), 2, memory=mm)
        assert rc == 0, (name, res.get("message"))
        cycles[name] = res["cycles_per_step_list"]
        errors[name] = res["predicted"]["error"]
    assert cycles["ideal"][0] < min(c[0] for k, c in cycles.items() if k != "ideal")
    assert cycles["stalls seed 1"] != cycles["stalls seed 2"]
    assert all(abs(e) < 0.05 for e in errors.values()), errors


def test_engine_waves(tmp_path):
    """--waves: a tracing build of the same engine writes an FST of the run (header block first)."""
    rc, res = _cosim(tmp_path, _config(tmp_path, [8], 8), 1, waves=True)
    assert rc == 0, res.get("message")
    fst = Path(res["waves"])
    assert fst.stat().st_size > 100_000 and fst.read_bytes()[:1] == b"\x00"  # FST_BL_HDR


def test_engine_fault_is_caught(engine_build, tmp_path):
    """One flipped bit of a weight the engine wrote at step 1: the check names step, layer and
    the first differing element, and the run exits non-zero."""
    rc, res = _cosim(tmp_path, _config(tmp_path, [20], 12), 4, fault="1:linear_encoder_00:3,17:4")
    assert rc == 1
    mm = res["mismatch"]
    assert res["steps_run"] == 2  # stopped at the first difference
    assert (mm["step"], mm["layer"], mm["index"], mm["count"]) == (1, "linear_encoder_00", [3, 17], 1)
    assert abs(mm["engine"] - mm["golden"]) == 16
    assert "step 1: layer linear_encoder_00" in res["message"] and "(3, 17)" in res["message"]



def test_a_passed_run_leaves_no_run_folder(engine_build, tmp_path):
    """Each run's test folder and log in the build folder carry its process id: a passed run
    removes them, a failed one keeps them for its debugging."""
    cfg = _config(tmp_path, [8], 8)
    start = _scaled_start(tmp_path, cfg, None)

    def left() -> list[Path]:
        return sorted(engine_build.build_dir.glob(f"cosim-engine_test-{os.getpid()}*"))

    assert run_cosim(cfg, 1, None, None, False, checkpoint=start) == 0 and left() == []
    assert run_cosim(cfg, 2, None, None, False, checkpoint=start, fault="1:linear_encoder_00:0,0:1") == 1
    assert [p.suffix for p in left()] == ["", ".log"]
    for p in left():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def test_weights_outgrowing_the_engine_stop_the_run(engine_build, tmp_path):
    """A run whose golden weights leave the engine's int16 storage mid-run (found by the random
    regression: x64 initial weights at lr_inv 128) stops at that step naming the layer and the
    width, not as a mismatch the engine's wrapped weights would show; the steps before are
    compared."""
    cfg = tmp_path / "fast.toml"
    cfg.write_text('name = "fast"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                   'hidden = [63, 76]\n[train]\nseed = 148490193\nbatch_size = 56\nlr_inv = 128\n'
                   'fwd_decay_inv = 30000\nsubnet_decay_inv = 300\n')
    rc, res = _cosim(tmp_path, cfg, 3)
    assert rc == 1 and res["outgrown"] == 2 and res["steps_run"] == 2 and res["mismatch"] is None
    assert res["message"].startswith("step 2: the golden model's weights of linear_encoder_01 "
                                     "exceed the engine's 16-bit weight storage"), res["message"]


def test_engine_with_24_bit_weights_trains_weights_past_int16(tmp_path):
    """`--weight-bits 24` (CNN weights outgrow int16 in training): from forward weights past
    int16's range, which an MLP's engine refuses, the wider engine's steps are bit-identical.
    (The learning layers keep their own weights: their deltas are what the int24 DMEM holds.)"""
    from hw.engine.params import EngineChoice
    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.numerics import NitroError
    from model.train import start_checkpoint

    cfg = _config(tmp_path, [12], 8)
    init = start_checkpoint(load_config(cfg)).params
    wide = {k: w * 4096 if k.startswith("linear_encoder") else w for k, w in init.items()}
    assert max(int(abs(w).max()) for w in wide.values()) > 1 << 15
    ck = tmp_path / "wide.npz"
    save_checkpoint(ck, start_checkpoint(load_config(cfg), params=wide))
    with pytest.raises(NitroError, match="16-bit weight storage"):
        run_cosim(cfg, 2, None, None, False, checkpoint=ck)
    out = tmp_path / "r.json"
    assert run_cosim(cfg, 3, None, out, False, checkpoint=ck, work_dir=tmp_path / "sim",
                     params=EngineChoice(weight_bits=24)) == 0
    res = json.loads(out.read_text())
    assert res["steps_run"] == 3 and res["constant_tensors"] == [], res["constant_tensors"]

def test_engine_build_cache_holds_no_checkout_path(engine_build):
    """The source-hash link names its build folder relative to the build root, so a copied
    checkout uses its own build folder, never the original's."""
    from sim.engine.build import source_link

    assert source_link(engine_build.params).read_text() == engine_build.build_dir.name


def test_engine_conv_blocks(engine_build, tmp_path):
    """configs/engine_cnn_mnist.toml: two 3x3 convolution blocks (MNIST, 1 -> 8 channels at
    28x28, 2x2 max-pool, 8 -> 16 at 14x14; no learning-layer pools: the learning layers read all
    6272 / 3136 features) and an FC block trained twice per step (the reference's CNN quirk), on
    the same engine: im2col by address generation with the padding masked, the first layer's
    single channel tap-packed (its weight gradient two GEMMs), the weight gradients in chunks of
    whole images, the window positions of each chunk in one run (each its own pmem region),
    the pool in both layouts. Every weight (conv included) and output bit-identical after each of 2 steps;
    inference predictions identical."""
    from hw.engine.compiler import compile_network
    from hw.engine.tiling import lower
    from model.config import load_config

    config = REPO / "configs" / "engine_cnn_mnist.toml"
    ep = lower(compile_network(load_config(config).build_spec((1, 28, 28)), 16))
    for name, wins in (("conv_block_00/update_fwd", 2), ("conv_block_02/update_fwd", 9)):
        runs = [[t.gemm for t in r.tiles] for r in ep.runs if r.tiles[0].parent.name == name]
        assert runs and all(len(r) == wins and len({g.p_base for g in r}) == wins for r in runs)
        assert any(g.p_out for r in runs for g in r) and any(g.p_in for r in runs for g in r)
    rc, res = _cosim(tmp_path, REPO / "configs" / "engine_cnn_mnist.toml", 2, batch=16,
                     test_images=16)
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 2 and res["network"] == "784-conv8-pool2-conv16-32-10"
    assert res["test"]["images"] == 16 and res["test"]["identical"]
    assert abs(res["predicted"]["error"]) < 0.05


def test_engine_conv_tiles_on_small_scratchpads(tmp_path):
    """The CNN with learning-layer pools ((4, 4), and (4, 2) with 2 rows of padding: its
    learning layers read at most 512 features) on an engine generated with a 128-word WMEM, a
    512-word DMEM, a 256-word SMEM and a PMEM of one C tile (every chunk of K on one MAC-array
    tile, its sums in the array), which forces every cut: the second convolution's forward
    in tiles of 8 of its 16 output channels (strided outputs), the first one's weight gradients
    in chunks of 14 image rows (with the rows their windows read), the second one's from one
    channel word of its deltas per MAC-array tile, the second learning pool one channel word at
    a time. Bit-identical after each of 2 steps."""
    from hw.engine.compiler import compile_network
    from hw.engine.params import SEL_DMEM, EngineParams
    from hw.engine.tiling import lower
    from model.config import load_config

    p = EngineParams(wmem_depth=128, dmem_depth=512, smem_depth=256, pmem_depth=64)
    config = tmp_path / "lpool.toml"
    config.write_text((REPO / "configs" / "engine_cnn_mnist.toml").read_text()
                      .replace("pred_decoder_dim = 8192", "pred_decoder_dim = 512"))
    spec = load_config(config).build_spec((1, 28, 28))
    assert [b.pool.kernel for b in spec.blocks.values() if b.pool] == [(4, 4), (4, 2)]
    ep = lower(compile_network(spec, 16, p))
    tiles = lambda name: [t.gemm for t in ep.tiles if t.parent.name == name]  # noqa: E731
    assert {g.n for g in tiles("conv_block_02/fwd")} == {8}
    assert {g.k for g in tiles("conv_block_00/update_fwd")} == {14 * 28}
    assert {g.pool.words for g in tiles("conv_block_02/pool") if g.a.layout == "row"} == {1}
    # a chunked weight gradient's MAC-array tile loads only its own output channels' deltas
    wg = [t for t in ep.tiles if t.parent.name == "conv_block_02/update_fwd"]
    assert {x.row_words for t in wg for x in t.loads if x.sel == SEL_DMEM} == {1}
    rc, res = _cosim(tmp_path, config, 2, batch=16, params=p)
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 2


def test_engine_learning_pool_leaving_rows_uncovered(tmp_path):
    """A learning pool whose windows leave image rows uncovered (the reference drops them:
    floor): pred_decoder_dim 128 gives the second block (14x14, 16 channels) an (8, 4) pool with
    4 rows of padding, whose two windows cover rows 0..11 of 14. Its delta GEMM spans the covered
    rows only (tiles of whole rows of them), rows 12 and 13 keep the zero delta the host writes;
    bit-identical after each of 2 steps."""
    from hw.engine.compiler import compile_network
    from model.config import load_config

    config = tmp_path / "uncovered.toml"
    config.write_text((REPO / "configs" / "engine_cnn_mnist.toml").read_text()
                      .replace("pred_decoder_dim = 8192", "pred_decoder_dim = 128"))
    prog = compile_network(load_config(config).build_spec((1, 28, 28)), 16)
    assert [t.name for t in prog.cleared] == ["conv_block_02.delta"]
    assert [g.n for g in prog.gemms if g.name == "conv_block_02/delta"] == [12 * 14 * 16]
    rc, res = _cosim(tmp_path, config, 2, batch=16)
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 2


def test_weights_no_step_changed_could_not_show_an_error():
    """A weight tensor counts as checked only in a step that changed it (an engine that never
    wrote an update back would match); an output, when its golden values are not one constant."""
    from sim.engine.cosim import _could_differ

    varied, flat = np.arange(4), np.zeros(4)
    checks = [("l1.weight", "l1", varied, varied), ("l1.weight (engine's transposed copy)", "l1", varied, varied),
              ("l2.weight", "l2", varied, varied), ("s1 (learning-layer output)", "l2", varied, varied),
              ("a1 (block activation)", "l1", flat, flat)]
    assert _could_differ(checks, {"l1"}) == {"l1.weight", "l1.weight (engine's transposed copy)",
                                             "s1 (learning-layer output)"}


def test_engine_cnn_on_three_channel_images_with_dropout(engine_build, tmp_path):
    """CIFAR-shaped inputs (3x32x32: random images in CIFAR-10's file format, CIFAR-10 itself not
    being here): the first convolution reads three channels padded to a whole word of its row
    layout (not tap-packed as a one-channel image is), its weight gradient's K is 9 taps of that
    word; 32x32 pools to 16x16 and 8x8. Dropout 0.15 where VGG8B CIFAR-10 has it: before the
    last max-pool and after the FC block, the masks the golden model draws written by the host
    each step. Every weight, output and dropout output bit-identical after each of 2 steps;
    inference (dropout the identity) predictions identical."""
    from hw.engine.compiler import compile_network
    from model.config import load_config
    from model.datasets import write_random_cifar10

    write_random_cifar10(tmp_path / "cifar10", 64)  # a test set of one evaluation batch
    config = tmp_path / "cifar_cnn.toml"
    config.write_text('name = "cifar_cnn"\n[data]\ndataset = "cifar10"\n[network]\nkind = "cnn"\n'
                      'architecture = [["Conv2d", 8, 3, 1, 1], ["MaxPool2d", 2, 2], '
                      '["Conv2d", 16, 3, 1, 1], ["MaxPool2d", 2, 2]]\nhidden = [16]\n'
                      'pred_decoder_dim = 1024\ndropout = 0.15\n[train]\nbatch_size = 16\n')
    x = compile_network(load_config(config).build_spec((3, 32, 32)), 16).tensors["x.r"]
    assert (x.image, x.taps) == ((32, 32, 8), False)
    rc, res = _cosim(tmp_path, config, 2, batch=16, test_images=16, data_dir=str(tmp_path / "cifar10"))
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 2
    assert res["network"] == "3072-conv8-pool2-conv16-drop0.15-pool2-16-drop0.15-10"
    assert res["test"]["images"] == 16 and res["test"]["identical"]


def test_engine_mlp_with_dropout_across_epochs(engine_build, tmp_path):
    """An MLP with dropout 0.25 (the highest rate whose outputs stay int8) after each block,
    over an epoch boundary: each step's masks are drawn right after its batch, as the training
    loop's forward draws them, and staged with the next batch so that steps still start warm.
    Bit-identical after each of 4 steps, inference identical; a rate beyond int8 is refused."""
    cfg = tmp_path / "drop.toml"
    cfg.write_text('name = "drop"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                   'hidden = [40, 24]\ndropout = 0.25\n[train]\nbatch_size = 16\n')
    rc, res = _cosim(tmp_path, cfg, 4, train_images=32, test_images=64)
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 4 and res["network"] == "784-40-drop0.25-24-drop0.25-10"
    assert sum(res["warm_list"]) == 3 and res["test"]["identical"]
    assert {"dropout_00 (dropout output)", "dropout_01 (dropout output)"} <= set(res["compared"])


def test_engine_convolution_in_chunks_of_some_channels_of_a_tap(engine_build, tmp_path):
    """A 128 -> 8 convolution of 32-pixel rows (VGG8B CIFAR-10's second layer reads 128
    channels of 32-pixel rows too): one window tap of one source row of 8 images is 32 x 128 =
    4096 words of AMEM_C, which with the output row's 256 the engine does not hold, so its
    forward runs in chunks of K of 64 input channels of one tap (strided blocks of the source
    rows, the partial sums in PMEM). Bit-identical after a step from the initial weights x256
    (x64, the output layer's outputs stay one constant in a step)."""
    from hw.engine.compiler import compile_network
    from hw.engine.params import SEL_AMEM_C
    from hw.engine.tiling import lower
    from model.config import load_config
    from model.datasets import write_random_cifar10

    write_random_cifar10(tmp_path / "cifar10", 64)  # a test set of one evaluation batch
    config = tmp_path / "wide.toml"
    config.write_text('name = "wide"\n[data]\ndataset = "cifar10"\n[network]\nkind = "cnn"\n'
                      'architecture = [["Conv2d", 128, 3, 1, 1], ["Conv2d", 8, 3, 1, 1]]\n'
                      'hidden = []\npred_decoder_dim = 512\n[train]\nbatch_size = 8\n')
    ep = lower(compile_network(load_config(config).build_spec((3, 32, 32)), 8))
    fwd = [t for t in ep.tiles if t.parent.name == "conv_block_01/fwd"]
    assert {(t.gemm.k, t.gemm.conv.a_words) for t in fwd} == {(64, 64)}
    assert {(x.rows, x.row_words) for t in fwd for x in t.loads if x.sel == SEL_AMEM_C} == {(32, 64)}
    rc, res = _cosim(tmp_path, config, 1, scale=256, data_dir=str(tmp_path / "cifar10"))
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 1 and res["network"] == "3072-conv128-conv8-10"
