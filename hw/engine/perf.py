"""Performance model of the streaming engine: cycles per step of a compiled program (`tiling.lower`)
for a memory model, per unit (fetch, load, store, waiting for the core or the stores) and per
phase of the core.

The sequencer is replayed command by command: a fetch, then a LOAD to completion, a STORE into
the store queue (waiting while STORE_QUEUE are queued; the store unit moves them one after
another in the background, each as soon as the one before has sent its last beat: that one's
responses come back while the next one's beats go out; the next one's bursts are counted as if
every outstanding-burst slot were free, so with long latencies and short bursts it is
optimistic), RUN starting the core in the background, SYNC waiting for the
stores, SWAP and END for them and the core. The parts:

  fetch      : FETCH_CYCLES + the read port's latency (the memory's first-beat latency +
               READ_PORT_CYCLES) + the read gap, stretched by the stalls (one burst)
  transfer   : one DMA command per row, cut into bursts (<= DMA_MAX_BURST beats, never across
               4 KiB); the splitter issues one row's first burst per cycle and each further burst
               of a row BURST_ISSUE_CYCLES after the one before, the bus takes one cycle per beat
               (1 + gap for reads), and at most DMA_OUTSTANDING
               bursts are in flight, each for the latency plus its beats: a transfer takes the
               slowest of the three, plus the first beat's latency and a fixed tail (a STORE:
               its start before the first beat, the last response after it); stalls
               stretch a beat's cycle by 1 / (1 - stall probability) (a read beat's after its gap)
  core run   : RUN_OVERHEAD_CYCLES, COMMAND_CYCLES per further GEMM of the run, and for every
               MAC-array tile of C, max(K, what its output op needs): the serializer takes
               rows x cols cycles per tile (scale, loss, update), the row paths (ReLU backward,
               row-wide scaling) K, but at least the tile buffer's (`row_tile_cycles`); a
               max-pool one cycle per window position read

The constants are the RTL's, measured on it (`scripts/bench_engine.py model` compares the model
with the counters of whole co-simulated training steps: benchmarks/engine/perf_model.json).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hw.axi import burst_split

from .control import UNIT_COUNTERS
from .core import command_flush
from .memory import READ_LATENCY
from .memory_model import MemoryModel
from .params import EngineParams
from .pool import DROP_STAGES
from .program import (
    SOP_END, SOP_LOAD, SOP_RUN, SOP_STORE, SOP_SWAP, SOP_SYNC, Transfer, beats_per_word,
)
from .tilecost import by_rows, mac_cycles
from .tiles import EngineProgram, Run, Tile
from .top import DMA_MAX_BURST, DMA_OUTSTANDING, STORE_QUEUE

FETCH_CYCLES = 7
# a read's round trip beyond the memory's latency: the second register slice each way, the
# DMA reader's buffer and the slices on its command and data streams (fetches and LOADs; a
# STORE's beats leave without waiting for them)
READ_PORT_CYCLES = 5
WAIT_SEEN_CYCLES = 1  # the sequencer sees a unit turn idle through a register
BURST_ISSUE_CYCLES = 3
LOAD_TAIL_CYCLES = 8
STORE_START_CYCLES = 12  # the queue, the command slice, the scratchpad read latency, the FIFO
STORE_RESPONSE_CYCLES = 5  # the last beat out and its response back through the register slices
RUN_OVERHEAD_CYCLES = 118  # the first command's fetch from the scratchpad, pipeline fill, drain, flush, END
COMMAND_CYCLES = 104  # a further GEMM of the same run: fill, drain, flush (its fetch overlaps the flush)
BURST_SLOT_CYCLES = 1  # a burst holds its outstanding slot for the latency, its beats and the AR handshake


@dataclass
class Prediction:
    """Cycles per step, per unit, and per phase (or per GEMM, `predict`'s `key`): the core's own
    cycles (`phases`) and the cycles it sat idle between the run before and a run (`waits`: the
    sequencer moving the run's LOADs and command words, or waiting on STOREs, a full store queue
    or a SYNC; before the first run, the cold start), shared among the run's tiles as their core
    cycles are. Together they cover the step up to the last run's end; the rest is the last
    STOREs' tail."""

    cycles: float = 0.0
    units: dict[str, float] = field(default_factory=lambda: dict.fromkeys(UNIT_COUNTERS, 0.0))
    phases: dict[str, float] = field(default_factory=dict)
    waits: dict[str, float] = field(default_factory=dict)


def images_per_s(mhz: float, batch: int, cycles_per_step: float) -> float:
    """Training images/s at `mhz` of steps of `batch` images, `cycles_per_step` each."""
    return mhz * 1e6 / cycles_per_step * batch


def bursts(x: Transfer, p: EngineParams) -> int:
    """AXI bursts of a transfer: each row cut at DMA_MAX_BURST beats and at 4 KiB boundaries."""
    bb, beats = p.bus_bits // 8, x.row_words * beats_per_word(p, x.sel)
    return sum(1 for r in range(x.rows) for _ in burst_split(x.ext + r * x.stride, beats, bb, DMA_MAX_BURST))


def moving_cycles(x: Transfer, p: EngineParams, latency: int, stall: float, store: bool,
                  gap: int = 0) -> float:
    """The slowest of: issuing the bursts, moving the beats, and keeping at most DMA_OUTSTANDING
    bursts in flight (each holds its slot for the latency, its beats and BURST_SLOT_CYCLES)."""
    slow = 1.0 / (1.0 - stall)  # handshakes withheld with probability `stall`
    # a read beat waits out the gap, then for the first cycle its channel is not stalled (a stall
    # during the gap costs nothing)
    move = x.words * beats_per_word(p, x.sel) * (slow if store else gap + slow)
    n = bursts(x, p)
    slots = (n * (latency + BURST_SLOT_CYCLES) + move) / DMA_OUTSTANDING
    # a row's first burst leaves a cycle after the one before, a further burst of the same row
    # BURST_ISSUE_CYCLES after its own; only the AR / AW handshake waits on stalls
    issue = x.rows + (n - x.rows) * BURST_ISSUE_CYCLES + n * stall * slow
    return max(move, issue, slots)


def load_cycles(x: Transfer, p: EngineParams, latency: int, stall: float, gap: int = 0) -> float:
    """A LOAD from its start to its last word written."""
    return moving_cycles(x, p, latency, stall, False, gap) + latency + LOAD_TAIL_CYCLES


def pool_cycles(words: int, window: int, mask: bool, drop: bool = False) -> int:
    """A max-pool command (`hw.engine.pool`): one read per window position and pooled word
    (twice with the marked copy of s, or the keep mask of dropout), then the last writes after
    the read latency (and dropout's stages)."""
    return (words * window * (2 if mask or drop else 1) + READ_LATENCY + 6
            + (DROP_STAGES if drop else 0))


def tile_cycles(tile: Tile, p: EngineParams) -> float:
    """The core's cycles for one tile's MAC-array tiles."""
    g = tile.gemm
    if g.pool is not None:
        pg = g.pool
        return pool_cycles(g.fields(0)["m_len"] * g.n * pg.wo * pg.words, pg.kh * pg.kw, pg.mask,
                           pg.drop > 0)
    if g.k_hold:  # a chunk of K that ends no tile: its beats only
        return g.k
    return mac_cycles(p, g.m, g.n, g.k, by_rows(g.op, g.p_in, g.p_out))


def run_cycles(run: Run, p: EngineParams) -> list[float]:
    """The core's cycles for each tile of a run, the run's fixed cost on its first tile; the
    overheads are a scaling command's, shorter by the flush its op does without."""
    fl = command_flush(p)
    return [tile_cycles(t, p) + (RUN_OVERHEAD_CYCLES if k == 0 else COMMAND_CYCLES) - fl.full
            + fl.of(t.gemm.k_hold, t.gemm.p_in, t.gemm.p_out, t.gemm.op) for k, t in enumerate(run.tiles)]


def by_phase(tile: Tile) -> str:
    return tile.gemm.phase


def by_gemm(tile: Tile) -> str:
    """The GEMM of the step a tile belongs to (`compiler.Gemm.name`: a layer's forward, update...)."""
    return tile.parent.name


def predict(ep: EngineProgram, memory: MemoryModel = MemoryModel(), warm: bool = False,
            key: Callable[[Tile], str] = by_phase) -> Prediction:
    """Cycles of one run of program `ep` (`warm`: its warm start, `tiles.Prefetch`) on `memory`,
    the core's per `key` of its tiles (the counters' phases, or `by_gemm`)."""
    p, stall = ep.params, memory.stall_pct / 100
    latency, gap = memory.latency, memory.gap
    names = ep.prog.phases if key is by_phase else list(dict.fromkeys(key(t) for t in ep.tiles))
    pred = Prediction(phases=dict.fromkeys(names, 0.0), waits=dict.fromkeys(names, 0.0))
    t, core_free = 0.0, 0.0
    starts: list[float] = []  # when each STORE leaves the queue for the store unit, in order
    store_free, stores_end = 0.0, 0.0  # the store unit's last beat sent; its last response

    def wait_until(free: float) -> None:
        nonlocal t
        wait = max(0.0, free + WAIT_SEEN_CYCLES - t) if free > t else 0.0
        t += wait
        pred.units["wait_cycles"] += wait

    runs = iter(ep.runs)
    read_latency = latency + READ_PORT_CYCLES
    for c in ep.prefetch.commands if warm else ep.commands:
        f = FETCH_CYCLES + read_latency + gap + 3 * stall / (1.0 - stall)  # AR and two R beats
        t += f
        pred.units["fetch_cycles"] += f
        if c.op == SOP_LOAD:
            d = load_cycles(c.xfer, p, read_latency, stall, gap)
            t += d
            pred.units["load_cycles"] += d
        elif c.op == SOP_STORE:  # queued for the store unit; the sequencer goes on
            starts = [s for s in starts if s > t]
            while len(starts) >= STORE_QUEUE:
                wait_until(starts.pop(0))
            starts.append(max(t, store_free))
            store_free = starts[-1] + STORE_START_CYCLES + moving_cycles(c.xfer, p, latency, stall, True)
            end = store_free + latency + STORE_RESPONSE_CYCLES
            pred.units["store_cycles"] += end - max(t, stores_end)  # a STORE queued or moving
            stores_end = end
        elif c.op == SOP_RUN:
            run = next(runs)
            rs = run_cycles(run, p)
            core, idle = sum(rs), t + 1 - core_free  # idle since the run before ended (or the start)
            core_free = t + 1 + core
            pred.units["run_cycles"] += core
            for tile, r in zip(run.tiles, rs):
                pred.phases[key(tile)] += r
                pred.waits[key(tile)] += idle * r / core
        elif c.op == SOP_SYNC:
            wait_until(stores_end)
        elif c.op in (SOP_SWAP, SOP_END):
            wait_until(max(core_free, stores_end))
    pred.cycles = t
    return pred
