"""sim.ebr_outreg: the registers behind the engine memories' block RAM reads are packed into the
DP16KD output registers, and nothing that would change the circuit is."""
import copy
import json
from collections import Counter

import pytest
from amaranth.back import verilog

from hw.engine.memory import BankedMemory
from sim.ebr_outreg import pack_ebr_output_registers
from sim.synth import ECP5, synth_ecp5

WIDTH = 32


@pytest.fixture(scope="module")
def netlist(tmp_path_factory) -> dict:
    """yosys netlist of a 2-bank memory: bank 0 is two 1024 x 18 DP16KDs, bank 1 (476 words) one
    DP16KD in 512 x 36 pseudo-dual-port mode."""
    wd = tmp_path_factory.mktemp("ebr")
    (wd / "top.v").write_text(verilog.convert(BankedMemory(WIDTH, 1500, 16), name="top", platform=ECP5))
    synth_ecp5("read_verilog top.v", "top", wd, json_out="top.json")
    return json.loads((wd / "top.json").read_text())


def _cells(nl: dict) -> dict:
    return nl["modules"]["top"]["cells"]


def _bank_ff(nl: dict, bank: int) -> str:
    return next(n for n, c in _cells(nl).items() if c["type"] == "TRELLIS_FF" and f"bank{bank}_q" in n)


def test_packs_the_bank_registers(netlist):
    nl = copy.deepcopy(netlist)
    before = Counter(c["type"] for c in _cells(nl).values())
    q_bits = {n: c["connections"]["Q"][0] for n, c in _cells(nl).items()
              if c["type"] == "TRELLIS_FF" and "_q_" in n and n.startswith("bank")}
    assert len(q_bits) == 2 * WIDTH  # bank0_q and bank1_q
    got = pack_ebr_output_registers(nl, "top")
    assert got == {"ebr_ports_packed": 3, "registers_packed": 2 * WIDTH}
    after = Counter(c["type"] for c in _cells(nl).values())
    assert before["TRELLIS_FF"] - after["TRELLIS_FF"] == 2 * WIDTH
    assert not any(n in _cells(nl) for n in q_bits)
    rams = {n: c for n, c in _cells(nl).items() if c["type"] == "DP16KD"}
    # the 1024 x 18 RAMs of bank 0: read port (B) OUTREG, write port untouched
    full = [c for n, c in rams.items() if n.startswith("bank0")]
    assert [c["parameters"]["REGMODE_B"] for c in full] == ["OUTREG", "OUTREG"]
    assert all(c["parameters"]["REGMODE_A"] == "NOREG" for c in full)
    # the 512 x 36 pseudo-dual-port RAM of bank 1: both halves, both output enables on
    (pdp,) = [c for n, c in rams.items() if n.startswith("bank1")]
    assert pdp["parameters"]["REGMODE_A"] == pdp["parameters"]["REGMODE_B"] == "OUTREG"
    assert pdp["connections"]["OCEA"] == pdp["connections"]["OCEB"] == ["1"]
    # the RAMs now drive the removed registers' output nets
    driven = {c["connections"][p][0] for c in rams.values() for p in c["connections"]
              if p.startswith(("DOA", "DOB"))}
    assert set(q_bits.values()) <= driven


@pytest.mark.parametrize("change", ["reset", "enable", "second load", "other clock", "inverted clock",
                                    "pdp port clocks differ"])
def test_leaves_registers_that_are_not_plain(netlist, change):
    nl = copy.deepcopy(netlist)
    cells = _cells(nl)
    ff = cells[_bank_ff(nl, 0)]
    spare = max(b for c in cells.values() for bits in c["connections"].values()
                for b in bits if isinstance(b, int)) + 1
    if change == "reset":
        ff["connections"]["LSR"] = [spare]
    elif change == "enable":
        ff["parameters"]["CEMUX"] = "CE"
        ff["connections"]["CE"] = [spare]
    elif change == "second load":
        other = cells[next(n for n, c in cells.items() if c["type"] == "LUT4")]
        other["connections"]["A"] = [ff["connections"]["DI"][0]]
    elif change == "other clock":
        ff["connections"]["CLK"] = [spare]
    elif change == "inverted clock":
        for c in cells.values():
            if c["type"] == "DP16KD":
                c["parameters"]["CLKBMUX"] = "INV"
    else:
        cells[next(n for n in cells if n.startswith("bank1") and cells[n]["type"] == "DP16KD")][
            "connections"]["CLKA"] = [spare]
    got = pack_ebr_output_registers(nl, "top")
    # the RAM behind the changed register keeps it; the other two RAMs are packed (none with an
    # inverted clock; bank 0's two when bank 1's PDP ports have different clocks)
    assert got["ebr_ports_packed"] == {"inverted clock": 0, "pdp port clocks differ": 2}.get(change, 2)
    assert (ff in _cells(nl).values()) == (change != "pdp port clocks differ")  # bank 0's packed there
    kept = change in ("inverted clock", "pdp port clocks differ")
    assert sum("bank1_q" in n for n in _cells(nl)) == (WIDTH if kept else 0)
