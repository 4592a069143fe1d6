# amaranth: UnusedElaboratable=no
"""`write_rtl` (nitro rtl): every unit's Verilog, a manifest of parameters/ports/widths, lint clean."""
import hashlib
import json
import shutil
import subprocess

import pytest

from hw.rtl import LINT_WAIVERS, UNITS, plan_rtl, write_rtl
from model.numerics import NitroError


def test_write_rtl_all_units_lint_clean(tmp_path):
    manifest = write_rtl(tmp_path)
    doc = json.loads(manifest.read_text())
    assert [u["unit"] for u in doc["units"]] == list(UNITS)
    for u in doc["units"]:
        assert (tmp_path / u["file"]).read_text().count(f"module {u['unit']}(") == 1
        assert u["lint"] == "clean", f"{u['unit']}: {u['lint']}"
        assert u["lint_waivers"] == LINT_WAIVERS
        names = {p["name"]: p for p in u["ports"]}
        assert {"clk", "rst"} <= set(names)
        for p in u["ports"]:  # every port is in the Verilog; layout fields tile their port exactly
            assert f" {p['name']};" in (tmp_path / u["file"]).read_text()
            if "fields" in p:
                assert sum(f["width"] for f in p["fields"]) == p["width"]
        if "register_files" in u:
            assert_header_is_the_map(tmp_path, u["unit"], built_map(u["unit"]))
        if u["latency_cycles"] is None:  # the AXI components
            assert any(n.endswith(("__araddr", "__awaddr")) for n in names)
        else:  # the pipelined stream units
            assert {"i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready"} <= set(names)
            assert u["latency_cycles"] >= 1


def built_map(unit: str):
    """The register map of the unit as built (here, so that this file's marker silences the
    warning of a unit built and never converted)."""
    cls, params = UNITS[unit]
    return cls(**params).regmap


def assert_header_is_the_map(folder, unit: str, regmap) -> None:
    """<unit>_regs.h, compiled by the C compiler, gives every register's offset, every constant
    register's value and every constant of `regmap`; <unit>_regs.md lists every register."""
    cc = shutil.which("cc")
    assert cc, "a C compiler is needed to check the register header"
    p = unit.upper()
    want = {f"{p}_{r.name.upper()}_OFFSET": r.offset for r in regmap.registers}
    want |= {f"{p}_{r.name.upper()}_VALUE": r.reset for r in regmap.registers if r.access == "const"}
    want |= {f"{p}_{c.name.upper()}": c.value for c in regmap.constants}
    prog = folder / f"{unit}_check.c"
    prog.write_text(f'#include <stdio.h>\n#include "{unit}_regs.h"\nint main(void) {{\n'
                    + "".join(f'    printf("%lu\\n", (unsigned long)({m}));\n' for m in want)
                    + "    return 0;\n}\n")
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-o", str(folder / unit), str(prog)], check=True)
    got = subprocess.run([str(folder / unit)], capture_output=True, text=True, check=True).stdout.split()
    assert dict(zip(want, map(int, got), strict=True)) == want
    md = (folder / f"{unit}_regs.md").read_text()
    assert all(f"| {r.offset:#05x} | {r.name} |" in md for r in regmap.registers)


def assert_edit_kept_unless_forced(folder, unit: str, file: str, edit: str) -> None:
    """A hand edit of `file` makes nitro rtl refuse to write `unit` there, the edit kept; with
    --force the file is replaced."""
    f = folder / file
    f.write_text(f.read_text() + edit)
    with pytest.raises(NitroError, match=f"{file} was changed since nitro rtl wrote it"):
        write_rtl(folder, [unit], run_lint=False)
    assert f.read_text().endswith(edit)
    write_rtl(folder, [unit], run_lint=False, force=True)
    assert edit not in f.read_text()


def test_a_register_map_is_written_as_a_c_header_and_markdown(tmp_path):
    """The engine's control registers: their map as a C header for a driver (checked by compiling
    it) and as Markdown, recorded in the manifest; a hand edit of the header is kept unless
    forced, like one of the Verilog."""
    doc = json.loads(write_rtl(tmp_path, ["engine_control"], run_lint=False).read_text())
    files = doc["units"][0]["register_files"]
    assert sorted(files) == ["engine_control_regs.h", "engine_control_regs.md"]
    for name, digest in files.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    assert_header_is_the_map(tmp_path, "engine_control", built_map("engine_control"))
    assert_edit_kept_unless_forced(tmp_path, "engine_control", "engine_control_regs.h", "/* my edit */\n")


def test_write_rtl_subset(tmp_path):
    doc = json.loads(write_rtl(tmp_path, ["loss_gradient"], run_lint=False).read_text())
    assert [u["unit"] for u in doc["units"]] == ["loss_gradient"]


def test_write_rtl_keeps_the_units_written_earlier_in_its_manifest(tmp_path):
    write_rtl(tmp_path, ["loss_gradient"], run_lint=False)
    doc = json.loads(write_rtl(tmp_path, ["nitro_relu_forward"], run_lint=False).read_text())
    assert [u["unit"] for u in doc["units"]] == ["loss_gradient", "nitro_relu_forward"]
    (tmp_path / "loss_gradient.v").unlink()  # an entry whose Verilog is gone is not kept
    doc = json.loads(write_rtl(tmp_path, ["nitro_relu_forward"], run_lint=False).read_text())
    assert [u["unit"] for u in doc["units"]] == ["nitro_relu_forward"]


def test_write_rtl_keeps_a_hand_edited_or_foreign_file_unless_forced(tmp_path):
    doc = json.loads(write_rtl(tmp_path, ["loss_gradient"], run_lint=False).read_text())
    v = tmp_path / "loss_gradient.v"
    assert doc["units"][0]["sha256"] == hashlib.sha256(v.read_bytes()).hexdigest()
    write_rtl(tmp_path, ["loss_gradient"], run_lint=False)  # its own unchanged output: replaced
    assert_edit_kept_unless_forced(tmp_path, "loss_gradient", "loss_gradient.v", "// my edit\n")
    (tmp_path / "manifest.json").unlink()  # no record, but what it writes now: replaced
    write_rtl(tmp_path, ["loss_gradient"], run_lint=False)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    del doc["units"][0]["sha256"]  # a manifest of a nitro rtl that recorded no hashes
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    v.write_text(v.read_text() + "// older\n")
    write_rtl(tmp_path, ["loss_gradient"], run_lint=False)
    assert "// older" not in v.read_text()
    other = tmp_path / "other"
    other.mkdir()
    for foreign in ("my notes", '{"units": [{"file": "other.txt"}]}', '{"units": [{"file": ["a"]}]}',
                    '{"units": [{"file": "other.txt", "unit": ["x"]}]}', '{"units": []}'):
        (other / "manifest.json").write_text(foreign)
        with pytest.raises(NitroError, match="is not a manifest nitro rtl wrote"):
            write_rtl(other, ["loss_gradient"], run_lint=False)
        assert (other / "manifest.json").read_text() == foreign and not (other / "loss_gradient.v").exists()
    (other / "loss_gradient.v").mkdir()
    with pytest.raises(NitroError, match="loss_gradient.v is not a file"):
        write_rtl(other, ["loss_gradient"], run_lint=False, force=True)



def test_a_plan_is_checked_again_when_it_is_written(tmp_path):
    """The flow converts and checks its Verilog before training and writes it after: a file
    edited in between is still not lost."""
    write_rtl(tmp_path, ["loss_gradient"], run_lint=False)
    plan = plan_rtl(tmp_path, ["loss_gradient"])
    v = tmp_path / "loss_gradient.v"
    v.write_text(v.read_text() + "// my edit\n")
    with pytest.raises(NitroError, match="loss_gradient.v was changed since nitro rtl wrote it"):
        write_rtl(tmp_path, run_lint=False, plan=plan)
    assert v.read_text().endswith("// my edit\n")

def _components(c):
    """A simulated design and the units inside it that `nitro rtl` could export on their own."""
    from hw.dma import DmaLoopback
    from sim.bank import Bank

    if isinstance(c, Bank):
        return list(c.units)
    if isinstance(c, DmaLoopback):
        return [c.reader, c.writer]
    return [c]


def test_every_exported_unit_is_a_simulated_configuration():
    """Each unit `nitro rtl` writes is, with the same Verilog, one that a testbench checks against
    the golden model (or, for the AXI blocks and the engine, against cocotbext-axi's models and
    the golden model): none ships unsimulated."""
    from amaranth.back import verilog

    from hw.engine.params import EngineParams, engine_params
    from hw.engine.top import StreamEngine
    from model.config import load_config
    from model.paths import REPO
    from hw.rtl import make_unit
    from sim.runner import without_src
    from sim.units import SIM_TOPS, SIM_UNITS

    simulated = [c for spec in [*SIM_UNITS.values(), *SIM_TOPS.values()]
                 if not getattr(spec, "ecp5", False) for c in _components(spec.factory())]
    texts: dict[int, str] = {}
    cnn = load_config(REPO / "configs" / "engine_cnn_mnist.toml").build_spec((1, 28, 28))
    for name, (cls, params) in UNITS.items():
        same_class = [c for c in simulated if type(c) is cls]
        if cls is StreamEngine:  # (its Verilog: minutes) the MLPs' engine is the AXI testbench's,
            # the CNNs' the one the CNN co-simulations generate
            p = params.get("params", EngineParams())
            assert any(c.p == p for c in same_class) or p == engine_params(None, cnn), name
            continue
        unit = make_unit(name)
        text = without_src(verilog.convert(unit, name="u"))
        for c in same_class:  # each simulated component converted once (and so elaborated)
            if id(c) not in texts:
                texts[id(c)] = without_src(verilog.convert(c, name="u"))
        assert text in [texts[id(c)] for c in same_class], name
