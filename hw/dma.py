"""DMA between AXI4 memory and `amaranth.lib.stream` streams: INCR bursts, several in flight,
back-pressure honoured on every channel.

A command is {addr, beats}: `beats` bus words from the byte address `addr` (aligned to a word; a
misaligned command is dropped and sets `error`, which stays set until `clear`). `BurstSplitter` cuts commands into
bursts of at most `max_burst` beats that never cross a 4 KiB boundary. `DmaReader` issues them on
AR while fewer than `max_outstanding` are unanswered and its read buffer has room for every beat
asked for, so it holds `rready` high: the consumer's back-pressure stops at the buffer and never
reaches the bus (an R handshake that depends on the consumer is a path from deep in the design
to the pins). `DmaWriter` issues AW the same way, sends each issued burst's beats from its `data`
stream on W with `wlast` on the burst's last beat, and counts B responses. A non-OKAY response
sets `error`. Every AXI transaction uses ID 0, so responses return in order.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import (
    BOUNDARY, BURST_INCR, MAX_BURST_BEATS, RESP_OKAY, AxiRegisterSlice, axi4, connect_channels,
)
from .stream_unit import CreditFIFO

BEATS_W = 24  # beats per command: up to 16 Mi bus words


def command_layout(addr_width: int) -> data.StructLayout:
    return data.StructLayout({"addr": unsigned(addr_width), "beats": unsigned(BEATS_W)})


def _check(max_burst: int, max_outstanding: int) -> None:
    if not 1 <= max_burst <= MAX_BURST_BEATS or max_burst & (max_burst - 1):
        raise ValueError(f"max_burst must be a power of two in 1..{MAX_BURST_BEATS}, got {max_burst}")
    if not 1 <= max_outstanding <= 64:
        raise ValueError(f"max_outstanding must be in 1..64, got {max_outstanding}")


class BurstSplitter(wiring.Component):
    """Commands in, bursts {addr, len (AXI: beats - 1)} out; `misaligned` pulses for a dropped
    command. A three-stage pipe, so that a run of short commands (the rows of a strided 2-D
    transfer) leaves one burst per cycle: s0 holds a command (or the rest of one), s1 its 4 KiB
    distance and clipped remainder, the output register the burst (their minimum). A skid
    register behind the output takes a burst formed while the output waits, so the pipe
    advances on its own registers: the address channel's ready only loads the output and the
    skid, and the payload is stable while `valid` waits. The rest of a command cut into several
    bursts re-enters s0 the cycle after its burst is formed (three cycles per burst, hidden
    under its data beats); a new command enters s0 only when no rest can be owed, which keeps
    the bursts in order."""

    def __init__(self, addr_width: int, data_width: int, max_burst: int) -> None:
        self.addr_width, self.beat_bytes, self.max_burst = addr_width, data_width // 8, max_burst
        super().__init__({
            "cmd": In(stream.Signature(command_layout(addr_width))),
            "burst": Out(stream.Signature(data.StructLayout({"addr": unsigned(addr_width),
                                                             "len": unsigned(8)}))),
            "misaligned": Out(1),
            "active": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        AW, shift = self.addr_width, self.beat_bytes.bit_length() - 1
        # Narrow arithmetic only: beats to the 4 KiB boundary fit `small` bits, and so does a
        # remainder once its upper bits are known to be zero (an OR, no carry chain).
        small = (BOUNDARY // self.beat_bytes).bit_length()

        def to_boundary(addr):
            return (BOUNDARY - addr[:12]) >> shift

        def one_burst(addr, beats):  # at most max_burst beats, none past the 4 KiB boundary
            # beats <= to_boundary(addr) as one adder (addr is aligned): no chain behind a chain
            page_end = addr[shift:12] + beats[:small]
            return ~beats[small:].any() & (beats[:small] <= self.max_burst) & (
                page_end <= BOUNDARY >> shift)

        # s0: a command, or the rest of one; `single`: known to be one burst (a new command)
        s0_v, s0_single = Signal(), Signal()
        s0_addr, s0_rem = Signal(AW), Signal(BEATS_W)
        # s1: its 4 KiB distance and clipped remainder; `last`: all of it fits one burst
        s1_v, s1_last = Signal(), Signal()
        s1_addr, s1_rem = Signal(AW), Signal(BEATS_W)
        s1_tb, s1_beats = Signal(small), Signal(small)
        # the output register, its skid, the burst last formed and the rest it leaves (re-enters
        # s0 next cycle)
        o_v, o_addr, o_n = Signal(), Signal(AW), Signal(range(self.max_burst + 1))
        k_v, k_addr, k_n = Signal(), Signal(AW), Signal(range(self.max_burst + 1))
        f_addr, f_n = Signal(AW), Signal(range(self.max_burst + 1))
        rest_v, rest_rem = Signal(), Signal(BEATS_W)

        s1_adv = s1_v & ~k_v
        s0_adv = s0_v & (~s1_v | s1_adv)
        # no rest owed by s1 or the last burst (a rest enters an empty s0), or s0 leaves as one burst
        m.d.comb += [
            self.cmd.ready.eq(~rest_v & ((~s0_v & ~(s1_v & ~s1_last)) | (s0_adv & s0_single))),
            self.burst.valid.eq(o_v), self.burst.payload.addr.eq(o_addr),
            self.burst.payload.len.eq(o_n - 1),
            self.active.eq(s0_v | s1_v | o_v | k_v | rest_v),
        ]
        n = Mux(s1_tb < s1_beats, s1_tb, s1_beats)
        with m.If(self.burst.ready | ~o_v):
            with m.If(k_v):
                m.d.sync += [o_v.eq(1), o_addr.eq(k_addr), o_n.eq(k_n), k_v.eq(0)]
            with m.Else():
                m.d.sync += [o_v.eq(s1_adv), o_addr.eq(s1_addr), o_n.eq(n)]
        with m.Elif(s1_adv):
            m.d.sync += [k_v.eq(1), k_addr.eq(s1_addr), k_n.eq(n)]
        m.d.sync += rest_v.eq(0)
        with m.If(s1_adv):
            m.d.sync += [f_addr.eq(s1_addr), f_n.eq(n), rest_v.eq(~s1_last), rest_rem.eq(s1_rem),
                         s1_v.eq(0)]
        with m.If(s0_adv):
            fits = ~s0_rem[small:].any()
            m.d.sync += [
                s1_v.eq(1), s1_addr.eq(s0_addr), s1_rem.eq(s0_rem), s1_tb.eq(to_boundary(s0_addr)),
                s1_last.eq(one_burst(s0_addr, s0_rem)),
                s1_beats.eq(Mux(fits & (s0_rem[:small] < self.max_burst), s0_rem[:small],
                                self.max_burst)),
                s0_v.eq(0),
            ]
        with m.If(rest_v):
            m.d.sync += [s0_v.eq(1), s0_single.eq(0), s0_addr.eq(f_addr + (f_n << shift)),
                         s0_rem.eq(rest_rem - f_n)]
        # s0's registers take every accepted command; only s0_v depends on whether it is kept
        # (aligned, not empty), so those compares are not in front of their enables
        c = self.cmd.payload
        aligned = c.addr[:shift] == 0
        m.d.sync += self.misaligned.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [s0_v.eq(aligned & (c.beats != 0)), s0_addr.eq(c.addr), s0_rem.eq(c.beats),
                         s0_single.eq(one_burst(c.addr, c.beats)), self.misaligned.eq(~aligned)]
        return m


class _Dma(wiring.Component):
    """What both directions share: parameters, the splitter, the outstanding-burst limit."""

    def __init__(self, addr_width: int, data_width: int, id_width: int, max_burst: int,
                 max_outstanding: int, ports: dict) -> None:
        _check(max_burst, max_outstanding)
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        self.max_burst, self.max_outstanding = max_burst, max_outstanding
        super().__init__({"cmd": In(stream.Signature(command_layout(addr_width))),
                          "busy": Out(1), "error": Out(1), "clear": In(1), **ports})

    def _issue(self, m: Module, valid, ready, addr, length, gate=1):
        """Splitter -> address channel while fewer than max_outstanding bursts are unanswered and
        `gate` is open. Both conditions only close on this channel's own handshake, so once valid
        rises it stays up until the handshake, as AXI requires.
        Returns (splitter, issued pulse, outstanding counter)."""
        m.submodules.split = split = BurstSplitter(self.addr_width, self.data_width, self.max_burst)
        with m.If(self.clear):  # an error in the same cycle still sets `error` (assigned below)
            m.d.sync += self.error.eq(0)
        wiring.connect(m, wiring.flipped(self.cmd), split.cmd)
        outstanding = Signal(range(self.max_outstanding + 1))
        open_ = (outstanding < self.max_outstanding) & gate
        issued = split.burst.valid & split.burst.ready
        m.d.comb += [valid.eq(split.burst.valid & open_), split.burst.ready.eq(ready & open_),
                     addr.eq(split.burst.payload.addr), length.eq(split.burst.payload.len)]
        with m.If(split.misaligned):
            m.d.sync += self.error.eq(1)
        return split, issued, outstanding


class DmaReader(_Dma):
    """Memory -> `data` stream. Ports: cmd (in), data (out), bus (AXI4 read channels), busy, error."""

    def __init__(self, addr_width: int = 32, data_width: int = 64, id_width: int = 1, *,
                 max_burst: int = 16, max_outstanding: int = 4) -> None:
        super().__init__(addr_width, data_width, id_width, max_burst, max_outstanding, {
            "data": Out(stream.Signature(unsigned(data_width))),
            "bus": Out(axi4(addr_width, data_width, id_width, write=False)),
        })

    @property
    def memory_beats(self) -> int:
        """The beats the read buffer's memory holds (its credit limit): every beat of
        max_outstanding bursts of max_burst."""
        return self.max_outstanding * self.max_burst

    @property
    def buffer_beats(self) -> int:
        """The beats the read buffer holds: its memory's and one in its output register."""
        return self.memory_beats + 1

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        # asynchronous reads put the buffer in distributed RAM: an ECP5 block RAM read without its
        # output register (which a FIFO's enabled read cannot use) takes 5.8 ns of a cycle alone.
        # It never overflows (`spare` below), so its writes need no level check; 16-bit banks
        # keep each read pointer's fan-out local. Its output is a register beside the RAM, so
        # the stream leaves the reader from flip-flops.
        m.submodules.buffer = buf = CreditFIFO(self.data_width, self.memory_beats,
                                               banks=max(1, self.data_width // 16))
        # beats the buffer can still promise, less one longest burst: a burst's beats are taken
        # at its AR handshake and given back a cycle after they leave the buffer's memory (the
        # consumer's ready is not in front of the counter), and a burst is issued only while a
        # longest one would fit, so the gate is the counter's sign bit (no comparison on the AR
        # handshake)
        spare = Signal(range(-self.max_burst, self.memory_beats), init=self.memory_beats - self.max_burst)
        split, issued, outstanding = self._issue(m, bus.arvalid, bus.arready, bus.araddr, bus.arlen,
                                                 gate=~spare[-1])
        m.d.comb += [bus.arid.eq(0), bus.arsize.eq(self.data_width.bit_length() - 4),
                     bus.arburst.eq(BURST_INCR), bus.rready.eq(1)]
        beat = bus.rvalid
        m.d.comb += [buf.w_en.eq(beat), buf.w_data.eq(bus.rdata)]
        m.d.comb += [self.data.valid.eq(buf.r_rdy), self.data.payload.eq(buf.r_data),
                     buf.r_en.eq(self.data.ready)]
        taken = Signal()
        m.d.sync += [taken.eq(buf.popped),
                     spare.eq(spare + taken - Mux(issued, bus.arlen + 1, 0))]
        done = beat & bus.rlast
        m.d.sync += outstanding.eq(outstanding + issued - done)
        with m.If(beat & (bus.rresp != RESP_OKAY)):
            m.d.sync += self.error.eq(1)
        m.d.comb += self.busy.eq(split.active | (outstanding != 0) | buf.popped | buf.r_rdy)
        return m


class DmaWriter(_Dma):
    """`data` stream -> memory. Ports: cmd (in), data (in), bus (AXI4 write channels), busy, error.
    The stream must carry exactly the commands' beats.

    A burst's W beats wait for its AW handshake (its length, for `wlast`, comes from there). AXI4
    lets a slave wait for WVALID before AWREADY, so the writer belongs behind a register slice
    that takes AW on its own (`hw.axi.AxiRegisterSlice`; the engine has two): the slice then
    offers AW and W side by side to any slave."""

    def __init__(self, addr_width: int = 32, data_width: int = 64, id_width: int = 1, *,
                 max_burst: int = 16, max_outstanding: int = 4) -> None:
        super().__init__(addr_width, data_width, id_width, max_burst, max_outstanding, {
            "data": In(stream.Signature(unsigned(data_width))),
            "bus": Out(axi4(addr_width, data_width, id_width, read=False)),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        # the lengths of issued bursts, for W's wlast. It never fills (a burst leaves it with its
        # last W beat, before its response, so it holds at most the outstanding bursts), so its
        # writes need no level check
        m.submodules.lens = lens = CreditFIFO(8, max(2, self.max_outstanding))
        split, issued, outstanding = self._issue(m, bus.awvalid, bus.awready, bus.awaddr, bus.awlen)
        m.d.comb += [bus.awid.eq(0), bus.awsize.eq(self.data_width.bit_length() - 4),
                     bus.awburst.eq(BURST_INCR), lens.w_data.eq(bus.awlen), lens.w_en.eq(issued)]
        beat_no = Signal(8)
        last = beat_no == lens.r_data
        m.d.comb += [bus.wvalid.eq(self.data.valid & lens.r_rdy), bus.wdata.eq(self.data.payload),
                     bus.wstrb.eq(-1), bus.wlast.eq(last),
                     self.data.ready.eq(bus.wready & lens.r_rdy)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += beat_no.eq(Mux(last, 0, beat_no + 1))
            m.d.comb += lens.r_en.eq(last)
        m.d.comb += bus.bready.eq(1)
        response = bus.bvalid & bus.bready
        m.d.sync += outstanding.eq(outstanding + issued - response)
        with m.If(response & (bus.bresp != RESP_OKAY)):
            m.d.sync += self.error.eq(1)
        m.d.comb += self.busy.eq(split.active | (outstanding != 0) | lens.r_rdy)
        return m


class DmaLoopback(wiring.Component):
    """Test and bring-up top: a reader and a writer on one AXI4 port, the read stream fed to the
    writer (memory-to-memory copy). The port is behind a register slice, as `DmaWriter` needs."""

    def __init__(self, addr_width: int = 32, data_width: int = 64, **kw) -> None:
        self.reader = DmaReader(addr_width, data_width, **kw)
        self.writer = DmaWriter(addr_width, data_width, **kw)
        super().__init__({
            "rd_cmd": In(stream.Signature(command_layout(addr_width))),
            "wr_cmd": In(stream.Signature(command_layout(addr_width))),
            "m_axi": Out(axi4(addr_width, data_width)),
            "busy": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader, m.submodules.writer = self.reader, self.writer
        wiring.connect(m, wiring.flipped(self.rd_cmd), self.reader.cmd)
        wiring.connect(m, wiring.flipped(self.wr_cmd), self.writer.cmd)
        wiring.connect(m, self.reader.data, self.writer.data)
        m.submodules.port = port = AxiRegisterSlice(self.reader.addr_width, self.reader.data_width)
        wiring.connect(m, port.m, wiring.flipped(self.m_axi))
        connect_channels(m, port.s, self.reader.bus)
        connect_channels(m, port.s, self.writer.bus)
        m.d.comb += [self.busy.eq(self.reader.busy | self.writer.busy),
                     self.error.eq(self.reader.error | self.writer.error)]
        return m
