"""The control and status register map of the streaming engine, one declarative table:
the RTL register file (`hw.regs.AxiLiteRegisters`), the host driver and the documentation all come
from it. A host writes the program's base address, sets START, and waits for DONE (or the
interrupt); ERROR and ERROR_CODE say why a run stopped; the ID/parameter block tells the host
what this instance is: every generation parameter (`EngineParams`: array side, operand widths,
scratchpad depths, bus width, divider and scaling limits), one constant register each, so a program
compiled for another instance is refused before it runs; CYCLES counts the clock cycles of the last
run, and the *_CYCLES counters split them by unit.
"""
from __future__ import annotations

from dataclasses import fields

from hw.regs import AxiLiteRegisters, Constant, Register, RegisterMap

from .params import EngineParams

ENGINE_ID = 0x4E49_5452  # "NITR"
STATUS_DONE, STATUS_ERROR = 1 << 0, 1 << 1
ERR_BUS = 1  # an AXI error response (SLVERR, DECERR) on the memory port
ERR_OPCODE = 2  # a program command with an unknown opcode
ERR_ALIGN = 3  # prog_base, or a transfer's address or row stride, not a multiple of the bus word
ERROR_NAMES = {ERR_BUS: "AXI error response", ERR_OPCODE: "unknown opcode",
               ERR_ALIGN: "address not aligned to the bus word"}
# The sequencer's counters that split a run's cycles by unit: a read-only register each, from
# UNIT_COUNTERS_BASE on; name -> what it counts.
UNIT_COUNTERS_BASE = 0x048
UNIT_COUNTERS = {
    "fetch_cycles": "cycles fetching program commands",
    "load_cycles": "cycles of LOAD transfers",
    "store_cycles": "cycles a STORE was queued or moving (beside the other commands)",
    "run_cycles": "cycles the core ran (RUN; overlaps the transfers)",
    "wait_cycles": "cycles the sequencer waited for the core or the stores (SWAP, SYNC, END, a "
                   "full store queue)",
}
# The parameter block: one constant register per EngineParams field, param_<field>, in the
# dataclass's order. Drivers hold these offsets: a field added or moved needs a new MAP_VERSION
# (the test pins the order of version 5).
PARAMS_BASE = 0x080
MAP_VERSION = 5


def control_map(p: EngineParams | None = None) -> RegisterMap:
    p = p or EngineParams()
    return RegisterMap((
        Register("id", 0x000, "const", reset=ENGINE_ID, doc="engine identifier 'NITR'"),
        Register("version", 0x004, "const", reset=MAP_VERSION,
                 doc="register-map and command-format version (5: every generation parameter "
                     "in the parameter block)"),
        Register("ctrl", 0x010, "pulse", width=1,
                 doc="write 1: start the program at prog_base (ignored while busy)"),
        Register("status", 0x014, "w1c", width=2, doc="[0] done, [1] error; write 1 to clear"),
        Register("irq_enable", 0x018, "rw", width=2, doc="interrupt on status bits [0] done, [1] error"),
        Register("busy", 0x01C, "ro", width=1,
                 doc="a program is running; after an error, until every transfer it started ended"),
        Register("error_code", 0x020, "ro", width=8, doc="why the last run stopped (0: no error)"),
        Register("prog_base_lo", 0x030, "rw",
                 doc="byte address of the command program (a multiple of the bus word), bits 31:0"),
        Register("prog_base_hi", 0x034, "const", reset=0,
                 doc="bits 63:32: 0 (the memory port's addresses are 32 bits)"),
        Register("cycles_lo", 0x040, "ro", doc="clock cycles of the last run, bits 31:0"),
        Register("cycles_hi", 0x044, "ro", doc="bits 63:32"),
        *(Register(name, UNIT_COUNTERS_BASE + 4 * k, "ro", doc=doc)
          for k, (name, doc) in enumerate(UNIT_COUNTERS.items())),
        *(Register(f"param_{f.name}", PARAMS_BASE + 4 * k, "const", reset=getattr(p, f.name),
                   doc=f"generation parameter `EngineParams.{f.name}`")
          for k, f in enumerate(fields(p))),
    ), irq=("status", "irq_enable"), constants=(
        Constant("status_done", STATUS_DONE, "status bit: the run ended"),
        Constant("status_error", STATUS_ERROR, "status bit: the run stopped on an error (error_code)"),
        *(Constant(name, code, f"error_code: {ERROR_NAMES[code]}")
          for name, code in (("err_bus", ERR_BUS), ("err_opcode", ERR_OPCODE), ("err_align", ERR_ALIGN))),
    ))


class ControlRegisters(AxiLiteRegisters):
    """The engine's register file: `control_map` behind an AXI4-Lite port."""

    def __init__(self, params: EngineParams | None = None) -> None:
        super().__init__(control_map(params))
