"""The benchmark scripts' record helpers (scripts/bench_engine.py): a record carries what it started
from and the commit, and a failed run is not recorded as a result."""
import json

import pytest

import scripts.bench_engine as B
import sim.engine.cosim


def _fake_cosim(rc: int):
    def run(config, steps, data_dir, out, progress=True, **kw):
        out.write_text(json.dumps({"steps_run": steps, "message": "differs"}))
        return rc
    return run


def test_a_record_is_stamped_with_its_start_and_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(sim.engine.cosim, "run_cosim", _fake_cosim(0))
    out = tmp_path / "r.json"
    assert B._record_cosim("mlp_mnist", 2, None, out, extra={"start": "x64"}) == out
    res = json.loads(out.read_text())
    assert res["start"] == "x64" and res["commit"] and "total_wall_s_incl_build" in res


def test_a_run_that_differs_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sim.engine.cosim, "run_cosim", _fake_cosim(1))
    with pytest.raises(SystemExit, match="cosim failed: differs"):
        B._record_cosim("mlp_mnist", 2, None, tmp_path / "r.json")
