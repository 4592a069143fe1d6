"""The coverage report's reader and verdict: Verilator's coverage.dat points parsed per kind, and
the sentence "every line is executed" only when every design had line points and ran them all;
a session's report without an earlier session's runs."""
from sim.coverage import clear_runs, line_gaps, parse


def _point(f: str, line: int, kind: str, obj: str, hits: int) -> str:
    keys = {"f": f, "l": str(line), "t": kind, "page": f"v_{kind}/dut", "o": obj, "h": "tb.u_dut"}
    return "C '" + "".join(f"\x01{k}\x02{v}" for k, v in keys.items()) + f"' {hits}"


def test_parse_reads_every_point_with_its_hits(tmp_path):
    dat = tmp_path / "coverage.dat"
    dat.write_text("\n".join(["# SystemC::Coverage-3",
                              _point("/b/relu.v", 10, "line", "blk", 7),
                              _point("/b/relu.v", 11, "line", "blk", 0),
                              _point("/b/relu.v", 12, "toggle", "x:0->1", 3)]) + "\n")
    points = parse(dat)
    assert points == {("relu.v", 10, "line", "blktb.u_dut"): 7, ("relu.v", 11, "line", "blktb.u_dut"): 0,
                      ("relu.v", 12, "toggle", "x:0->1tb.u_dut"): 3}


def _design(hit: int, total: int) -> dict:
    return {"line": {"hit": hit, "total": total}, "toggle": {"hit": 0, "total": 0}}


def test_line_gaps_name_every_shortfall():
    assert line_gaps({"a.v": _design(5, 5), "b.v": _design(9, 9)}, []) == []
    assert line_gaps({"a.v": _design(4, 5)}, []) == ["a.v: 1 of 5 lines never executed"]
    # a design without line points measured nothing: not "100 %"
    assert line_gaps({"a.v": _design(0, 0)}, []) == ["a.v: no line points"]
    assert line_gaps({"a.v": _design(5, 5)}, ["relu"]) == ["relu: not run"]
    assert line_gaps({}, []) == ["no design measured"]


def test_a_session_starts_without_earlier_runs(tmp_path):
    """Every run folder's coverage.dat of every coverage build goes (a plain run's, an xdist
    worker's, a testcase's); the builds and other builds' runs stay."""
    dats = [tmp_path / b / r / "coverage.dat" for b in ("relu_fwd-cov-ab12", "mac-cov-cd34")
            for r in ("run", "run-gw3", "run_corners")]
    keep = [tmp_path / "relu_fwd-cov-ab12" / "relu_fwd.v", tmp_path / "relu_fwd-ab12" / "run" / "coverage.dat"]
    for f in dats + keep:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    assert clear_runs(tmp_path) == len(dats)
    assert not any(f.exists() for f in dats) and all(f.exists() for f in keep)
