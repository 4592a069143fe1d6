"""Reusable cocotb pieces: driver (stimulus memory), monitor (response memory), scoreboard.

`UnitBench` knows the unit under test from its `UnitJob` (sim.units), loads a batch of input vectors
into the testbench's stimulus memory, lets the design stream them with random valid / ready
patterns, reads the responses back and compares them, in order and bit for bit, with what the
golden model (a callback given by the testbench) says. No Python runs per simulated cycle.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from sim.bank import output_key
from sim.codec import Codec, concat, count, take
from sim.job import UnitJob
from sim.tensors import TensorSource
from sim.units import SIM_UNITS

PERIOD_NS = 10
ALL_INT8 = np.arange(-128, 128, dtype=np.int64)  # every int8 value: the exhaustive stimulus


class UnitBench:
    def __init__(self, dut) -> None:
        self.dut = dut
        self.name = UnitJob.read().unit
        spec = SIM_UNITS[self.name]
        self.unit = spec.factory()
        self.depth = spec.depth
        self.units = getattr(self.unit, "units", [self.unit])  # the instances of a Bank
        self.in_codec = Codec(self.unit.i.payload.shape())
        self.out_codec = Codec(self.unit.o.payload.shape())
        self._clock = None
        self.log = dut._log

    async def _start(self) -> None:
        if self._clock is None:
            self._clock = Clock(self.dut.clk, PERIOD_NS, unit="ns")
            self._clock.start()

    async def stream(self, inputs, n_out: int | None = None, *, valid_p: float = 1.0,
                     ready_p: float = 1.0, seed: int = 1):
        """Stream one chunk (<= depth words) through the unit; return its n_out outputs."""
        await self._start()
        dut, n_in = self.dut, count(inputs)
        n_out = n_in if n_out is None else n_out
        assert 0 < n_in <= self.depth and 0 < n_out <= self.depth
        self.in_codec.write_hex(Path("stim.hex"), inputs)
        dut.rst.value = 1
        dut.n_in.value, dut.n_out.value, dut.seed.value = n_in, n_out, seed
        dut.valid_th.value = round(valid_p * 256)
        dut.ready_th.value = round(ready_p * 256)
        dut.load.value, dut.dump.value = 0, 0
        await ClockCycles(dut.clk, 2)
        dut.load.value = 1
        await ClockCycles(dut.clk, 2)
        dut.load.value = 0
        dut.rst.value = 0
        rate = max(min(valid_p, ready_p), 1 / 64)
        budget = int((n_in + n_out) / rate * 4 + 1000) * PERIOD_NS
        await with_timeout(RisingEdge(dut.done), budget, "ns")
        await ClockCycles(dut.clk, 64)  # anything beyond n_out would be a duplicated output
        got, sent = int(dut.n_got.value), int(dut.n_sent.value)
        assert sent == n_in, f"{self.name}: unit accepted {sent} of {n_in} inputs"
        assert got == n_out, f"{self.name}: {got} outputs for {n_out} expected"
        assert int(dut.proto_err.value) == 0, f"{self.name}: output changed while stalled"
        dut.dump.value = 1
        await ClockCycles(dut.clk, 1)
        dut.dump.value = 0
        return self.out_codec.read_hex(Path("resp.hex"), n_out)

    def per_unit(self, model: Callable) -> Callable:
        """The golden callback for `check`: `model(inputs, unit)` for each unit of a Bank (keyed as
        its outputs), or for the one unit under test."""
        def golden(v):
            if not hasattr(self.unit, "units"):
                return model(v, self.unit)
            return {output_key(k): model(v, u) for k, u in enumerate(self.units)}
        return golden

    async def check(self, label: str, inputs, golden: Callable, *, valid_p: float = 1.0,
                    ready_p: float = 1.0, seed: int = 1) -> int:
        """Elementwise units: stream `inputs` (any count, chunked) and compare with golden(inputs)."""
        n = count(inputs)
        outs = []
        for k, start in enumerate(range(0, n, self.depth)):
            chunk = take(inputs, slice(start, start + self.depth))
            outs.append(await self.stream(chunk, valid_p=valid_p, ready_p=ready_p, seed=seed + k))
        compare(label, inputs, concat(outs), golden(inputs))
        record(self.name, label, n, self.log)
        return n


def compare(label: str, inputs, got, expected, path: str = "") -> None:
    """Scoreboard: every leaf equal, else an assertion naming the first mismatching vectors."""
    if isinstance(expected, dict):  # the same outputs on both sides: none left unchecked
        assert set(got) == set(expected) and expected, \
            f"{label}{path}: outputs {sorted(got)} vs golden {sorted(expected)}"
        for k in expected:
            compare(label, inputs, got[k], expected[k], f"{path}.{k}")
        return
    if isinstance(expected, list):
        assert len(got) == len(expected) > 0, f"{label}{path}: {len(got)} outputs vs golden {len(expected)}"
        for k, e in enumerate(expected):
            compare(label, inputs, got[k], e, f"{path}[{k}]")
        return
    g, e = np.asarray(got, dtype=np.int64), np.asarray(expected, dtype=np.int64)
    assert g.shape == e.shape, f"{label}{path}: shape {g.shape} != golden {e.shape}"
    bad = np.argwhere(g != e)
    if len(bad):
        rows = sorted({int(b[0]) for b in bad[:5]})
        detail = "; ".join(
            (f"#{r}: " + ("" if inputs is None else f"in={_show(take(inputs, slice(r, r + 1)))} ")
             + f"got={g[r].tolist()} golden={e[r].tolist()}") for r in rows
        )
        raise AssertionError(f"{label}{path}: {len(bad)} mismatches vs golden model. {detail}")


def _show(v):
    if isinstance(v, dict):
        return {k: _show(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_show(x) for x in v]
    return np.asarray(v).tolist()[0]


def record(unit: str, label: str, n: int, log) -> None:
    """Append a vector count to counts.json in the test folder (pytest prints them); a check of
    no vectors fails, so no label reports a part that compared nothing."""
    assert n > 0, f"{unit}: {label}: no vectors checked"
    f = Path("counts.json")
    counts = json.loads(f.read_text()) if f.exists() else {}
    counts[label] = counts.get(label, 0) + n
    f.write_text(json.dumps(counts, indent=1))
    log.info("%s: %s: %d vectors bit-exact against the golden model", unit, label, n)


def corner_ints(rng: np.random.Generator, width: int, n: int, pivots=()) -> np.ndarray:
    """n signed `width`-bit values concentrated at the corners: extremes, -1/0/1, pivot multiples
    +-2, log-uniform magnitudes and uniform values (int64)."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    fixed = [lo, lo + 1, lo + 2, -2, -1, 0, 1, 2, hi - 1, hi]
    for p in pivots:
        for k in (1, 2, 3, 127, 128, 129):
            for s in (-1, 1):
                for e in (-2, -1, 0, 1, 2):
                    fixed.append(s * k * p + e)
    fixed = np.array([v for v in fixed if lo <= v <= hi], dtype=np.int64)
    m = n - len(fixed)
    parts = [fixed]
    if m > 0:
        k = m // 4
        mag = np.floor(2.0 ** rng.uniform(0, width - 1, size=k)).astype(np.int64)
        parts.append(np.where(rng.random(k) < 0.5, -mag, mag).clip(lo, hi))
        parts.append(rng.integers(lo, hi, size=k, endpoint=True))
        if pivots:
            piv = rng.choice(np.asarray(pivots, dtype=np.int64), size=m - 3 * k)
            mult = rng.integers(-(1 << (width - 1)) // np.maximum(piv, 1),
                                (1 << (width - 1)) // np.maximum(piv, 1) + 1)
            parts.append((piv * mult + rng.integers(-2, 3, size=len(piv))).clip(lo, hi))
            k2 = k
        else:
            parts.append(rng.integers(lo, hi, size=m - 3 * k, endpoint=True))
            k2 = k
        small = rng.integers(-256, 257, size=k2).clip(lo, hi)
        parts.append(small)
    return np.concatenate(parts)[:max(n, len(fixed))]



def extremes(width: int) -> np.ndarray:
    """The signed `width`-bit values a corner test pairs with every value of the other operand:
    both ends and their neighbours, -1, 0 and 1."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi], dtype=np.int64)


CLIP_POINTS = (-129, -128, -127, -1, 0, 1, 127, 128, 129)  # k: numerators k * SF at the int8 clip


def scaling_stimulus(rng: np.random.Generator, sfs: np.ndarray, n: int,
                     max_scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(z, sf) for a runtime-SF scaler, about n pairs: every int32 extreme with SF 1, 2, 3, 255
    and `max_scale`; numerators +-2 around k * SF at the clip points k; corner_ints' values, its
    fixed corners first. SFs of the last two parts drawn from `sfs`."""
    z0, sf0 = (a.ravel() for a in np.meshgrid(extremes(32), [1, 2, 3, 255, max_scale]))
    m = (n - len(z0)) // 2
    sf1 = rng.choice(sfs, m)
    near = np.clip(rng.choice(CLIP_POINTS, m) * sf1 + rng.integers(-2, 3, m), -(1 << 31), (1 << 31) - 1)
    z2 = corner_ints(rng, 32, n - len(z0) - m)
    return np.concatenate([z0, near, z2]), np.concatenate([sf0, sf1, rng.choice(sfs, len(z2))])

# The MLP steps the elementwise units' real-data testcases take: two of a trained network, one at init.
MLP_STEPS = (("step1", "trained_mlp"), ("step2", "trained_mlp"), ("step1", "initial_mlp"))


def tensors() -> TensorSource:
    """The training-tensor source the runner laid in this test folder (sim.tensors)."""
    return TensorSource.read()


def real_gemm_outputs() -> list[np.ndarray]:
    """The first 4 rows of every linear and convolution output (z, int32) of the MLP steps and,
    when the source has one, a CNN step: real scaling inputs, one array per layer and step."""
    src, out = tensors(), []
    for part, which in MLP_STEPS + ((("step1", "cnn"),) if src.cnn else ()):
        r = src.load(part, which)
        out += [r[k][:4].ravel().astype(np.int64) for k in r
                if k.startswith("fwd/linear") or k.startswith("fwd/conv")]
    return out


def cocotb_test(**kw):
    return cocotb.test(**kw)
