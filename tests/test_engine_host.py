"""Engine host side without simulation: compilation, memory map, packing, and clear errors on bad
input before any simulation starts (issue #4, acceptance 5)."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hw.engine.params import (
    OP_END, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, SEL_AMEM_C, EngineParams,
)
from model.config import load_config
from model.numerics import NitroError
from model.spec import Hyper, build_mlp
from hw.engine import compiler as C
from sim.engine.cosim import parse_fault, prepare_cosim, run_cosim

REPO = Path(__file__).resolve().parents[1]


def mnist_spec(hidden=(100, 50), **kw):
    return build_mlp((1, 28, 28), list(hidden), Hyper(), **kw)


def test_mnist_mlp_fits_default_engine():
    prog = C.compile_network(mnist_spec(), 64)
    ops = [c["op"] for c in prog.commands]
    # forward x2, output fwd + update, 4 commands per block, END
    assert ops == [OP_SCALE_RELU, OP_SCALE_RELU, OP_SCALE_LOSS, OP_SGD] + \
        [OP_SCALE_LOSS, OP_RELU_BWD, OP_SGD, OP_SGD] * 2 + [OP_END]
    p = prog.params
    for sel, used in prog.usage.items():
        assert used <= p.depth(sel)
    # useful MACs of one step: forward, learning, delta and gradient GEMMs of 784-100-50-10 at B=64
    assert sum(prog.macs.values()) == 64 * (2 * (784 * 100 + 100 * 50) + 5 * 50 * 10 + 3 * 100 * 10)


def test_engine_params_for_sizes_memories():
    p = C.engine_params_for(mnist_spec(), 64)
    assert p == EngineParams()  # the default engine is exactly the MNIST MLP at batch 64


@pytest.mark.parametrize("layout, rows, feats", [("col", 12, 20), ("row", 12, 20), ("wT", 20, 10),
                                                 ("w", 10, 100), ("col", 64, 784)])
def test_pack_unpack_roundtrip(layout, rows, feats):
    t = C.Tensor("t", SEL_AMEM_C, layout, rows, feats, 5, 8)
    mat = np.random.default_rng(1).integers(-128, 128, (rows, feats))
    lanes = C.pack_tensor(t, mat)
    assert lanes.shape == (t.words, 8)
    assert np.array_equal(C.unpack_tensor(t, lanes), mat)


def test_lane_bytes_roundtrip():
    from sim.engine.host import bytes_to_lanes, lanes_to_bytes

    rng = np.random.default_rng(2)
    for bits in (8, 16, 24):
        lanes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (50, 8))
        by = lanes_to_bytes(lanes, bits, 58)
        assert by.shape == (50, 58) and by.max() < 256
        assert np.array_equal(bytes_to_lanes(by, bits, 8), lanes)


def test_command_packing_fits_layout():
    """Every hardware field of every command lands at its layout offset (unpacked back exactly)."""
    from hw.engine.params import ADDR_W, command_layout

    prog = C.compile_network(mnist_spec(), 64)
    layout = command_layout(prog.params)
    for c in prog.commands:
        c2 = dict(c, phase=prog.phases.index(c["phase"]))
        word = C.pack_command(prog, c2)
        assert word < 1 << layout.size
        for name, f in layout:
            got = (word >> f.offset) & ((1 << f.width) - 1)
            want = c2.get(name, 0)
            if isinstance(want, dict):  # an output slot {base, stride}
                want = want["base"] | (want["stride"] << ADDR_W)
            assert got == want, (c["name"], name)


# ---- bad input: clear errors before simulation --------------------------------------------

def test_network_too_big_for_engine():
    with pytest.raises(NitroError, match=r"needs \d+ words of wmem \(weights\).*cannot hold it"):
        C.compile_network(mnist_spec((1024, 1024, 1024)), 64)


def test_batch_too_big_for_engine():
    with pytest.raises(NitroError, match="at batch 128 needs .* cannot hold it"):
        C.compile_network(mnist_spec(), 128)


@pytest.mark.parametrize("batch", [0, -3, 2.5, True])
def test_bad_batch_size(batch):
    with pytest.raises(NitroError, match="batch size must be a positive integer"):
        C.compile_network(mnist_spec(), batch)


def test_unsupported_layers():
    with pytest.raises(NitroError, match="dropout is not supported"):
        C.compile_network(mnist_spec(dropout=0.1), 64)
    cfg = load_config(REPO / "configs" / "cnn_small_mnist.toml")
    spec = cfg.build_spec((1, 28, 28))
    with pytest.raises(NitroError, match="convolution block"):
        C.compile_network(spec, 8)
    with pytest.raises(NitroError, match="alpha 8"):
        C.compile_network(build_mlp((1, 28, 28), [16], Hyper(slope_inv=8)), 8)


def test_batch_of_wrong_shape_or_type():
    prog = C.compile_network(mnist_spec((16,)), 8)
    y = np.zeros((8, 10), np.int8)
    good = np.zeros((8, 1, 28, 28), np.int8)
    assert len(C.batch_tensors(prog, good, y)) == 3
    with pytest.raises(NitroError, match=r"batch must have shape \(8, 1, 28, 28\).*batch 8"):
        C.batch_tensors(prog, np.zeros((7, 1, 28, 28), np.int8), y)
    with pytest.raises(NitroError, match=r"batch must have shape"):
        C.batch_tensors(prog, np.zeros((8, 784), np.int8), y)
    with pytest.raises(NitroError, match="must be int8"):
        C.batch_tensors(prog, good.astype(np.int32), y)
    with pytest.raises(NitroError, match="targets must have shape"):
        C.batch_tensors(prog, good, np.zeros((8, 9), np.int8))


def test_weights_beyond_engine_width():
    prog = C.compile_network(mnist_spec((16,)), 8)
    params = {name: np.zeros(lm.layer.weight_shape, np.int32) for name, lm in prog.layers.items()}
    assert C.weight_tensors(prog, params)
    params["linear_encoder_00"][0, 0] = 40000
    with pytest.raises(NitroError, match="exceed the engine's 16-bit weight storage"):
        C.weight_tensors(prog, params)


def test_command_referencing_missing_memory():
    prog = C.compile_network(mnist_spec(), 64)
    C.validate_commands(prog)
    prog.commands[0]["a_base"] = prog.params.amem_c_depth - 3
    with pytest.raises(NitroError, match=r"command 0 .*A operand reaches word \d+ of amem_c, which "
                                         r"has 7744 words \(missing memory\)"):
        C.validate_commands(prog)
    prog = C.compile_network(mnist_spec(), 64)
    prog.commands[3]["o3"] = {"base": prog.params.wmem_depth, "stride": 1}
    with pytest.raises(NitroError, match="output slot o3 reaches word .* of wmem"):
        C.validate_commands(prog)
    prog = C.compile_network(mnist_spec(), 64)
    prog.commands[1]["b_sel"] = 3
    with pytest.raises(NitroError, match="names no memory"):
        C.validate_commands(prog)
    prog = C.compile_network(mnist_spec(), 64)
    prog.commands[3]["b_sel"] = 0
    with pytest.raises(NitroError, match="cannot take its B operand from wmem"):
        C.validate_commands(prog)
    prog = C.compile_network(mnist_spec(), 64)
    prog.commands[2]["k_len"] = 0
    with pytest.raises(NitroError, match="empty GEMM"):
        C.validate_commands(prog)


def test_small_engine_rejects_mnist():
    small = replace(EngineParams(), wmem_depth=4096)
    with pytest.raises(NitroError, match="wmem .* the engine has 4096"):
        C.compile_network(mnist_spec(), 64, small)


def test_lr_and_divisor_limits():
    prog = C.compile_network(mnist_spec(), 64)
    with pytest.raises(NitroError, match="lr_inv must be a positive integer"):
        C.set_lr(prog, 0)
    with pytest.raises(NitroError, match="exceeds the engine's max"):
        C.set_lr(prog, 1 << 30)  # lr_inv * 640 > 2^32 - 1
    C.set_lr(prog, 1536)
    assert prog.lr_inv == 1536


def test_bad_fault_spec():
    prog = C.compile_network(mnist_spec(), 64)
    assert parse_fault("2:linear_encoder_00:3,17:4", prog, 3) == (2, "linear_encoder_00", (3, 17), 4)
    for bad, msg in [("2:linear_encoder_00:3:4", "STEP:LAYER"), ("2:nope:3,17:4", "unknown layer"),
                     ("2:linear_encoder_00:100,0:4", "outside"), ("2:linear_encoder_00:3,17:16", "bit"),
                     ("3:linear_encoder_00:3,17:4", "step 3 never runs"),
                     ("-1:linear_encoder_00:3,17:4", "never runs")]:
        with pytest.raises(NitroError, match=msg):
            parse_fault(bad, prog, 3)


def test_run_cosim_fails_before_simulation(tmp_path, monkeypatch):
    """Host-side errors surface before the engine is even built."""
    import sim.engine.build as B

    def no_build(*a, **k):
        raise AssertionError("the engine must not be built for a bad input")

    monkeypatch.setattr(B, "build_engine", no_build)
    big = tmp_path / "big.toml"
    big.write_text('name = "big"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\nhidden = [2048, 1024]\n[train]\n')
    with pytest.raises(NitroError, match="cannot hold it"):
        run_cosim(big, 1, None, None, False)
    drop = tmp_path / "drop.toml"
    drop.write_text('name = "d"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\nhidden = [16]\n'
                    'dropout = 0.1\n[train]\n')
    with pytest.raises(NitroError, match="dropout"):
        run_cosim(drop, 1, None, None, False)
    with pytest.raises(NitroError, match="steps"):
        run_cosim(REPO / "configs" / "embedded_mlp.toml", 0, None, None, False)
    with pytest.raises(NitroError, match="fault must be"):
        run_cosim(REPO / "configs" / "embedded_mlp.toml", 1, None, None, False, fault="x")
    with pytest.raises(NitroError, match="step 2 never runs"):  # the check could not fail
        run_cosim(REPO / "configs" / "embedded_mlp.toml", 2, None, None, False,
                  fault="2:linear_encoder_00:3,17:4")
    with pytest.raises(NitroError, match="cannot read config"):
        run_cosim(tmp_path / "missing.toml", 1, None, None, False)


def test_prepare_cosim_real_config():
    cfg, prog = prepare_cosim(REPO / "configs" / "embedded_mlp.toml", 1)
    assert prog.batch == 64 and cfg.name == "embedded_mlp"


def _res(**kw):
    return {"steps_run": 3, "steps_requested": 3, "ok": True, "fault": None, "fault_injected": False,
            "mismatch": None, **kw}


@pytest.mark.parametrize("res, failure", [
    (_res(steps_run=0), "no training step was compared"),
    (_res(steps_run=2), "2 of 3 steps were compared"),
    (_res(fault="5:l:0,0:1"), "never injected"),
    (_res(fault="1:l:0,0:1", fault_injected=True), "did not catch it"),
])
def test_cosim_verdict_fails_a_check_that_could_not_fail(res, failure):
    """A cosim that compared nothing, or whose fault was not injected or not caught, fails."""
    from sim.engine.cosim import verdict

    verdict(res)
    assert not res["ok"] and failure in res["message"]


def test_cosim_verdict_keeps_a_caught_fault_and_a_clean_run():
    from sim.engine.cosim import verdict

    caught = _res(steps_run=2, ok=False, fault="1:l:0,0:1", fault_injected=True,
                  mismatch={"step": 1}, message="step 1: ...")
    verdict(caught)
    assert caught["message"] == "step 1: ..."
    clean = _res()
    verdict(clean)
    assert clean["ok"]
