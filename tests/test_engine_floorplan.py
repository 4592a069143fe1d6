# amaranth: UnusedElaboratable=no
"""sim.engine.floorplan on a small design named like the engine (engine.core.mac, .pool,
.spads.amem_c), placed and routed by nextpnr at a clock it cannot meet: every placed cell gets a
unit, the late register inputs it counts are the ones `synth.late_endpoints` counts, and the long
connections (its pins sit at the die's edge) are measured from the placement, routed or not."""
import json

from amaranth import Elaboratable, Module, Signal
from amaranth.back import verilog

from sim.engine.floorplan import (
    CONSTANTS, DMA, LONG_TILES, OTHER, cell_tiles, floorplan, floorplan_files, long_connections, unit_of,
)
from sim.engine.synth import _nextpnr, late_endpoints
from sim.synth import ECP5, synth_ecp5


def test_unit_names():
    assert unit_of("engine.core.mac.pe3_prod_TRELLIS_FF_Q_2") == "mac"
    assert unit_of("\\engine.core.pool$187.pool_pos_ff1_9") == "pool"
    assert unit_of("engine.core.spads.amem_c.set0.bank1.mem") == "amem_c"
    assert unit_of("engine.core.spads.host_wr3_addr_TRELLIS_FF_Q") == "spads"
    assert unit_of("engine.core.ops.rows.lane2.q") == "ops.rows"
    assert unit_of("engine.reader.buffer.mem") == DMA
    assert unit_of("$nextpnr_CCU2C_1$CCU2_COMB1") == OTHER


class _Part(Elaboratable):
    def __init__(self, kind: str) -> None:
        self.kind, self.a, self.b, self.o = kind, Signal(16), Signal(16), Signal(32)

    def elaborate(self, platform):
        m = Module()
        ra, rb = Signal(16), Signal(16)
        m.d.sync += [ra.eq(self.a), rb.eq(self.b)]
        m.d.sync += self.o.eq(ra * rb + self.o if self.kind == "mac" else (ra > rb) * (ra ^ rb))
        return m


class _Level(Elaboratable):
    def __init__(self, children: dict) -> None:
        self.children = children

    def elaborate(self, platform):
        m = Module()
        for name, c in self.children.items():
            m.submodules[name] = c
        return m


class _Top(Elaboratable):
    def __init__(self) -> None:
        self.parts = {"mac": _Part("mac"), "pool": _Part("pool"), "amem_c": _Part("pool")}
        self.a, self.b, self.o = Signal(16), Signal(16), Signal(32)

    def elaborate(self, platform):
        m = Module()
        p = self.parts
        m.submodules.engine = _Level({"core": _Level({"mac": p["mac"], "pool": p["pool"],
                                                      "spads": _Level({"amem_c": p["amem_c"]})})})
        m.d.comb += [p["mac"].a.eq(self.a), p["mac"].b.eq(self.b),
                     p["pool"].a.eq(p["mac"].o[:16]), p["pool"].b.eq(p["mac"].o[16:]),
                     p["amem_c"].a.eq(p["pool"].o[:16]), p["amem_c"].b.eq(self.b),
                     self.o.eq(p["amem_c"].o)]
        return m


def _placed(tmp_path, route: bool):
    top = _Top()
    (tmp_path / "top.v").write_text(verilog.convert(top, name="top", ports=[top.a, top.b, top.o],
                                                    platform=ECP5))
    synth_ecp5("read_verilog top.v", "top", tmp_path, json_out="top.json")
    assert _nextpnr(tmp_path, "top.json", 400.0, route=route)


def _check_long(fp: dict, netlist: dict) -> None:
    long = long_connections(netlist, cell_tiles(netlist), LONG_TILES)
    assert fp["long_connections"] == len(long) == sum(p["connections"] for p in fp["long_by_unit_pair"]) > 0
    assert all(d >= LONG_TILES and drv not in CONSTANTS for drv, _, d in long)
    assert max(p["longest_tiles"] for p in fp["long_by_unit_pair"]) == max(d for *_, d in long)


def test_floorplan_of_a_placed_design(tmp_path):
    _placed(tmp_path, route=False)
    fp = floorplan_files(tmp_path, 2.5, "test", "placed.json")
    assert fp["cells_placed"] > 50 and fp["late_inputs"] == 0  # no routed delays yet
    _check_long(fp, json.loads((tmp_path / "placed.json").read_text()))
    assert (tmp_path / "floorplan.png").stat().st_size > 10_000


def test_floorplan_of_a_routed_design(tmp_path):
    _placed(tmp_path, route=True)
    period = 2.5
    fp = floorplan_files(tmp_path, period, "test")
    netlist = json.loads((tmp_path / "routed.json").read_text())
    report = json.loads((tmp_path / "report.json").read_text())
    assert fp == floorplan(netlist, report, period)
    assert (tmp_path / "floorplan.png").stat().st_size > 10_000
    cells = netlist["modules"]["top"]["cells"]
    assert fp["cells_placed"] == sum(1 for c in cells.values() if "NEXTPNR_BEL" in c["attributes"]) > 50
    assert sum(u["cells"] for u in fp["units"].values()) == fp["cells_placed"]
    assert {"mac", "pool", "amem_c"} <= set(fp["units"])
    assert fp["late_inputs"] == late_endpoints(report, period)["count"] > 0
    assert {p["from"] for p in fp["late_by_unit_pair"]} & {"mac", "pool", "amem_c"}
    _check_long(fp, netlist)
