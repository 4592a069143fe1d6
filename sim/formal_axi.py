"""Formal checks of the DMA masters (`hw.dma`) against the AXI4 rules they must keep (and of the
AXI4-Lite register file, `RegsCheck`, against the subordinate's): a bounded
model check (yosys-smtbmc, `sim.formal.prove`) of each master, small parameters, every input
free except for what the protocol makes the other side promise (assumed).

Asserted of the master (AMBA AXI4 spec, A3.2-A3.4):
  * a raised VALID stays up, its payload unchanged, until the handshake (AR, AW, W);
  * bursts are INCR, of the bus width, aligned, at most `max_burst` beats, never across 4 KiB;
  * at most `max_outstanding` bursts are unanswered (the design's own limit);
  * the writer sends W only for issued bursts, WLAST exactly on each one's last beat, in order;
  * the reader holds RREADY high, and its read buffer never holds more beats than its depth (a
    beat the buffer dropped would be lost, as RREADY does not wait for it);
  * the streams to the engine keep `amaranth.lib.stream`'s rule (valid held with its payload);
  * a non-OKAY response (R or B) sets `error` the next cycle, and `error` holds until `clear`.
Covers (`smtbmc -c`) show the environment reaches what the rules are about: the read buffer
full, every burst slot taken, a full-length burst, a command cut at 4 KiB, an error response.
"""
from __future__ import annotations

from amaranth import Elaboratable, Module, ResetSignal, Signal
from amaranth.asserts import AnySeq  # not re-exported by amaranth.hdl in 0.5
from amaranth.hdl import Assert, Assume, Cover

from hw.axi import BOUNDARY, BURST_INCR
from hw.dma import DmaReader, DmaWriter

MAX_CMD_BEATS = 9  # commands up to two full bursts and one more beat (max_burst 4)


def held(m: Module, valid, ready, payload: list, rule) -> None:
    """`rule` (Assert or Assume): a VALID that waited last cycle is still up, payload unchanged."""
    waited = Signal(name=f"{valid.name}_waited")
    m.d.sync += waited.eq(valid & ~ready)
    prev = [Signal(len(p), name=f"{valid.name}_prev{k}") for k, p in enumerate(payload)]
    m.d.sync += [q.eq(p) for q, p in zip(prev, payload)]
    with m.If(waited):
        m.d.comb += rule(valid)
        m.d.comb += [rule(p == q) for p, q in zip(payload, prev)]


class LengthQueue:
    """The issued bursts' lengths (AxLEN) in order, in registers: what the other side of an
    ID-0 port knows. `count` entries from `head`."""

    def __init__(self, m: Module, depth: int, name: str) -> None:
        self.slots = [Signal(8, name=f"{name}_len{k}") for k in range(depth)]
        self.count = Signal(range(depth + 1), name=f"{name}_count")
        self.head = Signal(8, name=f"{name}_head")
        self.m, self.depth = m, depth
        m.d.comb += self.head.eq(self.slots[0])

    def update(self, push, value, pop) -> None:
        """Pop the head and/or push `value` at the tail (a shift register: slot 0 is the head)."""
        m, s, n = self.m, self.slots, self.count
        for k in range(self.depth):
            shifted = s[k + 1] if k + 1 < self.depth else s[k]
            at = n - pop  # the tail after the pop
            with m.If(push & (at == k)):
                m.d.sync += s[k].eq(value)
            with m.Elif(pop):
                m.d.sync += s[k].eq(shifted)
        m.d.sync += n.eq(n + push - pop)


def _free(m: Module, sig) -> None:
    m.d.comb += sig.eq(AnySeq(len(sig)))


def _command_source(m: Module, dut) -> None:
    """The DMA's command stream: free, aligned, 1..MAX_CMD_BEATS beats, held while it waits."""
    c = dut.cmd
    for s in (c.valid, c.payload.addr, c.payload.beats):
        _free(m, s)
    shift = (dut.data_width // 8).bit_length() - 1
    m.d.comb += Assume((c.payload.addr[:shift] == 0) & (c.payload.beats >= 1)
                       & (c.payload.beats <= MAX_CMD_BEATS))
    held(m, c.valid, c.ready, [c.payload.addr, c.payload.beats], Assume)


def _burst_rules(m: Module, dut, valid, ready, addr, length, size, burst) -> None:
    """An address channel's payload rules, and VALID held until its handshake."""
    beat_bytes = dut.data_width // 8
    shift = beat_bytes.bit_length() - 1
    end = Signal(14, name=f"{valid.name}_end")  # the burst's end within its 4 KiB page
    m.d.comb += end.eq(addr[:12] + ((length + 1) << shift))
    with m.If(valid):
        m.d.comb += [Assert(length < dut.max_burst), Assert(end <= BOUNDARY),
                     Assert(addr[:shift] == 0), Assert(size == shift), Assert(burst == BURST_INCR)]
    held(m, valid, ready, [addr, length, size, burst], Assert)


class _DmaCheck(Elaboratable):
    """A DMA master out of reset, its command stream and the given inputs free."""

    def __init__(self, depth: int, dut) -> None:
        self.dut, self.depth = dut, depth

    def _setup(self, free: list) -> Module:
        m = Module()
        m.submodules.dut = self.dut
        m.d.comb += Assume(~ResetSignal())
        _command_source(m, self.dut)
        for s in free + [self.dut.clear]:
            _free(m, s)
        return m

    def _error_rule(self, m: Module, response, resp) -> None:
        """A non-OKAY `resp` on a `response` handshake sets `error`; it holds until `clear`."""
        dut = self.dut
        bad, kept = Signal(name="bad_response"), Signal(name="error_kept")
        m.d.sync += [bad.eq(response & (resp != 0)), kept.eq(dut.error & ~dut.clear)]
        with m.If(bad | kept):
            m.d.comb += Assert(dut.error)


class ReaderCheck(_DmaCheck):
    """`DmaReader` on a free AXI read slave."""

    def __init__(self, depth: int = 16, dut: DmaReader | None = None) -> None:
        super().__init__(depth, dut or DmaReader(12, 32, max_burst=4, max_outstanding=2))

    def elaborate(self, platform) -> Module:
        dut = self.dut
        bus = dut.bus
        m = self._setup([bus.arready, bus.rvalid, bus.rdata, bus.rresp, dut.data.ready])
        m.d.comb += bus.rid.eq(0)
        q = LengthQueue(m, dut.max_outstanding + 1, "ar")
        beat = Signal(8)
        r_hs = bus.rvalid & bus.rready
        m.d.comb += [bus.rlast.eq(beat == q.head), Assume(~bus.rvalid | (q.count != 0))]
        held(m, bus.rvalid, bus.rready, [bus.rdata, bus.rresp], Assume)
        with m.If(r_hs):
            m.d.sync += beat.eq(beat + 1)
            with m.If(bus.rlast):
                m.d.sync += beat.eq(0)
        q.update(bus.arvalid & bus.arready, bus.arlen, r_hs & bus.rlast)

        _burst_rules(m, dut, bus.arvalid, bus.arready, bus.araddr, bus.arlen, bus.arsize,
                     bus.arburst)
        in_buffer = Signal(range(4 * dut.buffer_beats), name="in_buffer")
        m.d.sync += in_buffer.eq(in_buffer + r_hs - (dut.data.valid & dut.data.ready))
        m.d.comb += [Assert(q.count <= dut.max_outstanding), Assert(bus.rready),
                     Assert(in_buffer <= dut.buffer_beats)]
        held(m, dut.data.valid, dut.data.ready, [dut.data.payload], Assert)
        self._error_rule(m, r_hs, bus.rresp)
        m.d.comb += [Cover(in_buffer == dut.buffer_beats), Cover(q.count == dut.max_outstanding),
                     Cover(bus.arvalid & (bus.arlen == dut.max_burst - 1)),
                     Cover(bus.arvalid & (bus.araddr[:12] + 4 * (bus.arlen + 1) == BOUNDARY)),
                     Cover(dut.error)]
        return m


class WriterCheck(_DmaCheck):
    """`DmaWriter` on a free AXI write slave, fed by a free data stream."""

    def __init__(self, depth: int = 16, dut: DmaWriter | None = None) -> None:
        # as many bursts in flight as its queue of burst lengths holds (4), as in the engine
        super().__init__(depth, dut or DmaWriter(12, 32, max_burst=4, max_outstanding=4))

    def elaborate(self, platform) -> Module:
        dut = self.dut
        bus = dut.bus
        m = self._setup([bus.awready, bus.wready, bus.bvalid, bus.bresp, dut.data.valid,
                         dut.data.payload])
        m.d.comb += bus.bid.eq(0)
        held(m, dut.data.valid, dut.data.ready, [dut.data.payload], Assume)
        held(m, bus.bvalid, bus.bready, [bus.bresp], Assume)

        # bursts whose address went out and whose last W beat has not: their lengths, in order
        q = LengthQueue(m, dut.max_outstanding + 1, "aw")
        beat = Signal(8)
        w_hs = bus.wvalid & bus.wready
        written = Signal(range(dut.max_outstanding + 2))  # bursts written and not answered
        aw_open = Signal(range(dut.max_outstanding + 2))  # bursts issued and not answered
        b_hs = bus.bvalid & bus.bready
        m.d.comb += Assume(~bus.bvalid | (written != 0))
        q.update(bus.awvalid & bus.awready, bus.awlen, w_hs & bus.wlast)
        with m.If(w_hs):
            m.d.sync += beat.eq(beat + 1)
            with m.If(bus.wlast):
                m.d.sync += beat.eq(0)
        m.d.sync += [written.eq(written + (w_hs & bus.wlast) - b_hs),
                     aw_open.eq(aw_open + (bus.awvalid & bus.awready) - b_hs)]

        _burst_rules(m, dut, bus.awvalid, bus.awready, bus.awaddr, bus.awlen, bus.awsize,
                     bus.awburst)
        with m.If(bus.wvalid):
            m.d.comb += [Assert(q.count != 0), Assert(bus.wlast == (beat == q.head)),
                         Assert(bus.wstrb == (1 << len(bus.wstrb)) - 1)]
        held(m, bus.wvalid, bus.wready, [bus.wdata, bus.wstrb, bus.wlast], Assert)
        m.d.comb += [Assert(aw_open <= dut.max_outstanding), Assert(q.count <= dut.max_outstanding)]
        self._error_rule(m, b_hs, bus.bresp)
        m.d.comb += [Cover(aw_open == dut.max_outstanding),
                     Cover(w_hs & bus.wlast & (q.head == dut.max_burst - 1)),
                     Cover(bus.awvalid & (bus.awaddr[:12] + 4 * (bus.awlen + 1) == BOUNDARY)),
                     Cover(dut.error)]
        return m


class RegsCheck(Elaboratable):
    """`hw.regs.AxiLiteRegisters` (a small map: rw, ro, w1c with its interrupt enable, pulse)
    under any AXI4-Lite manager that keeps VALID and its payload until the handshake, and any
    register inputs. Asserted: B and R VALID held with their payload until taken; at most one
    write and one read in the subordinate at a time (requests taken minus responses given is
    0 or 1 on each of AW, W and AR), no B before its write's AW and W, no R before its AR."""

    def __init__(self, depth: int = 16) -> None:
        from hw.regs import AxiLiteRegisters, Register, RegisterMap

        self.depth = depth
        self.dut = AxiLiteRegisters(RegisterMap((
            Register("ctrl", 0x0, "rw", width=8), Register("state", 0x4, "ro", width=8),
            Register("status", 0x8, "w1c", width=2), Register("irq_en", 0xC, "rw", width=2),
            Register("go", 0x10, "pulse", width=1)), irq=("status", "irq_en"), addr_width=5))

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dut = dut = self.dut
        bus = dut.bus
        m.d.comb += Assume(~ResetSignal())
        for sig in (bus.awvalid, bus.awaddr, bus.awprot, bus.wvalid, bus.wdata, bus.wstrb,
                    bus.bready, bus.arvalid, bus.araddr, bus.arprot, bus.rready, dut.state,
                    dut.status):
            _free(m, sig)
        held(m, bus.awvalid, bus.awready, [bus.awaddr, bus.awprot], Assume)
        held(m, bus.wvalid, bus.wready, [bus.wdata, bus.wstrb], Assume)
        held(m, bus.arvalid, bus.arready, [bus.araddr, bus.arprot], Assume)
        held(m, bus.bvalid, bus.bready, [bus.bresp], Assert)
        held(m, bus.rvalid, bus.rready, [bus.rdata, bus.rresp], Assert)
        taken = {}
        for ch, valid, ready in (("aw", bus.awvalid, bus.awready), ("w", bus.wvalid, bus.wready),
                                 ("ar", bus.arvalid, bus.arready), ("b", bus.bvalid, bus.bready),
                                 ("r", bus.rvalid, bus.rready)):
            taken[ch] = n = Signal(range(2 * self.depth), name=f"{ch}_taken")
            m.d.sync += n.eq(n + (valid & ready))
        for req, resp in (("aw", "b"), ("w", "b"), ("ar", "r")):
            m.d.comb += Assert((taken[req] == taken[resp]) | (taken[req] == taken[resp] + 1))
        with m.If(bus.bvalid):  # the write it answers was taken, both its parts
            m.d.comb += [Assert(taken["aw"] == taken["b"] + 1), Assert(taken["w"] == taken["b"] + 1)]
        with m.If(bus.rvalid):
            m.d.comb += Assert(taken["ar"] == taken["r"] + 1)
        m.d.comb += [Cover(bus.bvalid & (bus.bresp == 0)), Cover(bus.bvalid & (bus.bresp != 0)),
                     Cover(bus.rvalid & (bus.rresp == 0)), Cover(bus.rvalid & (bus.rresp != 0)),
                     Cover(dut.irq)]
        return m


CHECKS = {"dma_reader": ReaderCheck, "dma_writer": WriterCheck, "axilite_regs": RegsCheck}
