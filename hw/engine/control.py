"""The control and status register map of the streaming engine (issue 13), one declarative table:
the RTL register file (`hw.regs.AxiLiteRegisters`), the host driver and the documentation all come
from it. A host writes the program's base address, sets START, and waits for DONE (or the
interrupt); ERROR and ERROR_CODE say why a run stopped; the ID/parameter block tells the host
what this instance can run; CYCLES counts the clock cycles of the last run.
"""
from __future__ import annotations

from hw.regs import AxiLiteRegisters, Register, RegisterMap

ENGINE_ID = 0x4E49_5452  # "NITR"
STATUS_DONE, STATUS_ERROR = 1 << 0, 1 << 1


def control_map(array_side: int = 8, bus_bits: int = 64, version: int = 2) -> RegisterMap:
    return RegisterMap((
        Register("id", 0x000, "const", reset=ENGINE_ID, doc="engine identifier 'NITR'"),
        Register("version", 0x004, "const", reset=version, doc="register-map version"),
        Register("params", 0x008, "const", width=16, reset=(array_side << 8) | (bus_bits // 8),
                 doc="[15:8] MAC array side, [7:0] bus bytes per beat"),
        Register("ctrl", 0x010, "pulse", width=1, doc="write 1: start the program at prog_base"),
        Register("status", 0x014, "w1c", width=2, doc="[0] done, [1] error; write 1 to clear"),
        Register("irq_enable", 0x018, "rw", width=2, doc="interrupt on status bits [0] done, [1] error"),
        Register("busy", 0x01C, "ro", width=1, doc="a program is running"),
        Register("error_code", 0x020, "ro", width=8, doc="why the last run stopped (0: no error)"),
        Register("prog_base_lo", 0x030, "rw", doc="byte address of the command program, bits 31:0"),
        Register("prog_base_hi", 0x034, "rw", doc="bits 63:32"),
        Register("cycles_lo", 0x040, "ro", doc="clock cycles of the last run, bits 31:0"),
        Register("cycles_hi", 0x044, "ro", doc="bits 63:32"),
    ), irq=("status", "irq_enable"))


class ControlRegisters(AxiLiteRegisters):
    """The engine's register file: `control_map` behind an AXI4-Lite port."""

    def __init__(self, array_side: int = 8, bus_bits: int = 64) -> None:
        super().__init__(control_map(array_side, bus_bits))
