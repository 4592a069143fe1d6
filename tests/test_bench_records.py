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


def test_synth_keeps_only_seeds_that_routed_the_current_rtl(tmp_path, monkeypatch):
    """A seed's record is kept (not routed again) only when it routed this Verilog and pinout: one
    of other RTL, or one stopped before routing (--route-minutes), is routed again."""
    import scripts.bench_engine_synth as S

    monkeypatch.setattr(S, "OUT", tmp_path)
    current = ("v", "p")
    recs = {1: {"verilog_sha256": "v", "lpf_sha256": "p", "fmax_mhz": 111.6},
            2: {"verilog_sha256": "v", "lpf_sha256": "p", "fmax_mhz": None, "status": "not routed"},
            3: {"verilog_sha256": "old", "lpf_sha256": "p", "fmax_mhz": 120.0}}
    for seed, rec in recs.items():
        (tmp_path / f"synth_w24_seed{seed}.json").write_text(json.dumps(rec))
    assert S.routed_records("synth_w24", [1, 2, 3, 4], current) == {1: recs[1]}
