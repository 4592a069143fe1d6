"""The streaming engine's program: what the sequencer (`hw.engine.top`) fetches from external memory.

A program is a list of 128-bit commands at `prog_base` (two beats of a 64-bit bus, one of 128):

  LOAD  sel spad rows row_words ext stride across : `rows` rows of `row_words` scratchpad words
        from external memory (row r at byte `ext + r * stride`) into scratchpad `sel`, word c of
        row r at `spad + r * row_words + c` (a tile becomes contiguous on chip), or with `across`
        at `spad + c * rows + r` (a block of weight panels becomes row-major on chip)
  STORE sel spad rows row_words ext stride across : the same transfer in the other direction,
          handed to the store unit, which moves it while the sequencer goes on (AXI's write
          channels are separate from its reads): the next STORE waits for the unit, SWAP,
          SYNC and END for all of them
  SYNC  : wait until the STOREs before it have finished (before a LOAD that writes a scratchpad
          region a STORE still reads, or reads memory a STORE still writes)
  SWAP  : wait until the core is idle, then exchange the scratchpads' two sets: what LOADs put
          in the host's set is the core's, and what the core wrote is the host's to STORE
  RUN   : start the GEMM commands in the core's command scratchpad (SEL_CMEM), up to their END,
          on the MAC array and its output pipelines, and go on with the next command: LOADs and
          STOREs of the host's set overlap the run (double buffering)
  END   : wait until the core is idle; the program is finished: DONE rises (and the interrupt)

In external memory a scratchpad word of `w` bits takes ceil(w / bus_bits) bus beats, little-endian
(lane 0 in the lowest bits), the unused bits zero (`beats_per_word`, `ext_word_bytes`): with a
128-bit bus a 64-bit activation word fills half a beat, so that every transfer stays beat-aligned.
The layout is declared once here and used by the RTL and by the host (`pack`).
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import unsigned
from amaranth.lib import data

from .counters import CTR_BITS
from .params import SEL_CMEM, SEL_CTR, EngineParams

SOP_END, SOP_LOAD, SOP_STORE, SOP_RUN, SOP_SWAP, SOP_SYNC = 0, 1, 2, 3, 4, 5
PROGRAM_WORD_BITS = 128
EXT_ADDR_W = 32

transfer_layout = data.StructLayout({
    "sel": unsigned(4), "spad": unsigned(16), "rows": unsigned(16), "row_words": unsigned(16),
    "ext": unsigned(EXT_ADDR_W), "stride": unsigned(EXT_ADDR_W), "across": unsigned(1),
})
program_layout = data.StructLayout({"op": unsigned(3), "xfer": transfer_layout})
assert program_layout.size <= PROGRAM_WORD_BITS


def scratch_word_bits(p: EngineParams, sel: int) -> int:
    """Bits of one word of scratchpad `sel` (the performance counters read as 40-bit words)."""
    if sel == SEL_CTR:
        return CTR_BITS
    if sel == SEL_CMEM:
        return 64
    return p.lanes * p.lane_width(sel)


def beats_per_word(p: EngineParams, sel: int) -> int:
    return -(-scratch_word_bits(p, sel) // p.bus_bits)


def ext_word_bytes(p: EngineParams, sel: int) -> int:
    """Bytes one word of scratchpad `sel` takes in external memory (whole bus beats)."""
    return beats_per_word(p, sel) * p.bus_bits // 8


@dataclass(frozen=True)
class Transfer:
    """One 2-D block between external memory and a scratchpad (LOAD or STORE)."""

    sel: int
    spad: int
    rows: int
    row_words: int
    ext: int
    stride: int
    across: int = 0

    @property
    def words(self) -> int:
        return self.rows * self.row_words


@dataclass(frozen=True)
class Command:
    op: int
    xfer: Transfer | None = None

    def pack(self) -> int:
        """The command as a PROGRAM_WORD_BITS-bit integer of `program_layout`."""
        fields = {"op": self.op}
        if self.xfer is not None:
            fields["xfer"] = self.xfer.__dict__
        return _pack(program_layout, fields)


def _pack(layout: data.StructLayout, fields: dict) -> int:
    value = 0
    for name, f in layout:
        v = fields.get(name, 0)
        if isinstance(f.shape, data.StructLayout):
            v = _pack(f.shape, v or {})
        if not 0 <= v < (1 << f.width):
            raise ValueError(f"program field {name} = {v} does not fit {f.width} bits")
        value |= v << f.offset
    return value


def bus_words(value: int, n: int) -> list[int]:
    """An integer as n 64-bit words, least significant first (how memory holds commands)."""
    return [(value >> (64 * k)) & ((1 << 64) - 1) for k in range(n)]


def load(t: Transfer) -> Command:
    return Command(SOP_LOAD, t)


def store(t: Transfer) -> Command:
    return Command(SOP_STORE, t)


RUN = Command(SOP_RUN)
SWAP = Command(SOP_SWAP)
SYNC = Command(SOP_SYNC)
END = Command(SOP_END)
