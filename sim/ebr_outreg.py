"""Pack registers that follow an ECP5 block RAM read port into the RAM's own output register.

Why: yosys `synth_ecp5` maps memories to DP16KD block RAMs with REGMODE "NOREG" only. Without its
output register a DP16KD's clock-to-output is 5.83 ns in nextpnr-ecp5's speed-6 timing model, and
the shortest route out of the block RAM tile to a slice register is ~1.04 ns: 6.9 ns, so no design
that reads a block RAM into the fabric reaches 150 MHz (measured: a lone 1024 x 16 bank, 145.3 MHz
for every seed tried). With REGMODE "OUTREG" the clock-to-output is 0.96 ns. The engine's memories
(hw.engine.memory) end every RAM read in a plain register for exactly this purpose; this pass, run
on yosys' JSON netlist before nextpnr, moves those registers into the RAMs, as vendor tools do.

A DP16KD read port is packed only when the result is the same circuit: REGMODE "NOREG", output-
register reset tied to 0, its clock enable to 1, clock not inverted; every used data output drives
exactly one load, the D input of a TRELLIS_FF on the same clock with no clock enable, no set/reset
and GSR disabled. The flip-flops are removed and their outputs driven by the RAM. A RAM in the
512 x 36 pseudo-dual-port mode (yosys' map of memories of at most 512 words) reads on DOA and DOB
together: it is packed as one, only when both ports share one clock, with both REGMODEs set and
both output clock enables tied to 1, as Lattice's own tools configure a PDPW16KD with OUTREG.

yosys ships no simulation model of DP16KD (its cells_sim entry is a black box), so this rewrite is
checked structurally (tests/test_ebr_outreg.py), not in simulation; the engine's Verilator runs
use the behavioural memories, where the register is an ordinary one.
"""
from __future__ import annotations

import re
from collections import defaultdict

# DP16KD read ports: (REGMODE parameter, data-output port prefix, clock, output enable, output reset)
_PORTS = [("REGMODE_A", "DOA", "CLKA", "OCEA", "RSTA"), ("REGMODE_B", "DOB", "CLKB", "OCEB", "RSTB")]


def _pdp(cell: dict) -> bool:
    """A DP16KD in 512 x 36 pseudo-dual-port mode (yosys' map of memories of at most 512 words):
    its 36 read bits leave on DOA and DOB together."""
    return any(int(cell["parameters"].get(k, "0"), 2) == 36 for k in ("DATA_WIDTH_A", "DATA_WIDTH_B"))


def _plain_ff(cell: dict, clk) -> bool:
    """A TRELLIS_FF that is a bare D flip-flop on clock `clk`."""
    p, c = cell["parameters"], cell["connections"]
    ce_always = p.get("CEMUX", "1").strip() == "1" or c.get("CE", ["1"]) == ["1"]
    no_sr = c.get("LSR", ["0"]) == ["0"] and p.get("LSRMUX", "LSR").strip() == "LSR"
    return (ce_always and no_sr and c.get("CLK") == clk and p.get("CLKMUX", "CLK").strip() == "CLK"
            and p.get("GSR", "ENABLED").strip() == "DISABLED")


def pack_ebr_output_registers(netlist: dict, top: str) -> dict[str, int]:
    """Rewrite `netlist` (yosys write_json output) in place; returns counts of what was packed."""
    mod = netlist["modules"][top]
    cells = mod["cells"]
    loads: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "input":
                continue
            for b in bits:
                if isinstance(b, int):
                    loads[b].append((name, port))
    for port in mod["ports"].values():  # a top-level output is a load no register can replace
        if port["direction"] != "input":
            for b in port["bits"]:
                if isinstance(b, int):
                    loads[b].append(("<port>", ""))

    packed_ports = packed_ffs = 0
    for cell in list(cells.values()):  # (flip-flops are deleted on the way)
        if cell["type"] != "DP16KD":
            continue
        # a pseudo-dual-port RAM reads 36 bits on DOA and DOB together: one unit, both registers
        for group in ([_PORTS] if _pdp(cell) else [[p] for p in _PORTS]):
            ffs = _packable(cell, group, cells, loads)
            if not ffs:
                continue
            con = cell["connections"]
            for p, ffname in ffs:
                con[p] = list(cells[ffname]["connections"]["Q"])
                del cells[ffname]
            for regmode, _, _, oce, _ in group:
                cell["parameters"][regmode] = "OUTREG"
                con[oce] = ["1"]  # yosys ties a PDP RAM's OCEA to 0 (port A only writes there)
            packed_ports += 1
            packed_ffs += len(ffs)
    return {"ebr_ports_packed": packed_ports, "registers_packed": packed_ffs}


def _packable(cell: dict, group: list, cells: dict, loads: dict) -> list[tuple[str, str]]:
    """(data output, flip-flop) pairs of a read port (or a PDP RAM's two halves) whose registers
    can move into the RAM; [] when any condition of the module docstring fails."""
    con, par = cell["connections"], cell["parameters"]
    clocks = {tuple(con.get(clk, [])) for _, _, clk, _, _ in group}
    if len(clocks) != 1:  # a PDP RAM's halves: only when both ports share the read clock
        return []
    clk_bits = list(clocks.pop())
    ffs = []
    for regmode, do, clk, oce, rst in group:
        if (par.get(regmode, "NOREG").strip() != "NOREG" or par.get(f"{clk}MUX", clk).strip() == "INV"
                or con.get(rst) != ["0"] or (con.get(oce) != ["1"] and len(group) == 1)):
            return []
        for p in (p for p in con if re.fullmatch(rf"{do}\d+", p)):
            ld = loads.get(con[p][0], []) if isinstance(con[p][0], int) else []
            if not ld:
                continue  # an unused output
            if len(ld) != 1 or ld[0][1] != "DI":
                return []
            ff = cells[ld[0][0]]
            if ff["type"] != "TRELLIS_FF" or not _plain_ff(ff, clk_bits):
                return []
            ffs.append((p, ld[0][0]))
    return ffs
