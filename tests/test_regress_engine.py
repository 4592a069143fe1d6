"""The engine's constrained-random regression (scripts/regress_engine.py): its cases are
reproducible, spread over the space it names and mostly within what the engine runs; a run
records what passed and what the compiler refused, a wrong engine result fails its case, and a
run in which no case passed fails."""
import json

import pytest

from hw.engine.compiler import compile_network
from model.config import parse_config
from model.numerics import NitroError
from scripts.regress_engine import ENGINES, draw_case, main, run_case


def _compiles(case) -> bool:
    spec = parse_config(case.config, "case").build_spec(case.input_shape)
    try:
        compile_network(spec, case.batch, ENGINES[case.engine])
    except NitroError:
        return False
    return True


def test_cases_are_reproducible_and_spread():
    cases = [draw_case(1, k) for k in range(200)]
    assert cases == [draw_case(1, k) for k in range(200)] and draw_case(2, 0) != cases[0]
    assert {c.kind for c in cases} == {"mlp", "cnn"} and {c.engine for c in cases} == set(ENGINES)
    assert {(c.kind, c.input_shape) for c in cases} == {(k, s) for k in ("mlp", "cnn")
                                                        for s in ((1, 28, 28), (3, 32, 32))}
    assert {c.memory for c in cases} >= {"ideal", "ddr3"} and len({c.memory for c in cases}) > 50
    assert {c.steps for c in cases} == {1, 2, 3} and {c.scale for c in cases} == {1, 16, 64, 128}
    assert any(c.batch % 8 for c in cases) and any(c.train_images for c in cases)
    assert any("[schedule]" in c.config for c in cases)  # lr_inv changes at epoch boundaries
    assert any("dropout = 0.25" in c.config for c in cases)
    assert sum(map(_compiles, cases)) >= 0.8 * len(cases)


def _small_mlp(case) -> bool:
    return case.kind == "mlp" and case.engine == "w16" and case.steps >= 2 and case.scale > 1


def test_a_run_records_passed_and_refused_cases(tmp_path):
    out = tmp_path / "regression.json"
    seed = next(s for s in range(1000) if _small_mlp(draw_case(s, 0)) and not _compiles(draw_case(s, 1)))
    assert main(["--cases", "2", "--seed", str(seed), "--out", str(out), "--no-progress"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["cases"], doc["passed"], doc["refused"], doc["failed"]) == (2, 1, 1, 0)
    assert doc["coverage"]["kind mlp"] == 1 and len(doc["refusals"]) == 1
    assert sum(p["cases"] for p in doc["prediction"].values()) == 1  # the model against the RTL
    # the model applied again, without simulating, to the recompiled program: the recorded
    # prediction, since the model is the same; a program that is not the one that ran is left out
    assert main(["--remodel", str(out), "--out", str(tmp_path / "remodel.json")]) == 0
    again = json.loads((tmp_path / "remodel.json").read_text())
    (row,) = [r for r in doc["rows"] if r["outcome"] == "passed"]
    assert again["cases"] == 1 and again["program_changed"] == []
    assert again["errors"] == {str(row["index"]): pytest.approx(row["predicted_error"], abs=1e-12)}
    other_memory = "ddr3" if row["memory"] != "ddr3" else "ideal"
    for field, other in (("program_sha256", "0" * 64), ("memory", other_memory)):
        out.write_text(json.dumps({**doc, "rows": [{**row, field: other}]}))
        with pytest.raises(SystemExit, match="no passed case with its program unchanged"):
            main(["--remodel", str(out)])
    for args in (["--seed", "3"], ["--out", str(out)]):  # no case options; no record overwritten
        with pytest.raises(SystemExit) as exc:
            main(["--remodel", str(out), *args])
        assert exc.value.code == 2
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(SystemExit) as exc:
        main(["--remodel", str(tmp_path / "other.json")])
    assert exc.value.code == 2


def test_a_wrong_engine_result_fails_its_case(tmp_path):
    case = next(c for k in range(100) if _small_mlp(c := draw_case(1, k)))
    row = run_case(case, tmp_path, fault="1:linear_encoder_00:0,0:4")
    assert row["outcome"] == "failed" and "step 1" in row["reason"], row


def test_a_run_where_nothing_passed_fails(tmp_path):
    seed = next(s for s in range(100) if not _compiles(draw_case(s, 0)))
    assert main(["--cases", "1", "--seed", str(seed), "--out", str(tmp_path / "r.json"),
                 "--no-progress"]) == 1


def test_a_simulation_that_fails_is_a_failure_not_a_refusal(tmp_path, monkeypatch):
    """The simulation's own failure (here every cocotb run exits as a failed test would) ends in
    an error line too, but it is the engine's failure: the case fails, it is not tallied as a
    limit the compiler named."""
    import sim.engine.build

    def failed_test(*args, **kwargs):
        raise SystemExit("cocotb: 1 test failed")

    monkeypatch.setattr(sim.engine.build, "run_engine_test", failed_test)
    case = next(c for k in range(100) if _small_mlp(c := draw_case(1, k)))
    row = run_case(case, tmp_path)
    assert row["outcome"] == "crashed" and "the simulation failed" in row["reason"], row
