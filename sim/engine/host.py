"""cocotb side of the engine: bulk load / run / read-back through the harness, and the engine as a
hardware backend of the golden model's training step.

No Python runs per simulated cycle: a step is three handshakes (load the batch, run the command
stream, dump the read-back list), each one `$readmemh` / `$writememh` file plus one awaited edge.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.engine.params import (
    CTR_KINDS, N_PHASES, SEL_CMEM, SEL_CTR, EngineParams, HostWordLayouts,
)
from model.numerics import NitroError
from sim.codec import Codec

from hw.engine.compiler import (
    Program, Tensor, batch_tensors, pack_command, pack_tensor, unpack_tensor, weight_tensors,
)
from .build import DP_DEPTH, LD_DEPTH


def lanes_to_bytes(lanes: np.ndarray, lane_bits: int, nbytes: int) -> np.ndarray:
    """(n, L) signed lane values -> (n, nbytes) little-endian bytes (two's complement per lane)."""
    n, L = lanes.shape
    lb = lane_bits // 8
    u = lanes.astype(np.int64) & ((1 << lane_bits) - 1)
    out = np.zeros((n, nbytes), dtype=np.int64)
    for b in range(lb):
        out[:, b:L * lb:lb] = (u >> (8 * b)) & 0xFF
    return out


def bytes_to_lanes(by: np.ndarray, lane_bits: int, lanes: int) -> np.ndarray:
    """(n, nbytes) bytes -> (n, L) signed lanes of `lane_bits` bits."""
    lb = lane_bits // 8
    by = np.asarray(by, dtype=np.int64)[:, :lanes * lb].reshape(len(by), lanes, lb)
    v = np.zeros(by.shape[:2], dtype=np.int64)
    for b in range(lb):
        v |= by[:, :, b] << (8 * b)
    half = 1 << (lane_bits - 1)
    return np.where(v >= half, v - (1 << lane_bits), v)


@dataclass
class HwStep:
    outputs: dict[str, np.ndarray]  # tensor name -> matrix read back
    weights: dict[str, np.ndarray]  # layer name -> W (out, in) from WMEM
    wcopies: dict[str, np.ndarray]  # learning layer -> W from WTMEM
    counters: dict[str, dict[str, int]]  # phase -> {cycles, mac_busy, mac_stall, drain_wait}
    sim_cycles: int  # harness clock cycles of the whole step (load + run + read-back)


class EngineHarness:
    """Load / run / dump through `engine_tb.sv`."""

    def __init__(self, dut, params: EngineParams) -> None:
        self.dut, self.p = dut, params
        hl = HostWordLayouts(params)
        self.load_codec, self.req_codec, self.dump_codec = Codec(hl.load), Codec(hl.request), Codec(hl.dump)
        self.nbytes = params.host_data_bits // 8
        self._requests: tuple | None = None

    async def _handshake(self, go, done) -> None:
        from cocotb.triggers import RisingEdge, Timer

        go.value = 1
        await RisingEdge(done)
        go.value = 0
        await Timer(20, "ns")

    async def load(self, sel: np.ndarray, addr: np.ndarray, data: np.ndarray) -> None:
        """Write words (data: (n, nbytes) bytes) into the engine's memories, in chunks."""
        for s in range(0, len(sel), LD_DEPTH):
            sl = slice(s, s + LD_DEPTH)
            n = self.load_codec.write_hex(Path("load.hex"), {"data": data[sl], "addr": addr[sl],
                                                              "sel": sel[sl]})
            self.dut.n_ld.value = n
            await self._handshake(self.dut.ld_go, self.dut.ld_done)

    async def run(self) -> None:
        await self._handshake(self.dut.run_go, self.dut.run_done)

    async def read(self, sel: np.ndarray, addr: np.ndarray) -> np.ndarray:
        """Read words back: (n, word_bits/8) bytes."""
        from cocotb.triggers import Timer

        outs = []
        for s in range(0, len(sel), DP_DEPTH):
            sl = slice(s, s + DP_DEPTH)
            key = (sel[sl].tobytes(), addr[sl].tobytes())
            if self._requests != key:  # the read-back list is reloaded only when it changes
                self.req_codec.write_hex(Path("requests.hex"), {"addr": addr[sl], "sel": sel[sl]})
                self.dut.rq_go.value = 1
                await Timer(20, "ns")
                self.dut.rq_go.value = 0
                await Timer(20, "ns")
                self._requests = key
            n = len(sel[sl])
            self.dut.n_dp.value = n
            await self._handshake(self.dut.dp_go, self.dut.dp_done)
            outs.append(self.dump_codec.read_hex(Path("dump.hex"), n))
        return np.concatenate(outs)


class EngineBackend:
    """The engine running a compiled program: weights resident, one `train_step` per batch."""

    def __init__(self, dut, prog: Program) -> None:
        self.prog, self.p = prog, prog.params
        self.h = EngineHarness(dut, prog.params)
        self.dut = dut
        self._cmd_lr = None
        self._plan = self._readback_plan()

    # ---- words -------------------------------------------------------------------------------
    def _tensor_words(self, t: Tensor, mat: np.ndarray):
        lanes = pack_tensor(t, mat)
        lb = self.p.lane_width(t.sel)
        lim = 1 << (lb - 1)
        if lanes.size and (lanes.min() < -lim or lanes.max() >= lim):
            raise NitroError(f"engine: {t.name} has values outside the {lb}-bit lanes of its memory")
        data = lanes_to_bytes(lanes, lb, self.h.nbytes)
        n = len(lanes)
        return np.full(n, t.sel, np.int64), t.base + np.arange(n, dtype=np.int64), data

    def _command_words(self):
        cmds, ncw = self.prog.commands, self.p.cmd_words
        data = np.zeros((len(cmds) * ncw, self.h.nbytes), dtype=np.int64)
        for i, c in enumerate(cmds):
            c2 = dict(c)
            c2["phase"] = self.prog.phases.index(c["phase"])
            raw = np.frombuffer(pack_command(self.prog, c2).to_bytes(ncw * 8, "little"), dtype=np.uint8)
            data[i * ncw:(i + 1) * ncw, :8] = raw.reshape(ncw, 8)
        n = len(data)
        return np.full(n, SEL_CMEM, np.int64), np.arange(n, dtype=np.int64), data

    async def _load(self, parts) -> None:
        sel = np.concatenate([p_[0] for p_ in parts])
        addr = np.concatenate([p_[1] for p_ in parts])
        data = np.concatenate([p_[2] for p_ in parts])
        await self.h.load(sel, addr, data)

    # ---- host API ----------------------------------------------------------------------------
    async def load_weights(self, params: dict[str, np.ndarray]) -> None:
        await self._load([self._tensor_words(t, m) for t, m in weight_tensors(self.prog, params)])

    async def train_step(self, x: np.ndarray, y: np.ndarray, lr_inv: int, fault=None) -> HwStep:
        """Stream the batch, run one training step on the engine, read everything back."""
        from hw.engine.compiler import set_lr

        parts = [self._tensor_words(t, m) for t, m in batch_tensors(self.prog, x, y)]
        if self._cmd_lr != lr_inv:
            set_lr(self.prog, lr_inv)
            parts.append(self._command_words())
        c0 = int(self.dut.cycle.value)
        await self._load(parts)
        self._cmd_lr = lr_inv
        await self.h.run()
        if fault is not None:
            await self.flip_weight_bit(*fault)
        step = await self._read_back()
        step.sim_cycles = int(self.dut.cycle.value) - c0
        return step

    async def flip_weight_bit(self, layer: str, index: tuple[int, int], bit: int) -> None:
        """Fault injection: flip one bit of one weight the engine just wrote (in WMEM)."""
        lm = self.prog.layers[layer]
        o, i = index
        L = self.p.lanes
        t = lm.w  # W^T: rows = in, feats = out
        addr = t.base + i * t.stride + o // L
        word = await self.h.read(np.array([t.sel]), np.array([addr]))
        lanes = bytes_to_lanes(word, self.p.weight_bits, L)
        lanes[0, o % L] ^= 1 << bit
        lim = 1 << (self.p.weight_bits - 1)
        lanes = ((lanes + lim) % (2 * lim)) - lim
        data = lanes_to_bytes(lanes, self.p.weight_bits, self.h.nbytes)
        await self.h.load(np.array([t.sel]), np.array([addr]), data)

    # ---- read-back ---------------------------------------------------------------------------
    def _readback_plan(self):
        prog = self.prog
        items = []  # (kind, key, tensor or None, count)
        for name, lm in prog.layers.items():
            items.append(("weight", name, lm.w))
            if lm.wt is not None:
                items.append(("wcopy", name, lm.wt))
        for name, t in prog.tensors.items():
            if name.endswith("yhat") or name.endswith(".a.c"):
                items.append(("output", name, t))
        sels, addrs, spans = [], [], []
        pos = 0
        for kind, key, t in items:
            n = t.words
            sels.append(np.full(n, t.sel, np.int64))
            addrs.append(t.base + np.arange(n, dtype=np.int64))
            spans.append((kind, key, t, pos, n))
            pos += n
        nctr = N_PHASES * len(CTR_KINDS)
        sels.append(np.full(nctr, SEL_CTR, np.int64))
        addrs.append(np.arange(nctr, dtype=np.int64))
        spans.append(("ctr", "ctr", None, pos, nctr))
        return np.concatenate(sels), np.concatenate(addrs), spans

    async def _read_back(self) -> HwStep:
        sel, addr, spans = self._plan
        words = await self.h.read(sel, addr)
        L = self.p.lanes
        out, wts, wcp, ctr = {}, {}, {}, {}
        for kind, key, t, pos, n in spans:
            w = words[pos:pos + n]
            if kind == "ctr":
                vals = _u40(w)
                k = len(CTR_KINDS)
                for ph, name in enumerate(self.prog.phases):
                    ctr[name] = {CTR_KINDS[j]: int(vals[ph * k + j]) for j in range(k)}
                continue
            mat = unpack_tensor(t, bytes_to_lanes(w, self.p.lane_width(t.sel), L))
            if kind == "weight":
                wts[key] = mat.T
            elif kind == "wcopy":
                wcp[key] = mat
            else:
                out[key] = mat
        return HwStep(out, wts, wcp, ctr, 0)


def _u40(w: np.ndarray) -> np.ndarray:
    v = np.zeros(len(w), dtype=np.int64)
    for b in range(5):
        v |= np.asarray(w[:, b], dtype=np.int64) << (8 * b)
    return v
