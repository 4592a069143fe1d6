"""LOAD and STORE units: 2-D blocks between external memory (through `hw.dma`) and the host's set
of the double-buffered scratchpads (through the compute core's host ports).

Both issue one DMA command per row (`ext + r * stride`, row_words * beats-per-word beats) and move
the words in order to / from the scratchpad: consecutive addresses from `spad`, or with `across`
word c of row r at `spad + c * rows + r`. A scratchpad word takes 1 to 3 bus beats
(`program.beats_per_word`), lane 0 in the lowest bits.
"""
from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.dma import BEATS_W, command_layout as dma_command_layout
from hw.stream_unit import CreditFIFO

from .params import ADDR_W, SEL_CTR, EngineParams
from .pipeline import Countdown
from .program import EXT_ADDR_W, beats_per_word, transfer_layout
from .scratchpads import HOST_READ_LATENCY

STORE_FIFO_WORDS = 16  # scratchpad words read ahead of the bus (covers the read latency)


def _wpb_table(p: EngineParams):
    """Bus beats per word of every selector (the memories and the counters, SEL_CTR the last)."""
    return Array(Const(beats_per_word(p, s) if s <= SEL_CTR else 1, 2) for s in range(16))


def _max_wpb(p: EngineParams) -> int:
    return max(beats_per_word(p, s) for s in range(SEL_CTR + 1))


class _RowIssue:
    """Shared by both units: the latched transfer and its DMA commands, one per row. A command
    is latched as it is accepted and starts (`armed`) a cycle later, from the latched copy: the
    sequencer's decode is not in front of the units' counters."""

    def __init__(self, m: Module, p: EngineParams, unit) -> None:
        self.x = x = Signal(transfer_layout)
        self.wpb = wpb = Signal(2)
        self.active = Signal()
        self.armed = armed = Signal()  # the cycle after a command was accepted
        # whether it moves anything, decided as it is accepted: no compare behind `armed`
        self.nonempty = nonempty = Signal()
        left = Signal(16)
        more = Signal()  # left != 0, as a register: the DMA command's valid crosses the die
        addr = Signal(EXT_ADDR_W)
        rw = x.row_words
        beats = Signal(BEATS_W)  # a register: only the command mux is between it and the slice
        c = unit.cmd
        accept = c.valid & c.ready
        m.d.comb += c.ready.eq(~self.active & ~armed)
        m.d.sync += armed.eq(accept)
        rows_nz = Signal()
        c_rows_nz = c.payload.rows != 0
        with m.If(accept):
            m.d.sync += [x.eq(c.payload), wpb.eq(_wpb_table(p)[c.payload.sel]), rows_nz.eq(c_rows_nz),
                         nonempty.eq(c_rows_nz & (c.payload.row_words != 0))]
        with m.If(armed):
            m.d.sync += [addr.eq(x.ext), left.eq(x.rows), more.eq(rows_nz),
                         beats.eq(Mux(wpb == 1, rw, Mux(wpb == 2, rw << 1, (rw << 1) + rw))),
                         self.active.eq(nonempty)]
        d = unit.dma_cmd
        m.d.comb += [d.valid.eq(self.active & more), d.payload.addr.eq(addr),
                     d.payload.beats.eq(beats)]
        with m.If(d.valid & d.ready):
            m.d.sync += [addr.eq(addr + x.stride), left.eq(left - 1), more.eq(left != 1)]


def _word_counter(m: Module, x, start, step, name: str):
    """Scratchpad address of each word: `start` loads `x.spad`, each `step` moves to the next word
    of the transfer `x`; returns (address, `step` is the transfer's last word). The row and
    column ends are registered flags (`Countdown`: no compare in front of the address registers)."""
    ptr = Signal(ADDR_W, name=f"{name}_ptr")
    row_ptr = Signal(ADDR_W, name=f"{name}_row_ptr")  # row r's first word (`across`)
    col, row = Countdown(16, f"{name}_col"), Countdown(16, f"{name}_row")
    with m.If(start):
        m.d.sync += [ptr.eq(x.spad), row_ptr.eq(x.spad), *col.restart(x.row_words),
                     *row.restart(x.rows)]
    with m.Elif(step):
        with m.If(col.last):
            m.d.sync += [*col.restart(x.row_words), *row.step(),
                         row_ptr.eq(row_ptr + 1), ptr.eq(Mux(x.across, row_ptr + 1, ptr + 1))]
        with m.Else():
            m.d.sync += [*col.step(), ptr.eq(ptr + Mux(x.across, x.rows, 1))]
    return ptr, col.last & row.last


def _word_beats(m: Module, wpb, restart, step, name: str):
    """The bus beat of a word of `wpb` beats: `restart` (a transfer's first cycle) returns to the
    first, each `step` moves on; returns (beat, `beat` is its word's last). The last-beat flag is
    a register kept with the counter: no compare between a bus handshake and what it enables."""
    beat, last = Signal(2, name=f"{name}_beat"), Signal(name=f"{name}_beat_last")
    with m.If(restart | (step & last)):
        m.d.sync += [beat.eq(0), last.eq(wpb == 1)]
    with m.Elif(step):
        m.d.sync += [beat.eq(beat + 1), last.eq(beat + 2 == wpb)]
    return beat, last


class _TransferUnit(wiring.Component):
    """What both units have: cmd (a transfer), dma_cmd (to the DMA), busy, and the row issue."""

    def __init__(self, p: EngineParams, ports: dict) -> None:
        self.p = p
        super().__init__({"cmd": In(stream.Signature(transfer_layout)),
                          "dma_cmd": Out(stream.Signature(dma_command_layout(EXT_ADDR_W))),
                          "busy": Out(1), **ports})

    def _issue(self) -> tuple[Module, _RowIssue]:
        m = Module()
        return m, _RowIssue(m, self.p, self)


class LoadUnit(_TransferUnit):
    """External memory -> scratchpad. Ports: cmd (a transfer), dma_cmd / dma_data (to a DmaReader
    that also serves the sequencer's fetch: the unit takes the beats that come while it is active,
    which are those of its own commands), the core's host write port (wr_*), busy."""

    def __init__(self, p: EngineParams) -> None:
        super().__init__(p, {"dma_data": In(stream.Signature(unsigned(p.bus_bits), always_ready=True)),
                             "wr_en": Out(1), "wr_sel": Out(4), "wr_addr": Out(ADDR_W),
                             "wr_data": Out(p.host_data_bits)})

    def elaborate(self, platform) -> Module:
        m, iss = self._issue()
        p, bb, x = self.p, self.p.bus_bits, iss.x
        gather = Signal(_max_wpb(p) * bb)
        fire = self.dma_data.valid & iss.active
        beat, beat_last = _word_beats(m, iss.wpb, iss.armed, fire, "ld")
        word_done = fire & beat_last
        ptr, last = _word_counter(m, x, iss.armed, word_done, "ld")
        nxt = Signal.like(gather)
        m.d.comb += nxt.eq(gather)
        with m.Switch(beat):
            for k in range(_max_wpb(p)):
                with m.Case(k):
                    m.d.comb += nxt.word_select(k, bb).eq(self.dma_data.payload)
        with m.If(fire):
            m.d.sync += gather.eq(nxt)
        m.d.sync += [self.wr_en.eq(word_done), self.wr_sel.eq(x.sel), self.wr_addr.eq(ptr),
                     self.wr_data.eq(nxt[:p.host_data_bits])]
        with m.If(word_done & last):
            m.d.sync += iss.active.eq(0)
        m.d.comb += self.busy.eq(iss.active | iss.armed | self.wr_en)
        return m


class StoreUnit(_TransferUnit):
    """Scratchpad -> external memory. Ports: cmd (a transfer), the core's host read port (rd_*,
    data `HOST_READ_LATENCY` cycles after the address), dma_cmd / dma_data (to a DmaWriter), busy.
    Reads run ahead of the bus by at most `STORE_FIFO_WORDS` words (a credit count), so the
    free-running read pipeline never overruns the FIFO. The reads (by the scratchpads) and the
    FIFO (by the write port) lie apart: the words cross through one more register, and a word
    sent returns its credit a cycle later, so neither side's logic takes the other's signals."""

    def __init__(self, p: EngineParams) -> None:
        super().__init__(p, {"rd_sel": Out(4), "rd_addr": Out(ADDR_W), "rd_data": In(p.word_bits),
                             "dma_data": Out(stream.Signature(unsigned(p.bus_bits)))})

    def elaborate(self, platform) -> Module:
        m, iss = self._issue()
        p, bb, x = self.p, self.p.bus_bits, iss.x
        reading = Signal()
        owed = Signal(range(STORE_FIFO_WORDS + 1))  # words read and not yet sent
        issue = reading & (owed < STORE_FIFO_WORDS)
        ptr, last = _word_counter(m, x, iss.armed, issue, "st")
        with m.If(iss.armed):
            m.d.sync += reading.eq(iss.nonempty)
        with m.Elif(issue & last):
            m.d.sync += reading.eq(0)
        m.d.comb += [self.rd_sel.eq(x.sel), self.rd_addr.eq(ptr)]
        pipe = Signal(HOST_READ_LATENCY + 1)
        word = Signal(len(self.rd_data))
        m.d.sync += [pipe.eq(pipe << 1 | issue), word.eq(self.rd_data)]
        m.submodules.fifo = fifo = CreditFIFO(_max_wpb(p) * bb, STORE_FIFO_WORDS, banks=_max_wpb(p))
        m.d.comb += [fifo.w_en.eq(pipe[-1]), fifo.w_data.eq(word)]
        out = self.dma_data
        send = out.valid & out.ready
        beat, beat_last = _word_beats(m, iss.wpb, iss.armed, send, "st")
        word_sent = send & beat_last
        m.d.comb += [out.valid.eq(fifo.r_rdy), out.payload.eq(fifo.r_data.word_select(beat, bb)),
                     fifo.r_en.eq(word_sent)]
        credit = Signal()
        owed_next = Signal.like(owed)
        settled = Signal(init=1)  # owed == 0 as a register: no compare in the end's enable
        m.d.comb += owed_next.eq(owed + issue - credit)
        m.d.sync += [credit.eq(word_sent), owed.eq(owed_next), settled.eq(owed_next == 0)]
        with m.If(iss.active & ~reading & ~iss.armed & settled & ~self.dma_cmd.valid):
            m.d.sync += iss.active.eq(0)
        m.d.comb += self.busy.eq(iss.active | iss.armed)
        return m
