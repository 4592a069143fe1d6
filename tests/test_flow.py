"""`nitro flow` on a plain clone (no ../shared): every step runs on what the repository ships, with
non-zero counts, and names its data; a step that checked nothing fails the flow (issue 12)."""
import re
from pathlib import Path

import pytest

import scripts.flow as flow
from model.numerics import NitroError
from sim.tensors import official
from sim.testing import run_unit

NO_SHARED = Path("/nonexistent/shared")


def test_flow_on_a_plain_clone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = Path("flow")  # relative, as `nitro flow`'s default runs/flow: the simulator runs elsewhere
    assert flow.run_flow(out, epochs=2, shared=NO_SHARED, progress=False)
    report = (out / "report.md").read_text()
    assert "**Result: all checks passed**" in report
    assert "(embedded data)" in report
    assert "vectors in model/embedded/refvectors): mlp: 186 arrays bit-exact" in report
    assert "golden-model tensors of `embedded_mlp` on embedded data" in report
    counts = dict(re.findall(r"(\w+): ([\d,]+) vectors bit-exact", report))
    assert set(counts) == set(flow.FLOW_UNITS)
    assert all(int(n.replace(",", "")) > 1000 for n in counts.values()), counts
    assert "3 training steps of 784-100-50-10" in report
    assert "from the trained weights (train/checkpoint.npz)" in report and "every compared tensor varying" in report
    assert re.search(r"Verilog of \d+ units", report)


def _ctx(tmp_path, **kw):
    return {"out": tmp_path, "config": flow.DEFAULT_CONFIG, "data_dir": None, "epochs": 1,
            "shared": NO_SHARED, "progress": False, "failed": False, "force": False, "rtl": None, **kw}


def test_conformance_that_compared_no_array_fails(tmp_path, monkeypatch):
    from model.conform import StepReport

    monkeypatch.setattr(flow, "run_conformance", lambda vec, tag: [StepReport("1", 0)])
    ctx = _ctx(tmp_path)
    line = flow.step_conform(ctx)
    assert ctx["failed"] and "mlp: 0 arrays MISMATCH: no array compared" in line


def test_rtl_with_no_unit_fails(tmp_path, monkeypatch):
    import hw.rtl

    def empty(out, force=False, plan=None):
        (out / "manifest.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text('{"units": []}')
        return out / "manifest.json"

    monkeypatch.setattr(hw.rtl, "write_rtl", empty)
    ctx = _ctx(tmp_path)
    flow.step_rtl(ctx)
    assert ctx["failed"]


def test_verilog_the_flow_would_replace_is_checked_before_training(tmp_path, monkeypatch):
    """A hand-edited file in the flow's rtl/ stops the flow before its first step, not after
    minutes of training."""
    import hw.rtl

    def refuse(out, force=False):
        raise NitroError(f"{out}/mac.v was changed since nitro rtl wrote it")

    monkeypatch.setattr(hw.rtl, "plan_rtl", refuse)
    monkeypatch.setattr(flow, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(NitroError, match="mac.v was changed"):
        flow.run_flow(tmp_path / "f", progress=False)


def test_training_that_learned_nothing_fails_the_flow(tmp_path):
    """One epoch on the subset stays at chance (10.9 %): the train step fails the flow."""
    ctx = _ctx(tmp_path / "run", epochs=1)
    line = flow.step_train(ctx)
    assert ctx["failed"] and line.startswith("FAILED: did not learn")


def _counted_nothing(monkeypatch):
    """Every testbench run records no vector count, as one whose testcases only asserted literals
    (or compared nothing) would."""
    import sim.testing

    monkeypatch.setattr(sim.testing, "run_tb", lambda *a, **k: {})


def test_unit_check_that_counted_no_vector_fails(monkeypatch):
    """A testbench run that checked nothing against the golden model is refused by run_unit; a
    testcase that does not exist runs no test."""
    with pytest.raises(AssertionError, match="no cocotb test ran"):
        run_unit("relu_bwd", testcase="no_such_testcase")
    assert run_unit("relu_bwd", testcase="appendix_a") == {"spec Appendix A rows": 27}
    _counted_nothing(monkeypatch)
    with pytest.raises(AssertionError, match="checked 0 vectors"):
        run_unit("relu_bwd", testcase="appendix_a")


def _junit(path: Path, cases: list[tuple[str, bool]]) -> Path:
    """A results.xml as cocotb writes it: (testcase name, skipped) per test."""
    body = "".join(f'<testcase classname="m" name="{n}">' + ("<skipped />" if skip else "") + "</testcase>"
                   for n, skip in cases)
    path.write_text(f'<testsuites><testsuite name="m" errors="0" failures="0" tests="{len(cases)}">'
                    f"{body}</testsuite></testsuites>")
    return path


def test_a_testcase_that_did_not_run_fails(tmp_path):
    """Every cocotb test a testbench module defines must run, none skipped: one that silently
    stopped (a lost decorator, skip=True, a filter in the shell) would leave the other testcases'
    vector counts to pass for it."""
    from sim.runner import check_results, module_tests

    expected = module_tests("sim.tb.tb_relu_bwd")
    assert expected == {"appendix_a", "backpressure_and_real", "exhaustive_s_corner_delta"}
    check_results(_junit(tmp_path / "all.xml", [(n, False) for n in sorted(expected)]), expected)
    with pytest.raises(SystemExit, match="expected"):
        check_results(_junit(tmp_path / "two.xml", [(n, False) for n in sorted(expected)[:2]]), expected)
    with pytest.raises(SystemExit, match="skipped"):
        check_results(_junit(tmp_path / "skip.xml", [(n, n == "appendix_a") for n in expected]), expected)


def test_simulate_step_reports_a_unit_that_checked_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(flow, "FLOW_UNITS", {"relu_bwd": "appendix_a"})
    _counted_nothing(monkeypatch)
    monkeypatch.setattr(flow, "training_tensors", lambda ctx: official())
    ctx = _ctx(tmp_path)
    line = flow.step_simulate(ctx)
    assert ctx["failed"] and "relu_bwd: FAILED" in line and "checked 0 vectors" in line


def test_cosim_that_compared_only_constants_fails(tmp_path, monkeypatch):
    """A co-simulation whose compared activations never varied (the initial weights' scaled
    outputs round to 0) could not have shown a wrong forward: it fails the flow."""
    import json

    import sim.engine.cosim

    def constant_run(config, steps, data_dir, out, progress, **kw):
        Path(out).write_text(json.dumps({"constant_tensors": ["non_linearity_00 (block activation)"]}))
        return 0

    monkeypatch.setattr(sim.engine.cosim, "run_cosim", constant_run)
    ctx = _ctx(tmp_path)
    line = flow.step_cosim(ctx)
    assert ctx["failed"] and "compared only as one constant: non_linearity_00" in line


def test_a_missing_tensor_source_is_an_error(tmp_path):
    from model.numerics import NitroError
    from sim.tensors import TensorSource

    with pytest.raises(NitroError, match="cannot read training tensors"):
        TensorSource(str(tmp_path), "missing", "missing").load("step1")
    with pytest.raises(NitroError, match="has no cnn set"):
        TensorSource(str(tmp_path), "a", "b").load("step1", "cnn")


def test_a_network_the_engine_cannot_run_fails_before_the_first_step(tmp_path):
    """The engine's limits are checked with the config, not at the flow's last step after
    training, conformance, RTL and simulation."""
    from model.numerics import NitroError

    cfg = tmp_path / "slope3.toml"
    cfg.write_text('name = "slope3"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                   'hidden = [16]\nslope_inv = 3\n[train]\nbatch_size = 16\n')
    with pytest.raises(NitroError, match="the engine's ReLU units are built for alpha 4"):
        flow.run_flow(tmp_path / "flow", cfg, shared=NO_SHARED, progress=False)
    assert not (tmp_path / "flow").exists()


def test_a_folder_of_other_files_is_refused_before_the_first_step(tmp_path):
    """The flow writes report.md, cosim.json, train/, rtl/ and tensors/: in a folder it did not
    write (no flow.json of its own) nothing is replaced without --force, and an output name taken
    by the wrong kind of entry is named; both before any step runs."""
    from model.numerics import NitroError

    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("MY NOTES")
    for stamp in (None, '{"mine": 1}'):  # no flow.json, or the user's own
        if stamp:
            (out / "flow.json").write_text(stamp)
        with pytest.raises(NitroError, match="has files and no flow.json of the flow's.*--force"):
            flow.run_flow(out, shared=NO_SHARED, progress=False)
        assert (out / "report.md").read_text() == "MY NOTES"
    assert (out / "flow.json").read_text() == '{"mine": 1}'
    for name in ("report.md", "flow.json"):
        (out / name).unlink()
    (out / "cosim.json").mkdir()
    for force in (False, True):
        with pytest.raises(NitroError, match="cosim.json is not a file: the flow writes its cosim.json there"):
            flow.run_flow(out, shared=NO_SHARED, progress=False, force=force)
    assert sorted(p.name for p in out.iterdir()) == ["cosim.json"]


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_the_flow_wrote_is_continued_or_started_over(tmp_path, monkeypatch, force):
    """A rerun in the flow's folder resumes its training and checks its RTL files against the
    manifest; with --force it trains from scratch and overwrites them."""
    import hw.rtl

    out = flow.claim_folder(tmp_path / "f", force=False)
    (out / "train").mkdir()
    (out / "train" / "checkpoint.npz").write_bytes(b"an earlier run's")
    assert flow.claim_folder(out, force=force) == out
    seen = {}

    def fake_train(cfg, run_dir, data_dir, **kw):
        seen["train"] = (kw["resume"], kw["force"])
        raise RuntimeError("stop")

    def fake_rtl(out, **kw):
        seen["rtl"] = kw["force"]  # returns no manifest: step_rtl stops reading it

    monkeypatch.setattr(flow, "train", fake_train)
    monkeypatch.setattr(hw.rtl, "write_rtl", fake_rtl)
    ctx = _ctx(out, force=force)
    with pytest.raises(RuntimeError, match="stop"):
        flow.step_train(ctx)
    with pytest.raises(AttributeError):  # the stand-in returns no manifest
        flow.step_rtl(ctx)
    assert seen == {"train": (not force, force), "rtl": force}
