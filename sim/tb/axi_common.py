"""cocotb helpers for the components with AXI ports: clock and reset, a valid/ready stream driver,
random stall generators for cocotbext-axi's channel models, and the AXI handshake-stability check
(once VALID is up, it and the payload hold until READY)."""
from __future__ import annotations

import abc
import random
import warnings

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.job import UnitJob
from sim.units import SIM_TOPS

PERIOD_NS = 10


def quiet_axi_models() -> None:
    """cocotbext-axi 0.1.28 calls cocotb 2's deprecated `setimmediatevalue` for every channel
    and an event field it deprecates itself on every register read: a warning per model and
    per access in every simulation log otherwise."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")
    warnings.filterwarnings("ignore", "The data field will be removed", DeprecationWarning)


# every payload field of each AXI4 channel that the port has, which must hold while VALID waits
AXI4_FIELDS = {"ar": ["araddr", "arlen", "arsize", "arburst", "arid"],
               "aw": ["awaddr", "awlen", "awsize", "awburst", "awid"],
               "w": ["wdata", "wstrb", "wlast"], "r": ["rdata", "rresp", "rlast", "rid"],
               "b": ["bresp", "bid"]}
AXI4_LITE_FIELDS = {"aw": ["awaddr", "awprot"], "w": ["wdata", "wstrb"], "b": ["bresp"],
                    "ar": ["araddr", "arprot"], "r": ["rdata", "rresp"]}


def top_name() -> str:
    """The component under test's name in SIM_TOPS, from the runner's `UnitJob`."""
    return UnitJob.read().unit


def top():
    """The component under test (its parameters)."""
    return SIM_TOPS[top_name()].factory()


async def start(dut, cycles: int = 4) -> None:
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def stalls(seed: int, p: float):
    """A pause generator: True (stall) with probability p each cycle."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


async def send(dut, port: str, payloads) -> None:
    """Drive the stream `port` with each payload in turn, holding it until the handshake."""
    valid, data, ready = (getattr(dut, f"{port}__{s}") for s in ("valid", "payload", "ready"))
    for p in payloads:
        valid.value, data.value = 1, p
        while True:
            await ReadOnly()
            taken = bool(ready.value)
            await RisingEdge(dut.clk)
            if taken:
                break
    valid.value = 0


def pause_all(model, seed: int, p: float) -> None:
    """Random pauses on all five channels of a cocotbext-axi model (a master, AXI4 or AXI4-Lite,
    or AxiRam): a write's address and data then travel apart, in either order."""
    w, r = model.write_if, model.read_if
    for k, ch in enumerate((w.aw_channel, w.w_channel, w.b_channel, r.ar_channel, r.r_channel)):
        ch.set_pause_generator(stalls(seed + k, p))


def aw_after_w(dut, prefix: str, ram) -> None:
    """Make `ram` the write slave AXI4 allows (IHI 0022 A3.3.1): AWREADY only once WVALID has been
    seen. A manager whose W waits for its AW handshake deadlocks against it."""
    wvalid = getattr(dut, f"{prefix}__wvalid")

    def pauses():
        while True:
            yield not wvalid.value

    ram.write_if.aw_channel.set_pause_generator(pauses())


class _ChannelMonitor(abc.ABC):
    """Samples a port's channels once per cycle, after the cycle's values have settled."""

    def __init__(self, dut, prefix: str) -> None:
        self.dut, self.prefix = dut, prefix
        cocotb.start_soon(self._run())

    def _sig(self, name: str):
        return getattr(self.dut, f"{self.prefix}__{name}")

    def _valid_ready(self, ch: str) -> tuple[int, int]:
        return int(self._sig(f"{ch}valid").value), int(self._sig(f"{ch}ready").value)

    @abc.abstractmethod
    def _sample(self, cycle: int) -> None:
        """Look at the channels in cycle `cycle` (counted from the monitor's start)."""

    async def _run(self) -> None:
        cycle = 0
        while True:
            await ReadOnly()
            self._sample(cycle)
            cycle += 1
            await RisingEdge(self.dut.clk)


class WriteOrder(_ChannelMonitor):
    """Counts, per write, whether the slave took its address first, its data first, or both in
    one cycle (AXI lets them come in any order). For a slave that takes one write at a time."""

    def __init__(self, dut, prefix: str) -> None:
        self.counts = {"address first": 0, "data first": 0, "together": 0}
        self._seen: dict[str, int] = {}  # channel -> the cycle of its handshake, for the write being taken
        super().__init__(dut, prefix)

    def _sample(self, cycle: int) -> None:
        for ch in ("aw", "w"):
            if all(self._valid_ready(ch)):
                self._seen[ch] = cycle
        if len(self._seen) == 2:
            order = self._seen["aw"] - self._seen["w"]
            self.counts["together" if order == 0 else "address first" if order < 0
                        else "data first"] += 1
            self._seen = {}


class StabilityChecker(_ChannelMonitor):
    """Samples channels every cycle: a VALID that waits must hold, with its payload, until READY."""

    def __init__(self, dut, prefix: str, channels: dict[str, list[str]]) -> None:
        self.channels = channels
        self.handshakes = {ch: 0 for ch in channels}
        self.violations: list[str] = []
        self._waiting: dict[str, tuple] = {}
        super().__init__(dut, prefix)

    def _sample(self, cycle: int) -> None:
        for ch, fields in self.channels.items():
            valid, ready = self._valid_ready(ch)
            payload = tuple(int(self._sig(f).value) for f in fields)
            if ch in self._waiting and (not valid or payload != self._waiting[ch]):
                self.violations.append(f"{ch}: valid or payload changed before ready")
            self._waiting.pop(ch, None)
            if valid and ready:
                self.handshakes[ch] += 1
            elif valid:
                self._waiting[ch] = payload
