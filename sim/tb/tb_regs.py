"""The engine's control registers (hw.regs.AxiLiteRegisters over hw.engine.control's map) driven
by cocotbext-axi's AxiLiteMaster with random stalls on all five channels (a write's address and
data taken in either order and together, each counted): every register kind
(const, rw with byte strobes, ro, pulse, w1c with events and the interrupt), SLVERR on unmapped
and read-only words, the handshake rules checked every cycle."""
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster
from cocotbext.axi.constants import AxiResp

from sim.tb.axi_common import (
    AXI4_LITE_FIELDS, StabilityChecker, WriteOrder, pause_all, quiet_axi_models, start, top, top_name,
)
from sim.tb.common import record



async def setup(dut, seed: int):
    regs = top()
    quiet_axi_models()
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "bus", bus_separator="__"), dut.clk, dut.rst)
    pause_all(master, seed, 0.5)
    for r in regs.regmap.registers:  # hardware-side inputs quiet
        if r.access in ("ro", "w1c"):
            getattr(dut, r.name).value = 0
    await start(dut)
    return regs.regmap, master, StabilityChecker(dut, "bus", AXI4_LITE_FIELDS), WriteOrder(dut, "bus")


async def read(master, offset: int) -> tuple[int, AxiResp]:
    resp = await master.read(offset, 4)
    return int.from_bytes(resp.data, "little"), resp.resp


@cocotb.test()
async def every_register_kind(dut):
    regmap, master, checker, order = await setup(dut, 7)
    rng = random.Random(7)
    checks = 0
    for r in regmap.registers:
        mask = (1 << r.width) - 1
        if r.access == "const":
            assert await read(master, r.offset) == (r.reset, AxiResp.OKAY), r.name
            assert (await master.write(r.offset, b"\x01\0\0\0")).resp == AxiResp.SLVERR, r.name
            assert await read(master, r.offset) == (r.reset, AxiResp.OKAY), r.name
            checks += 3
        elif r.access == "rw":
            for _ in range(8):
                v = rng.getrandbits(32)
                await master.write_dword(r.offset, v)
                assert await read(master, r.offset) == (v & mask, AxiResp.OKAY), r.name
                assert int(getattr(dut, r.name).value) == v & mask
                lane = rng.randrange(4)  # one byte lane: the others keep their value
                await master.write(r.offset + lane, bytes([0xA5]))
                want = ((v & ~(0xFF << 8 * lane)) | (0xA5 << 8 * lane)) & mask
                assert (await read(master, r.offset))[0] == want, (r.name, lane)
                checks += 3
        elif r.access == "ro":
            v = rng.getrandbits(r.width)
            getattr(dut, r.name).value = v
            assert await read(master, r.offset) == (v, AxiResp.OKAY), r.name
            getattr(dut, r.name).value = 0
            assert (await master.write(r.offset, b"\x01\0\0\0")).resp == AxiResp.SLVERR, r.name
            checks += 2
    for offset in (0x00C, 0x0FC, 0xFFC):  # unmapped words
        assert (await read(master, offset))[1] == AxiResp.SLVERR
        assert (await master.write(offset, b"\0\0\0\0")).resp == AxiResp.SLVERR
        checks += 2
    assert not checker.violations, checker.violations[:3]
    assert all(order.counts.values()), order.counts  # address first, data first, together
    record(top_name(), "register reads/writes checked", checks, dut._log)


@cocotb.test()
async def start_pulse_status_and_interrupt(dut):
    regmap, master, checker, _ = await setup(dut, 11)
    ctrl, status, enable = (regmap[n] for n in ("ctrl", "status", "irq_enable"))
    pulses = []

    async def watch():
        while True:
            await ReadOnly()
            if dut.ctrl.value:
                pulses.append(int(dut.ctrl.value))
            await RisingEdge(dut.clk)

    cocotb.start_soon(watch())
    checks = 0

    def check(ok, what) -> None:
        nonlocal checks
        assert ok, what
        checks += 1

    await master.write_dword(ctrl.offset, 1)
    await ClockCycles(dut.clk, 3)
    check(pulses == [1], pulses)  # exactly one cycle
    check(await read(master, ctrl.offset) == (0, AxiResp.OKAY), "ctrl reads 0")
    # for each status bit: an event sets it; it sticks, raises irq only when its own enable is
    # set, is not cleared by a write-1 to another bit, and clears on its own write-1
    for bit in range(status.width):
        own, other = 1 << bit, ((1 << status.width) - 1) & ~(1 << bit)
        await master.write_dword(enable.offset, other)
        dut.status.value = own
        await RisingEdge(dut.clk)
        dut.status.value = 0
        await ClockCycles(dut.clk, 2)
        check((await read(master, status.offset))[0] == own, f"bit {bit}: the event sticks")
        check(not dut.irq.value, f"bit {bit}: no interrupt while its enable is clear")
        await master.write_dword(enable.offset, own)
        await ClockCycles(dut.clk, 1)
        check(dut.irq.value, f"bit {bit}: interrupt once enabled")
        await master.write_dword(status.offset, other)  # clearing the other bits changes nothing
        check((await read(master, status.offset))[0] == own and dut.irq.value, f"bit {bit}: other clear")
        await master.write_dword(status.offset, own)
        await ClockCycles(dut.clk, 1)
        check((await read(master, status.offset))[0] == 0 and not dut.irq.value, f"bit {bit}: write-1 clears")
    assert not checker.violations, checker.violations[:3]
    record(top_name(), "start pulse, w1c status and interrupt sequence", checks, dut._log)
