"""The streaming NITRO-D training engine: every tensor in external memory, tiles in scratchpads.

    s_axil (AXI4-Lite) -> ControlRegisters (hw.engine.control): prog_base, START, DONE/ERROR, irq
    m_axi  (AXI4, 64 or 128 bits: `EngineParams.bus_bits`)
                       <- DmaReader: program commands (Sequencer) and LOAD data (LoadUnit)
                       <- DmaWriter: STORE data (StoreUnit)
    Engine (hw.engine.core): the MAC array, its output pipelines and the double-buffered
    scratchpads; LOAD writes and STORE reads the host's set through the core's host ports (also
    while the core runs in the other set); SWAP exchanges the sets; RUN starts the core.

The sequencer runs the program (`hw.engine.program`): fetch a command (one 128-bit read), then a
LOAD to completion, or a STORE into the store queue (the store unit drains it on the write
channels while the reads go on); RUN starts the core and goes on, so transfers of the host's
scratchpad set overlap the run; SYNC waits for the stores, SWAP and END for them and the core.
Nothing in the RTL depends on the network: the compiler tiles every GEMM into what the
scratchpads hold and orders the transfers (`hw.engine.tiling`).
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.axi import AxiRegisterSlice, axi4, axilite, connect_channels
from hw.dma import DmaReader, DmaWriter, command_layout as dma_command_layout
from hw.stream_unit import RegisterSlice

from .control import ERR_ALIGN, ERR_BUS, ERR_OPCODE, UNIT_COUNTERS, ControlRegisters, control_map
from .core import Engine
from .params import EngineParams
from .program import (
    EXT_ADDR_W, PROGRAM_WORD_BITS, SOP_END, SOP_LOAD, SOP_RUN, SOP_STORE, SOP_SWAP, SOP_SYNC,
    program_layout, transfer_layout,
)
from .transfer import LoadUnit, StoreUnit

DMA_MAX_BURST = 16
# bursts in flight per direction: the strided rows of CNN tensors are bursts of a few beats, which
# must overlap a DDR3-class latency (30 cycles) to keep the port busy
DMA_OUTSTANDING = 16
# STOREs queued for the store unit: a run's outputs are several small STOREs, which the next
# run's LOADs should not wait behind
STORE_QUEUE = 8
# cycles before HALT reads the idle flags: the store queue's output register (2), then the
# registered flag (1)
HALT_SETTLE = 3


def engine_signature(p: EngineParams) -> wiring.Signature:
    """The engine's ports: AXI4-Lite control, the AXI4 memory master, the interrupt."""
    return wiring.Signature({
        "s_axil": In(axilite(control_map(p).addr_width)),
        "m_axi": Out(axi4(EXT_ADDR_W, p.bus_bits)),
        "irq": Out(1),
    })


class StreamEngine(wiring.Component):
    def __init__(self, params: EngineParams | None = None) -> None:
        self.p = p = params or EngineParams()
        self.regmap = control_map(p)
        super().__init__(engine_signature(p))

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.p
        m.submodules.regs = regs = ControlRegisters(p)
        m.submodules.core = core = Engine(p)
        kw = {"max_burst": DMA_MAX_BURST, "max_outstanding": DMA_OUTSTANDING}
        m.submodules.reader = reader = DmaReader(EXT_ADDR_W, p.bus_bits, **kw)
        m.submodules.writer = writer = DmaWriter(EXT_ADDR_W, p.bus_bits, **kw)
        m.submodules.load = ld = LoadUnit(p)
        m.submodules.store = st = StoreUnit(p)
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)
        m.d.comb += self.irq.eq(regs.irq)
        # the memory port's handshakes cross two register slices: the pins lie on the die's edge,
        # so one slice can sit by the pins and one by the DMA, and no path crosses the die
        m.submodules.axi_pins = pins = AxiRegisterSlice(EXT_ADDR_W, p.bus_bits)
        m.submodules.axi_slice = sl = AxiRegisterSlice(EXT_ADDR_W, p.bus_bits)
        wiring.connect(m, pins.m, wiring.flipped(self.m_axi))
        wiring.connect(m, sl.m, pins.s)
        connect_channels(m, sl.s, reader.bus)
        connect_channels(m, sl.s, writer.bus)
        # register slices (one cycle each) on the DMA's streams to and from the units and the
        # sequencer: the DMA sits by the memory port, they across the die. The read data leaves
        # the reader's buffer from its output register, and no ready goes back: see `_sequencer`.
        cmd_bits = len(Value.cast(reader.cmd.payload))
        m.submodules.read_cmd = rd_cmd = RegisterSlice(cmd_bits)
        m.submodules.write_cmd = wr_cmd = RegisterSlice(cmd_bits)
        m.submodules.write_data = wr_data = RegisterSlice(p.bus_bits)
        for slice_, dma in ((rd_cmd, reader), (wr_cmd, writer)):
            m.d.comb += [dma.cmd.valid.eq(slice_.o.valid), dma.cmd.payload.eq(slice_.o.payload),
                         slice_.o.ready.eq(dma.cmd.ready)]
        m.d.comb += [wr_cmd.i.valid.eq(st.dma_cmd.valid), wr_cmd.i.payload.eq(st.dma_cmd.payload),
                     st.dma_cmd.ready.eq(wr_cmd.i.ready)]
        wiring.connect(m, st.dma_data, wr_data.i)
        wiring.connect(m, wr_data.o, writer.data)
        m.d.comb += [core.hw_en.eq(ld.wr_en), core.hw_sel.eq(ld.wr_sel), core.hw_addr.eq(ld.wr_addr),
                     core.hw_data.eq(ld.wr_data), core.hr_sel.eq(st.rd_sel),
                     core.hr_addr.eq(st.rd_addr), st.rd_data.eq(core.hr_data)]
        # a STORE is done when its last command has left the slice and the writer is idle
        writer_busy = writer.busy | wr_cmd.o.valid
        self._sequencer(m, regs, core, (reader, rd_cmd.i, reader.data), (writer, writer_busy), ld, st)
        return m

    def _sequencer(self, m, regs, core, read, write, ld, st) -> None:
        """`read`: the DmaReader and its command and data streams; `write`: the DmaWriter and
        whether it or its command slice holds a STORE's transfer."""
        reader, read_cmd, read_data = read
        writer, writer_busy = write
        bb = self.p.bus_bits
        beats = PROGRAM_WORD_BITS // bb
        pc = Signal(EXT_ADDR_W)
        word = Signal(PROGRAM_WORD_BITS)
        cmd = data.View(program_layout, word[:program_layout.size])
        beat = Signal(range(beats))
        busy, done, err = Signal(), Signal(), Signal()
        code = Signal(8)
        queue, stores_idle = self._store_queue(m, st, writer_busy)
        m.d.comb += [regs.busy.eq(busy), regs.error_code.eq(code),
                     regs.status.eq(Cat(done, err)), ld.cmd.payload.eq(cmd.xfer),
                     queue.w_data.eq(cmd.xfer)]
        m.d.sync += [done.eq(0), err.eq(0), core.start.eq(0), core.ctr_clear.eq(0),
                     core.swap.eq(0)]
        launched, core_idle, stores_done, load_done, dma_error, dma_clear = self._wait_flags(
            m, core, reader, writer, ld, stores_idle)
        fetch_cmd = self._share_reader(m, read_cmd, read_data, ld, pc, beats)

        def stop():
            m.d.sync += [busy.eq(0), done.eq(1)]
            m.next = "IDLE"

        # HALT trusts the registered idle flags only after HALT_SETTLE cycles: a STORE pushed or
        # a fetch sent just before the error shows in them a few cycles later
        settle = Signal(range(HALT_SETTLE + 1))

        def fail(error_code):
            """End the program with `error_code` once every transfer it started has ended (HALT):
            BUSY low means the memory port is quiet. Nothing new starts once the error is seen."""
            m.d.sync += [code.eq(error_code), settle.eq(HALT_SETTLE)]
            m.next = "HALT"

        def unless_bus_error(cond):
            """A DMA error ends the program in every state that waits on the bus; else `cond`."""
            with m.If(dma_error):
                fail(ERR_BUS)
            return m.Elif(cond)

        # a transfer's rows start at ext + r * stride: each a whole bus word, or the DMA could
        # not move it (the compiler's never are; a host's program might be)
        word_bytes = bb // 8
        x = cmd.xfer
        misaligned = (x.ext % word_bytes != 0) | ((x.stride % word_bytes != 0) & (x.rows > 1))
        with m.FSM(name="seq") as fsm:
            with m.State("IDLE"):
                with m.If(regs.ctrl[0]):
                    m.d.sync += [pc.eq(regs.prog_base_lo), busy.eq(1), code.eq(0),
                                 core.ctr_clear.eq(1), beat.eq(0)]
                    m.d.comb += dma_clear.eq(1)
                    with m.If(regs.prog_base_lo % word_bytes != 0):
                        fail(ERR_ALIGN)
                    with m.Else():
                        m.next = "FETCH"
            with m.State("FETCH"):  # the command's read burst
                m.d.comb += fetch_cmd.eq(~dma_error)
                with unless_bus_error(read_cmd.ready):
                    m.next = "GATHER"
            with m.State("GATHER"):
                with unless_bus_error(read_data.valid):
                    m.d.sync += [word.word_select(beat, bb).eq(read_data.payload), beat.eq(beat + 1)]
                    with m.If(beat == beats - 1):
                        m.d.sync += [beat.eq(0), pc.eq(pc + PROGRAM_WORD_BITS // 8)]
                        m.next = "DECODE"
            with m.State("DECODE"):
                self._decode(m, cmd, misaligned, fail, ld, core, launched)
            with m.State("LOAD"):  # the reader's data goes to the load unit
                with unless_bus_error(load_done):
                    m.next = "FETCH"
            with m.State("STORE"):  # into the queue (waits while it is full)
                m.d.comb += queue.w_en.eq(~dma_error)
                with unless_bus_error(queue.w_rdy):
                    m.next = "FETCH"
            with m.State("SYNC"):
                with unless_bus_error(stores_done):
                    m.next = "FETCH"
            with m.State("SWAP"):
                with unless_bus_error(stores_done & core_idle):
                    m.d.sync += core.swap.eq(1)
                    m.next = "FETCH"
            with m.State("FINISH"):
                with unless_bus_error(stores_done & core_idle):
                    stop()
            with m.State("HALT"):  # an error: the stores, loads and the core run to their end
                with m.If(settle != 0):
                    m.d.sync += settle.eq(settle - 1)
                with m.Elif(stores_done & core_idle & load_done):
                    m.d.sync += [busy.eq(0), err.eq(1)]
                    m.next = "IDLE"
        waits = (fsm.ongoing("SYNC") | fsm.ongoing("SWAP") | fsm.ongoing("FINISH")
                 | fsm.ongoing("STORE") & ~queue.w_rdy)
        self._counters(m, regs, fsm, busy, core, waits, busy & ~stores_idle)

    @staticmethod
    def _decode(m, cmd, misaligned, fail, ld, core, launched) -> None:
        """DECODE: the state each command goes to (a LOAD's request to the load unit, a RUN's
        start to the core, here); a misaligned transfer or an unknown opcode fails the program."""
        with m.Switch(cmd.op):
            with m.Case(SOP_END):
                m.next = "FINISH"
            with m.Case(SOP_LOAD, SOP_STORE):
                with m.If(misaligned):
                    fail(ERR_ALIGN)
                with m.Elif(cmd.op == SOP_LOAD):
                    m.d.comb += ld.cmd.valid.eq(1)
                    m.next = "LOAD"
                with m.Else():
                    m.next = "STORE"
            with m.Case(SOP_RUN):
                m.d.sync += [core.start.eq(1), launched.eq(1)]
                m.next = "FETCH"
            with m.Case(SOP_SWAP):
                m.next = "SWAP"
            with m.Case(SOP_SYNC):
                m.next = "SYNC"
            with m.Default():
                fail(ERR_OPCODE)

    @staticmethod
    def _wait_flags(m, core, reader, writer, ld, stores_idle):
        """What the sequencer's waits wait for, registered: the units lie across the die from it.
        A unit the sequencer starts looks busy at once (`launched`: RUN started the core and its
        busy has not been seen yet; a LOAD's valid; a queued STORE is seen long before its
        SYNC), so a registered idle is only late, by a cycle. `dma_clear` (START: a new program)
        clears the DMA's error flags and their copy."""
        launched = Signal()
        with m.If(core.busy):
            m.d.sync += launched.eq(0)
        core_idle, stores_done, load_done, dma_error = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [core_idle.eq(~core.busy & ~launched), stores_done.eq(stores_idle),
                     load_done.eq(~ld.busy & ~reader.busy & ~ld.cmd.valid & ~reader.cmd.valid),
                     dma_error.eq(reader.error | writer.error)]
        dma_clear = Signal()
        m.d.comb += [reader.clear.eq(dma_clear), writer.clear.eq(dma_clear)]
        with m.If(dma_clear):
            m.d.sync += dma_error.eq(0)
        return launched, core_idle, stores_done, load_done, dma_error, dma_clear

    @staticmethod
    def _share_reader(m, read_cmd, read_data, ld, pc, beats):
        """The reader serves the fetch and the load unit, never both at once (a LOAD ends before
        the next fetch): wired to both, so no state decode sits in its handshakes' paths. Each
        takes every beat it asked for as it arrives (GATHER waits for its beats; the load unit
        is active from before its first DMA command to its last beat), so the read data's
        ready is 1: the consumers' state is not in front of the reader's buffer. Returns the
        fetch's request, `fetch_cmd`."""
        fetch_cmd = Signal()
        fetch = Signal(dma_command_layout(EXT_ADDR_W))
        m.d.comb += [fetch.addr.eq(pc), fetch.beats.eq(beats),
                     read_cmd.valid.eq(fetch_cmd | ld.dma_cmd.valid),
                     read_cmd.payload.eq(Mux(fetch_cmd, fetch, ld.dma_cmd.payload)),
                     ld.dma_cmd.ready.eq(read_cmd.ready),
                     ld.dma_data.valid.eq(read_data.valid), ld.dma_data.payload.eq(read_data.payload),
                     read_data.ready.eq(1)]
        return fetch_cmd

    @staticmethod
    def _store_queue(m, st, writer_busy):
        """STOREs wait in a queue for the store unit: (the queue, nothing queued or moving)."""
        m.submodules.store_queue = queue = SyncFIFOBuffered(width=transfer_layout.size, depth=STORE_QUEUE)
        wiring.connect(m, queue.r_stream, st.cmd)
        return queue, ~queue.r_rdy & ~st.busy & ~writer_busy

    @staticmethod
    def _counters(m, regs, fsm, busy, core, waits, storing) -> None:
        counted = {"cycles": busy, "fetch_cycles": fsm.ongoing("FETCH") | fsm.ongoing("GATHER"),
                   "load_cycles": fsm.ongoing("LOAD"), "store_cycles": storing,
                   "wait_cycles": waits, "run_cycles": busy & core.busy}
        assert counted.keys() == {"cycles", *UNIT_COUNTERS}, "a counter of the register map undriven"
        for name, event in counted.items():
            c = Signal(64 if name == "cycles" else 32, name=f"ctr_{name}")
            # counted a cycle late (the events come from across the die): the host reads the
            # counters after DONE, by when the last event is in
            counted_q = Signal(name=f"ctr_{name}_event")
            m.d.sync += counted_q.eq(event)
            with m.If(regs.ctrl[0] & ~busy):
                m.d.sync += c.eq(0)
            with m.Elif(counted_q):
                m.d.sync += c.eq(c + 1)
            if name == "cycles":
                m.d.comb += [regs.cycles_lo.eq(c[:32]), regs.cycles_hi.eq(c[32:])]
            else:
                m.d.comb += getattr(regs, name).eq(c)
