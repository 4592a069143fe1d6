"""DMA reader + writer on one AXI4 port (hw.dma.DmaLoopback) against cocotbext-axi's AxiRam: random
memory-to-memory copies (bursts cut at 4 KiB and max_burst, several reads in flight) with random
stalls on all five channels; every byte compared; the handshake rules checked every cycle."""
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiRam

from hw.stream_unit import RegisterSlice
from sim.tb.axi_common import (
    AXI4_FIELDS, StabilityChecker, aw_after_w, quiet_axi_models, send, stalls, start, top, top_name,
)
from sim.tb.common import record

RAM_BYTES = 1 << 20


def ram_with_stalls(dut, seed: int, p: float, p_w: float | None = None, w_first: bool = False) -> AxiRam:
    """The RAM, each channel stalled with probability p (W with p_w when given; AW, with
    `w_first`, until W is offered: `aw_after_w`)."""
    quiet_axi_models()
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator="__"), dut.clk, dut.rst, size=RAM_BYTES)
    chans = (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
             ram.read_if.ar_channel, ram.read_if.r_channel)
    for k, ch in enumerate(chans):
        ch.set_pause_generator(stalls(seed + k, p_w if k == 1 and p_w is not None else p))
    if w_first:
        aw_after_w(dut, "m_axi", ram)
    return ram


class BurstMonitor:
    """Largest AR/AW burst, the most reads in flight (AR handshakes not yet answered by RLAST),
    the most beats read and not yet written at the port (what the reader's buffer and the port's
    R and W register slices hold: `buffer_beats`) and the cycles with `rready` low."""

    def __init__(self, dut, buffer_beats: int) -> None:
        self.dut, self.max_len, self.max_reads, self.max_held, self.rready_low = dut, 0, 0, 0, 0
        self.buffer_beats = buffer_beats
        cocotb.start_soon(self._run())

    async def _run(self) -> None:
        d, in_flight, held = self.dut, 0, 0
        while True:
            await ReadOnly()
            self.rready_low += not d.m_axi__rready.value
            held += bool(d.m_axi__rvalid.value and d.m_axi__rready.value)
            held -= bool(d.m_axi__wvalid.value and d.m_axi__wready.value)
            self.max_held = max(self.max_held, held)
            # fails the test at once: a beat beyond what the buffer and slices hold was lost
            assert held <= self.buffer_beats, f"{held} beats read and not written"
            if d.m_axi__arvalid.value and d.m_axi__arready.value:
                in_flight += 1
                self.max_len = max(self.max_len, int(d.m_axi__arlen.value) + 1)
            if d.m_axi__awvalid.value and d.m_axi__awready.value:
                self.max_len = max(self.max_len, int(d.m_axi__awlen.value) + 1)
            if d.m_axi__rvalid.value and d.m_axi__rready.value and d.m_axi__rlast.value:
                in_flight -= 1
            self.max_reads = max(self.max_reads, in_flight)
            await RisingEdge(d.clk)


def copies(rng: random.Random, beat: int, n: int) -> list[tuple[int, int, int]]:
    """n (src, dst, beats): sources in the lower half, destinations in the upper, no overlaps,
    lengths from 1 beat to a few 4 KiB pages, starts often just below a page boundary."""
    out, src, dst = [], 0, RAM_BYTES // 2
    for _ in range(n):
        beats = rng.choice([1, 2, rng.randint(3, 40), rng.randint(40, 700)])
        if rng.random() < 0.5:
            src += rng.randrange(0, 8192, beat)
        else:  # start a few beats below a page boundary: the first burst is cut there
            below = (src // 4096 + 1) * 4096 - beat * rng.randint(1, 4)
            src = below if below >= src else below + 4096
        dst += rng.randrange(0, 8192, beat)
        out.append((src, dst, beats))
        src, dst = src + beats * beat, dst + beats * beat
    assert dst <= RAM_BYTES, "test layout exceeds the RAM"
    return out


async def run_copies(dut, seed: int, p_stall: float, n: int, p_w: float | None = None,
                     w_first: bool = False) -> tuple[int, BurstMonitor]:
    """n random copies; returns (beats copied, the monitor)."""
    unit = top()
    beat = unit.reader.data_width // 8
    rng = random.Random(seed)
    ram = ram_with_stalls(dut, seed, p_stall, p_w, w_first)
    await start(dut)
    checker = StabilityChecker(dut, "m_axi", AXI4_FIELDS)
    bursts = BurstMonitor(dut, unit.reader.buffer_beats + 2 * RegisterSlice.BEATS)
    jobs = copies(rng, beat, n)
    written = [rng.randbytes(beats * beat) for _, _, beats in jobs]
    for (src, _, _), data in zip(jobs, written):
        ram.write(src, data)
    aw = unit.reader.addr_width
    rd = cocotb.start_soon(send(dut, "rd_cmd", [s | (b << aw) for s, _, b in jobs]))
    wr = cocotb.start_soon(send(dut, "wr_cmd", [d | (b << aw) for _, d, b in jobs]))
    await rd
    await wr
    for _ in range(200_000):
        await RisingEdge(dut.clk)
        if not dut.busy.value:
            break
    await ClockCycles(dut.clk, 4)
    assert not dut.busy.value, "the DMA never finished"
    assert not dut.error.value, "error raised on a clean run"
    for (src, dst, beats), data in zip(jobs, written):  # the bytes written, not the source after the run
        assert ram.read(dst, beats * beat) == data, f"copy {src:#x} -> {dst:#x} differs"
        assert ram.read(src, beats * beat) == data, f"source {src:#x} changed"
    assert not checker.violations, checker.violations[:3]
    assert bursts.max_len <= unit.reader.max_burst
    if p_stall:  # stalled R beats let the reader fill its outstanding window
        assert bursts.max_reads == unit.reader.max_outstanding, bursts.max_reads
    # the buffer takes every beat: no R handshake waits for the writer
    assert bursts.rready_low == 0, bursts.rready_low
    dut._log.info("most beats held in the read buffer and the port's slices: %d of %d", bursts.max_held,
                  bursts.buffer_beats)
    total = sum(b for _, _, b in jobs)
    assert checker.handshakes["r"] == checker.handshakes["w"] == total
    return total, bursts


@cocotb.test()
async def copies_without_stalls(dut):
    beats, _ = await run_copies(dut, seed=1, p_stall=0.0, n=40)
    record(top_name(), "beats copied, no stalls", beats, dut._log)


@cocotb.test()
async def copies_with_random_stalls(dut):
    beats, _ = await run_copies(dut, seed=2, p_stall=0.4, n=40)
    record(top_name(), "beats copied, 40 % random stalls on every channel", beats, dut._log)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def writes_to_a_slave_that_waits_for_w(dut):
    """AXI4 lets a slave wait for WVALID before it raises AWREADY: the W beats must not wait for
    their AW handshake at the port (the writer's do; the port's register slice takes AW alone)."""
    beats, _ = await run_copies(dut, seed=5, p_stall=0.2, n=20, w_first=True)
    record(top_name(), "beats copied to a slave that takes AW only once W is offered", beats, dut._log)


@cocotb.test()
async def reads_wait_for_buffer_room(dut):
    """A slow write side fills the reader's buffer: reads then wait for room (rready stays high,
    and no beat is lost)."""
    beats, bursts = await run_copies(dut, seed=4, p_stall=0.0, n=20, p_w=0.8)
    reader = top().reader
    assert bursts.max_held > reader.buffer_beats - reader.max_burst, (bursts.max_held, reader.buffer_beats)
    record(top_name(), "beats copied through a full read buffer", beats, dut._log)


@cocotb.test()
async def misaligned_command_sets_error(dut):
    ram_with_stalls(dut, 3, 0.0)
    await start(dut)
    unit = top()
    await send(dut, "rd_cmd", [0x1001 | (4 << unit.reader.addr_width)])
    await ClockCycles(dut.clk, 20)
    assert dut.error.value and not dut.busy.value and not dut.m_axi__arvalid.value
    record(top_name(), "misaligned command dropped with error", 1, dut._log)
