"""`write_rtl` (nitro rtl): every unit's Verilog, a manifest of parameters/ports/widths, lint clean."""
import json

from hw.rtl import LINT_WAIVERS, UNITS, write_rtl


def test_write_rtl_all_units_lint_clean(tmp_path):
    manifest = write_rtl(tmp_path)
    doc = json.loads(manifest.read_text())
    assert [u["unit"] for u in doc["units"]] == list(UNITS)
    for u in doc["units"]:
        assert (tmp_path / u["file"]).read_text().count(f"module {u['unit']}(") == 1
        assert u["lint"] == "clean", f"{u['unit']}: {u['lint']}"
        assert u["lint_waivers"] == LINT_WAIVERS
        names = {p["name"]: p for p in u["ports"]}
        assert {"clk", "rst", "i__payload", "i__valid", "i__ready", "o__payload", "o__valid",
                "o__ready"} <= set(names)
        # payload fields tile the port exactly
        for port in ("i__payload", "o__payload"):
            fields = names[port]["fields"]
            assert sum(f["width"] for f in fields) == names[port]["width"]
        assert u["latency_cycles"] >= 1


def test_write_rtl_subset(tmp_path):
    doc = json.loads(write_rtl(tmp_path, ["loss_gradient"], run_lint=False).read_text())
    assert [u["unit"] for u in doc["units"]] == ["loss_gradient"]
