"""The host program a board would run, as the cocotb side of the co-simulation: write program and
data into memory, set registers over AXI4-Lite (cocotbext-axi's AxiLiteMaster), start, wait for the
interrupt, read results back from memory.

No Python runs per simulated cycle while the engine works: memory is written and read in bulk
through the harness's memory model (`engine_tb.sv`: one `$readmemh` / `$writememh` file per
transfer), and the host sleeps on the interrupt edge.

Steps back to back: given the next batch too, the host writes it to its staged copy before the
step, the step's program loads the next step's first run from it during its last run, and the
next step starts the warm program (`tiles.Prefetch`), as a board's driver with two batch
buffers would.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.engine.compiler import Program, batch_tensors, from_hwc, set_lr, weight_tensors
from hw.engine.counters import CTR_BITS
from hw.engine.control import ERROR_NAMES, STATUS_DONE, STATUS_ERROR, UNIT_COUNTERS, control_map
from hw.engine.memory_model import MemoryModel
from hw.engine.image import tensor_from_words, tensor_span, tensor_words
from hw.engine.params import CTR_KINDS, SEL_CTR
from hw.engine.program import ext_word_bytes
from hw.engine.tiling import N_COUNTERS, lower, program_words, ucode_words
from model.numerics import NitroError, wrap

from .build import MEM_WORDS


def programs(prog: Program):
    """The training and the inference program, one after the other in the simulated memory
    (NitroError when they do not fit it; tensors that alone do not fit, before compiling)."""
    def fits(need: int) -> None:
        if need > MEM_WORDS * 8:
            raise NitroError(f"engine: the tensors and programs need {need} bytes of memory or "
                             f"more; the simulated memory has {MEM_WORDS * 8}")

    fits(prog.tensor_bytes)
    ep = lower(prog)
    infer = lower(prog, inference=True, base=ep.ext_bytes)
    fits(infer.ext_bytes)
    return ep, infer


@dataclass
class HwStep:
    outputs: dict[str, np.ndarray]  # tensor name -> matrix read back (activations, outputs, deltas)
    weights: dict[str, np.ndarray]  # layer name -> W (out, in), from W^T in memory
    wcopies: dict[str, np.ndarray]  # learning layer -> W from its transposed copy
    counters: dict[str, dict[str, int]]  # phase -> {cycles, mac_busy, mac_stall, drain_wait}
    units: dict[str, int]  # cycles and the UNIT_COUNTERS from the register file
    sim_cycles: int = 0  # harness clock cycles of the whole step (host writes, run, read-back)
    warm: bool = False  # the step started warm (`tiles.Prefetch`)


class EngineBackend:
    """The engine running a compiled step: weights resident in memory, one `train_step` per batch,
    and `predict` (the inference program, in the same memory after the training program).
    The memory here is the harness's model (engine_tb.sv); `RamBackend` runs the same host
    program against cocotbext-axi's AxiRam."""

    def __init__(self, dut, prog: Program, memory: MemoryModel | None = None) -> None:
        from cocotbext.axi import AxiLiteBus, AxiLiteMaster

        from sim.tb.axi_common import quiet_axi_models

        quiet_axi_models()

        self.dut, self.prog, self.p = dut, prog, prog.params
        self.memory = memory or MemoryModel()
        self.ep, self.infer = programs(prog)
        self.regs = control_map(self.p)
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"), dut.clk)
        for side in (self.master.write_if, self.master.read_if):  # else a log line per access
            side.log.setLevel(logging.WARNING)
        self._lr = None
        self._ready = None  # the staged batch stream whose first run the last step prefetched

    # ---- memory ------------------------------------------------------------------------------
    async def write_memory(self, regions: list[tuple[int, np.ndarray]]) -> None:
        """64-bit words into the memory model: (first word address, uint64 words) per region; the
        model holds bus words (`bus_bits` wide: every region starts and ends on a bus word)."""
        from cocotb.triggers import ClockCycles

        n = self.p.bus_bits // 64
        lines = []
        for addr, words in regions:
            words = np.asarray(words, dtype=np.uint64)
            if addr % n or len(words) % n:
                raise ValueError(f"memory region at word {addr} ({len(words)} words) is not whole "
                                 f"{self.p.bus_bits}-bit bus words")
            lines.append(f"@{addr // n:x}")
            lines += ["".join(f"{int(w):016x}" for w in beat[::-1]) for beat in words.reshape(-1, n)]
        Path("mem.hex").write_text("\n".join(lines) + "\n")
        self.dut.mem_load.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.mem_load.value = 0
        await ClockCycles(self.dut.clk, 1)

    async def read_memory(self, first: int, count: int) -> np.ndarray:
        """64-bit words [first, first + count) (whole bus words) from the memory model."""
        from cocotb.triggers import ClockCycles, RisingEdge

        n = self.p.bus_bits // 64
        if first % n or count % n:
            raise ValueError(f"memory read at word {first} ({count} words) is not whole "
                             f"{self.p.bus_bits}-bit bus words")
        self.dut.dump_lo.value, self.dut.dump_hi.value = first // n, (first + count) // n - 1
        self.dut.mem_dump.value = 1
        await RisingEdge(self.dut.mem_dumped)
        self.dut.mem_dump.value = 0
        await ClockCycles(self.dut.clk, 1)
        text = "".join(ln for ln in Path("mem_out.hex").read_text().split() if not ln.startswith("@"))
        beats = np.frombuffer(bytes.fromhex(text), dtype=">u8").astype(np.uint64).reshape(-1, n)
        return beats[:, ::-1].reshape(-1)  # a beat's hex line is most significant word first

    # ---- registers -----------------------------------------------------------------------------
    async def reg_write(self, name: str, value: int) -> None:
        await self.master.write_dword(self.regs[name].offset, value)

    async def reg_read(self, name: str) -> int:
        return await self.master.read_dword(self.regs[name].offset)

    def now(self) -> int:
        return int(self.dut.cycle.value)

    async def reset(self) -> None:
        mm, dut = self.memory, self.dut
        dut.latency.value, dut.gap.value, dut.stall_pct.value, dut.seed.value = (
            mm.latency, mm.gap, mm.stall_pct, mm.seed)
        for s in ("mem_load", "mem_dump"):
            getattr(dut, s).value = 0
        await self._reset()

    async def _reset(self) -> None:
        from cocotb.triggers import ClockCycles

        self._ready = None
        dut = self.dut
        for s in ("s_axil__awvalid", "s_axil__wvalid", "s_axil__arvalid"):
            getattr(dut, s).value = 0
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)
        await self.check_engine()
        await self.reg_write("irq_enable", STATUS_DONE | STATUS_ERROR)

    async def check_engine(self) -> None:
        """The engine behind the port is the one the program was compiled for: its ID/parameter
        block (every constant register: identifier, register-map and command-format version, and
        every `EngineParams` field) reads as the map says."""
        for r in self.regs.registers:
            if r.access == "const" and (got := await self.reg_read(r.name)) != r.reset:
                raise NitroError(f"engine: its {r.name} register reads {got:#x}, the program was "
                                 f"compiled for an engine where it is {r.reset:#x} ({r.doc})")

    async def run(self, ep, budget_cycles: int, warm: bool = False) -> dict[str, int]:
        """Start program `ep` (`warm`: its warm start) and sleep until the interrupt; the unit
        counters of the run."""
        from cocotb.triggers import RisingEdge, with_timeout

        self._ready = None  # whatever runs now leaves no prefetch the host knows of
        base = ep.prefetch.ext if warm else ep.prog_ext
        await self.reg_write("prog_base_lo", base)  # the compiler plans below 2^32 (EXT_ADDR_W)
        await self.reg_write("ctrl", 1)
        await with_timeout(RisingEdge(self.dut.irq), budget_cycles * 10, "ns")
        status = await self.reg_read("status")
        await self.reg_write("status", status)
        if status & STATUS_ERROR:
            code = await self.reg_read("error_code")
            raise NitroError(f"engine: the run stopped with error {code} "
                             f"({ERROR_NAMES.get(code, 'unknown')})")
        cyc = {n: await self.reg_read(n) for n in UNIT_COUNTERS}
        cyc["cycles"] = await self.reg_read("cycles_lo") | (await self.reg_read("cycles_hi") << 32)
        return cyc

    # ---- the training step -------------------------------------------------------------------
    def _regions(self, pairs) -> list[tuple[int, np.ndarray]]:
        return [(tensor_span(self.p, t)[0], tensor_words(self.p, t, m)) for t, m in pairs]

    async def load_weights(self, params: dict[str, np.ndarray]) -> None:
        await self.reset()
        zeros = [(t, np.zeros((t.rows, t.feats), np.int64)) for t in self.prog.cleared]
        progs = [(ep.prog_ext, ep.commands) for ep in (self.ep, self.infer)]
        if self.ep.prefetch is not None:
            progs.append((self.ep.prefetch.ext, self.ep.prefetch.commands))
        await self.write_memory(self._regions(weight_tensors(self.prog, params) + zeros)
                                + [(ext // 8, program_words(c)) for ext, c in progs]
                                + [(self.infer.ucode_ext // 8, ucode_words(self.infer))])

    async def train_step(self, x: np.ndarray, y: np.ndarray, lr_inv: int, fault=None,
                         following: tuple | None = None, masks: dict | None = None) -> HwStep:
        """Write the batch and its dropout masks (and the command words when lr_inv changed),
        run one step, read back. `following`: the next step's (x, y, masks), staged so that this
        step prefetches its first run (`tiles.Prefetch`); a step whose batch was prefetched that
        way, with nothing written or run since and the same lr_inv (the first run's command
        words), starts warm."""
        c0 = self.now()
        pf = self.ep.prefetch
        stream, staged = batch_tensors(self.prog, x, y, masks), None
        warm = (pf is not None and self._ready is not None and self._lr == lr_inv
                and len(stream) == len(self._ready)
                and all(name == t.name and np.array_equal(m, k)
                        for (name, m), (t, k) in zip(self._ready, stream)))
        regions = self._regions(stream)
        if pf is not None and following is not None:
            staged = batch_tensors(self.prog, *following)
            regions += self._regions((pf.staged[t.name], m) for t, m in staged)
        if self._lr != lr_inv:
            set_lr(self.prog, lr_inv)
            regions.append((self.ep.ucode_ext // 8, ucode_words(self.ep)))
            self._lr = lr_inv
        await self.write_memory(regions)
        units = await self.run(self.ep, self._budget(self.ep), warm)
        # what the staged copy holds: the next step starts warm when its stream is the same
        self._ready = None if staged is None else [(t.name, np.array(m)) for t, m in staged]
        if fault is not None:
            await self.flip_weight_bit(*fault)
        step = await self._read_back(units)
        step.sim_cycles, step.warm = self.now() - c0, warm
        return step

    def _budget(self, ep) -> int:
        """A generous cycle bound for one run (a hung engine fails instead of waiting forever)."""
        beats = sum(x.words * 3 for t in ep.tiles for x in t.loads + t.stores)
        macs = sum(t.gemm.m * t.gemm.n * t.gemm.k for t in ep.tiles) // (self.p.rows * self.p.cols)
        return 20 * (beats + macs) * max(1, self.memory.gap + 1) + 400 * self.memory.latency * (
            len(ep.commands) + 1) + 100_000

    async def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The inference program over the images `x` (any count; the last batch padded with zeros):
        y_hat of the output layer ('out') and of every block's learning layer (block name)."""
        b, prog = self.prog.batch, self.prog
        names = ["out"] + [blk.name for blk in prog.spec.blocks.values()]
        outs = {n: [] for n in names}
        y = np.zeros((b, prog.spec.num_classes), np.int8)
        for s in range(0, len(x), b):
            xb = x[s:s + b]
            pad = np.zeros((b - len(xb), *xb.shape[1:]), xb.dtype)
            await self.write_memory(self._regions(batch_tensors(prog, np.concatenate([xb, pad]), y)))
            await self.run(self.infer, self._budget(self.infer))
            words = await self.read_memory(0, prog.tensor_bytes // 8)
            for n in names:
                t = prog.tensors[f"{n}.yhat"]
                first, count = tensor_span(self.p, t)
                outs[n].append(tensor_from_words(self.p, t, words[first:first + count])[:len(xb)])
        return {n: np.concatenate(v).astype(np.int8) for n, v in outs.items()}

    async def flip_weight_bit(self, layer: str, index: tuple[int, int], bit: int) -> None:
        """Fault injection: flip one bit of one weight the engine just wrote to memory."""
        lm = self.prog.layers[layer]
        t = lm.w  # W^T: rows = in (in the engine's order), feats = out
        first, n = tensor_span(self.p, t)
        w = tensor_from_words(self.p, t, await self.read_memory(first, n))
        o, i = index
        if lm.perm is not None:
            i = int(np.flatnonzero(lm.perm == i)[0])
        w[i, o] = wrap(np.int64(w[i, o]) ^ (1 << bit), self.p.weight_bits)
        await self.write_memory([(first, tensor_words(self.p, t, w))])
        self._ready = None  # a prefetched block may hold the weight before the flip

    async def _read_back(self, units: dict[str, int]) -> HwStep:
        ctw = ext_word_bytes(self.p, SEL_CTR) // 8  # 64-bit words per counter
        n = self.ep.ctr_ext // 8 + N_COUNTERS * ctw
        words = await self.read_memory(0, n)

        def get(t):
            first, count = tensor_span(self.p, t)
            return tensor_from_words(self.p, t, words[first:first + count])

        layers = self.prog.layers.items()
        wts = {name: lm.from_engine(get(lm.w).T) for name, lm in layers}
        wcp = {name: lm.from_engine(get(lm.wt)) for name, lm in layers if lm.wt is not None}
        weights = {t.name for _, lm in layers for t in (lm.w, lm.wt) if t is not None}
        out = {name: from_hwc(t, get(t)) for name, t in self.prog.tensors.items()
               if name not in weights}
        vals = words[self.ep.ctr_ext // 8:n:ctw].astype(np.int64) & ((1 << CTR_BITS) - 1)
        k = len(CTR_KINDS)
        ctr = {ph: {CTR_KINDS[j]: int(vals[i * k + j]) for j in range(k)}
               for i, ph in enumerate(self.prog.phases)}
        return HwStep(out, wts, wcp, ctr, units)


class RamBackend(EngineBackend):
    """The same host program with cocotbext-axi's AxiRam as the memory (the protocol test: the
    clock runs in cocotb, the RAM's channels may pause at random)."""

    def __init__(self, dut, prog: Program, ram) -> None:
        super().__init__(dut, prog)
        self.ram = ram

    def now(self) -> int:
        from cocotb.utils import get_sim_time

        return int(get_sim_time("ns")) // 10

    async def reset(self) -> None:
        await self._reset()

    async def write_memory(self, regions: list[tuple[int, np.ndarray]]) -> None:
        for addr, words in regions:
            self.ram.write(addr * 8, np.ascontiguousarray(words, np.uint64).tobytes())

    async def read_memory(self, first: int, count: int) -> np.ndarray:
        return np.frombuffer(self.ram.read(first * 8, count * 8), dtype=np.uint64).copy()
