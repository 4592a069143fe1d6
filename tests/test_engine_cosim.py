"""NITRO-D training engine on Verilator: whole MLP training steps, bit-identical to the golden model
after every step (issue #4, acceptance 1, 2 and 4). One engine build (the MNIST-MLP capacity engine,
cached by content hash) serves every test."""
import json
from pathlib import Path

import pytest

from sim.engine.build import build_engine
from sim.engine.cosim import run_cosim

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def engine_build():
    return build_engine()


def _config(tmp_path: Path, hidden: list[int], batch: int) -> Path:
    cfg = tmp_path / "engine_test.toml"
    cfg.write_text(f'name = "engine_test"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                   f'hidden = {hidden}\n[train]\nbatch_size = {batch}\n')
    return cfg


def _cosim(tmp_path, config, steps, fault=None, batch=None):
    out = tmp_path / "result.json"
    rc = run_cosim(config, steps, None, out, False, fault=fault, batch=batch,
                   work_dir=tmp_path / "sim")
    return rc, json.loads(out.read_text())


def test_engine_mnist_mlp_batch64(engine_build, tmp_path):
    """The paper's MNIST MLP 784-100-50-10 at batch 64: 2 steps, every weight and output
    bit-identical; MAC utilization >= 90% over the GEMM phases (RTL counters)."""
    rc, res = _cosim(tmp_path, REPO / "configs" / "embedded_mlp.toml", 2)
    assert rc == 0, res.get("message")
    assert res["ok"] and res["steps_run"] == 2 and res["network"] == "784-100-50-10"
    assert res["mac_busy_frac"] >= 0.95
    assert res["mac_util"] >= 0.90
    ph = res["phases"]
    assert ph["fwd/linear_block_00"]["mac_util"] >= 0.95
    assert ph["upd_fwd/linear_block_00"]["mac_util"] >= 0.95
    assert 150_000 < res["cycles_per_step"] < 200_000


def test_engine_odd_shapes(engine_build, tmp_path):
    """Batch and hidden sizes that are not multiples of the array side (masked edges)."""
    rc, res = _cosim(tmp_path, _config(tmp_path, [20], 12), 3)
    assert rc == 0, res.get("message")
    assert res["steps_run"] == 3 and res["network"] == "784-20-10"


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


def test_engine_build_cache_holds_no_checkout_path(engine_build):
    """The source-hash link names its build folder relative to the build root, so a copied
    checkout uses its own build folder, never the original's."""
    from sim.engine.build import source_link

    assert source_link(engine_build.params).read_text() == engine_build.build_dir.name
