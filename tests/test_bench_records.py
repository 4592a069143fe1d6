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


def test_the_figures_show_every_recorded_conv_gemm_and_routed_seed(tmp_path):
    """benchmarks/engine's figures are drawn from the records: each conv GEMM of the cnn_small run
    and of the VGGs' models (VGG8B MNIST, VGG8B and VGG11B CIFAR-10), each landed engine's routed
    seeds, against the targets."""
    import scripts.bench_engine_plots as P

    panels = dict(P._conv_gemms())
    assert len(panels) == 4 and all(len(g) >= 4 for g in panels.values())
    assert all(0 < u <= 1 for g in panels.values() for u in g.values())
    target, rows = P._routed_netlists()
    landed = [seeds for name, seeds in rows if "(landed)" in name]
    assert target == 150.0 and len(landed) == 2 and all(landed)
    assert P.write_figures(tmp_path) == [P.UTILIZATION_PNG, P.FMAX_PNG]
    assert all((tmp_path / f).stat().st_size > 10_000 for f in (P.UTILIZATION_PNG, P.FMAX_PNG))


def test_an_experiment_records_its_routed_and_unrouted_seeds(tmp_path, monkeypatch):
    """`bench_engine.py experiment` on the CNN engine's records at another speed grade: the routed
    seed in brief, and how far a seed that did not route got; the earlier experiments are kept."""
    import shutil

    import scripts.bench_engine_synth as S

    doc = tmp_path / "timing_experiments.json"
    shutil.copy(S.EXPERIMENTS, doc)
    monkeypatch.setattr(S, "EXPERIMENTS", doc)
    recs = tmp_path / "records"
    recs.mkdir()
    shutil.copy(S.OUT / "synth_w24_seed5.json", recs / "synth_speed8_w24_seed5.json")
    (recs / "synth_speed8_w24_seed6.json").write_text(json.dumps({"fmax_mhz": None, "status": "not routed: x"}))
    (recs / "synth_speed8_seed1.json").write_text(json.dumps({"fmax_mhz": None, "status": "the MLP engine's"}))
    before = json.loads(doc.read_text())
    S.bench_experiment("cnn at 8", "what", recs, speed=8, flow=True, weight_bits=24)
    after = json.loads(doc.read_text())
    entry = after["flow_experiments"][-1]
    assert entry["name"] == "cnn at 8" and entry["unrouted"] == {"6": "not routed: x"}
    assert entry["seeds"]["5"]["fmax_mhz"] == json.loads((S.OUT / "synth_w24_seed5.json").read_text())["fmax_mhz"]
    assert after["experiments"] == before["experiments"]
    assert after["flow_experiments"][:-1] == before["flow_experiments"]


def test_seeds_routed_later_join_their_experiment(tmp_path, monkeypatch):
    """Seeds of an experiment routed in a later session are added to its entry: a new result
    replaces its seed's (a seed that did not route before and now did), the others are kept; a
    record of another netlist under the same name is refused."""
    import shutil

    import scripts.bench_engine_synth as S

    doc = tmp_path / "timing_experiments.json"
    shutil.copy(S.EXPERIMENTS, doc)
    monkeypatch.setattr(S, "EXPERIMENTS", doc)
    name = next(e["name"] for e in json.loads(doc.read_text())["flow_experiments"] if "2b0c1734" in e["name"])
    before = next(e for e in json.loads(doc.read_text())["flow_experiments"] if e["name"] == name)
    assert {"2", "6"} <= before["seeds"].keys() and "5" in before["unrouted"]
    recs = tmp_path / "records"
    recs.mkdir()
    # a landed seed's record, as if of the experiment's netlist
    sha = next(iter(before["seeds"].values()))["verilog_sha256"]
    landed = {**json.loads((S.OUT / "synth_w24_seed5.json").read_text()), "verilog_sha256": sha}
    (recs / "synth_speed8_w24_seed5.json").write_text(json.dumps(landed))
    (recs / "synth_speed8_w24_seed9.json").write_text(json.dumps({"fmax_mhz": None, "status": "not routed: y"}))
    S.bench_experiment(name, before["changes"], recs, speed=8, flow=True, weight_bits=24)
    entry = next(e for e in json.loads(doc.read_text())["flow_experiments"] if e["name"] == name)
    assert list(entry["seeds"]) == sorted({*before["seeds"], "5"}, key=int)
    assert entry["seeds"]["5"]["fmax_mhz"] == landed["fmax_mhz"]
    assert entry["unrouted"] == {**{s: v for s, v in before["unrouted"].items() if s != "5"}, "9": "not routed: y"}
    (recs / "synth_speed8_w24_seed5.json").write_text(json.dumps({**landed, "verilog_sha256": "0" * 64}))
    with pytest.raises(SystemExit, match="routed on another netlist"):
        S.bench_experiment(name, before["changes"], recs, speed=8, flow=True, weight_bits=24)
