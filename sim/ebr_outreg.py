"""Pack registers that follow an ECP5 block RAM read port into the RAM's own output register.

Why: yosys `synth_ecp5` maps memories to DP16KD block RAMs with REGMODE "NOREG" only. Without its
output register a DP16KD's clock-to-output is 5.83 ns in nextpnr-ecp5's speed-6 timing model, and
the shortest route out of the block RAM tile to a slice register is ~1.04 ns: 6.9 ns, so no design
that reads a block RAM into the fabric reaches 150 MHz (measured: a lone 1024 x 16 bank, 145.3 MHz
for every seed tried). With REGMODE "OUTREG" the clock-to-output is 0.96 ns. The engine's memories
(hw.engine.memory) end every RAM read in a plain register for exactly this purpose; this pass, run
on yosys' JSON netlist before nextpnr, moves those registers into the RAMs, as vendor tools do.

A DP16KD read port (not the 36-bit pseudo-dual-port mode yosys uses for memories of at most 512
words; see _pdp) is packed only when the result is the same circuit: REGMODE "NOREG", output-register
reset tied to 0, its clock enable to 1, clock not inverted; every used data output drives exactly one load, the D
input of a TRELLIS_FF on the same clock with no clock enable, no set/reset and GSR disabled. The
flip-flops are removed and their outputs driven by the RAM.

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
    """A DP16KD in 512 x 36 pseudo-dual-port mode (yosys' map of shallow, wide memories): its 36
    read bits leave on both DOA and DOB under port B's clock; which output-register controls
    apply there is not documented well enough to rewrite it, so it stays as it is."""
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
        if cell["type"] != "DP16KD" or _pdp(cell):
            continue
        for regmode, do, clk, oce, rst in _PORTS:
            if cell["parameters"].get(regmode, "NOREG").strip() != "NOREG":
                continue
            con = cell["connections"]
            inverted = cell["parameters"].get(f"{clk}MUX", clk).strip() == "INV"
            if con.get(oce) != ["1"] or con.get(rst) != ["0"] or inverted:
                continue
            outs = [p for p in con if re.fullmatch(rf"{do}\d+", p) and isinstance(con[p][0], int)
                    and loads.get(con[p][0])]
            if not outs:
                continue
            ffs = []
            for p in outs:
                ld = loads[con[p][0]]
                if len(ld) != 1 or ld[0][1] != "DI" or ld[0][0] == "<port>":
                    break
                ff = cells[ld[0][0]]
                if ff["type"] != "TRELLIS_FF" or not _plain_ff(ff, con[clk]):
                    break
                ffs.append((p, ld[0][0]))
            else:
                for p, ffname in ffs:
                    con[p] = list(cells[ffname]["connections"]["Q"])
                    del cells[ffname]
                cell["parameters"][regmode] = "OUTREG"
                packed_ports += 1
                packed_ffs += len(ffs)
    return {"ebr_ports_packed": packed_ports, "registers_packed": packed_ffs}
