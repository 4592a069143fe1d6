"""Tiling and lowering: every GEMM of a compiled step (`hw.engine.compiler`) cut into tiles the
scratchpads hold, and the engine program that moves and runs them (`hw.engine.program`).

A tile covers whole MAC-array tiles of C: rows [m0, m1) and columns [n0, n1) of the output, and
all of K, or one chunk of K when all of K does not fit (`tileshape`): the chunks of a tile run
one after another and accumulate either in the array (one MAC-array tile) or, for the serial ops,
in the partial-sum memory (up to `pmem_depth` elements of C, so each chunk's operands are loaded
once for all of its MAC-array tiles). A convolution's forward is chunked by window taps (or some
input channels of one), a delta GEMM through a learning pool cut into segments of image rows.
Its operands and outputs are 2-D
blocks of the tensors in external memory; each is LOADed to (or STOREd from) a region of its
scratchpad, where it is contiguous, and the tile's GEMM command addresses those regions. The tile
shape is the one with the fewest operand beats that fits every scratchpad; a GEMM whose outputs
for one MAC-array tile do not fit is refused with the scratchpad and the limit named.

Tiles are grouped into runs (one RUN each, `runs`): a tile that reads a block an earlier tile of
the run wrote joins that run when everything fits, and reads the block where it was written
instead of a store and a load through external memory (the chains of small GEMMs of local
learning: forward, learning layer, delta, updates). The window positions of a convolution's
weight gradient (nine, or two of a tap-packed input: `compiler.tap_packed`) read the same
activations and deltas: they take each block and chunk of K one after another in one run
(`runs._cuts`), each keeping its partial sums in a PMEM region of its own.
A linear forward cut along the batch takes its block's learning layer and delta into the run of
the block's last chunk of K; one cut along its columns takes them, cut at the same columns, into
the run of its last block's last chunk (`runs._chain`).
Per run: LOADs (the A or B block is kept when the next single-tile run of the same GEMM reuses
it), the commands into the command scratchpad, RUN, STOREs, double-buffered (`schedule`); the
last run also loads the next step's first run (`tiles.Prefetch`).
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from model.numerics import NitroError

from .compiler import Program, Tensor, batch_names, cdiv, pack_command
from .image import tensor_span
from .params import CTR_KINDS, N_PHASES, OP_END, SEL_CMEM, SEL_CTR, EngineParams
from .program import (
    END, EXT_ADDR_W, PROGRAM_WORD_BITS, SWAP, Command, Transfer, bus_words, ext_word_bytes, store,
)
from .runs import group_runs, step_cuts, window_groups
from .schedule import schedule, synced, ucode_load
from .tiles import EngineProgram, Prefetch

N_COUNTERS = N_PHASES * len(CTR_KINDS)


def lower(prog: Program, inference: bool = False, base: int | None = None) -> EngineProgram:
    """Tile every GEMM of the training step (or of inference), group the tiles into runs and lay
    out the program, its command words and the counters in external memory from byte `base`
    (default: after the tensors)."""
    p = prog.params
    runs = group_runs(step_cuts(window_groups(prog.infer_gemms if inference else prog.gemms), p), p)
    ncw, cw, ctw = p.cmd_words, ext_word_bytes(p, SEL_CMEM), ext_word_bytes(p, SEL_CTR)
    ucode_ext = prog.tensor_bytes if base is None else base
    for run in runs:
        run.ucode_ext = ucode_ext
        ucode_ext += run.commands * ncw * cw
    ctr_ext = _align(ucode_ext)
    stage_ext = _align(ctr_ext + N_COUNTERS * ctw)
    staged = {} if inference else _staged(prog, stage_ext)
    head = [*runs[0].loads, ucode_load(runs[0], p)]
    cmds, skip = schedule(runs, p, [_restaged(x, prog, staged, p) for x in head] if staged else [])
    tail = [store(Transfer(SEL_CTR, 0, 1, N_COUNTERS, ctr_ext, N_COUNTERS * ctw)), END]
    prog_ext = _align(max([stage_ext] + [s.ext + _bytes(s, p) for s in staged.values()]))
    cold = synced(cmds + tail, p)
    end = prog_ext + len(cold) * PROGRAM_WORD_BITS // 8
    pf = None
    if skip:  # the warm program: without the first run's loads (they wait for no STORE: no SYNC)
        assert cold[:len(head) + 1] == cmds[:len(head) + 1] and cmds[len(head)] == SWAP
        warm = cold[skip:]
        pf = Prefetch(staged, warm, _align(end))
        end = pf.ext + len(warm) * PROGRAM_WORD_BITS // 8
    if _align(end) > 1 << EXT_ADDR_W:
        raise NitroError(f"engine: the tensors, command words, counters, staged batch and programs "
                         f"need {_align(end) / (1 << 30):.2f} GiB of external memory; the engine's "
                         f"AXI addresses are {EXT_ADDR_W} bits (4 GiB): a smaller batch fits")
    return EngineProgram(prog, runs, cold, runs[0].ucode_ext, prog_ext, ctr_ext, _align(end), pf)


def _bytes(t: Tensor, p: EngineParams) -> int:
    """Bytes of tensor `t` in external memory."""
    return tensor_span(p, t)[1] * 8


def _staged(prog: Program, base: int) -> dict[str, Tensor]:
    """A copy of every batch tensor from byte `base`, for the next step's batch."""
    out = {}
    for name in batch_names(prog):
        t = prog.tensors[name]
        out[name] = replace(t, ext=base)
        base = _align(base + _bytes(t, prog.params))
    return out


def _restaged(x: Transfer, prog: Program, staged: dict[str, Tensor], p: EngineParams) -> Transfer:
    """Transfer `x`, reading the staged copy where it reads a batch tensor."""
    for name, s in staged.items():
        t = prog.tensors[name]
        if t.ext <= x.ext < t.ext + _bytes(t, p):
            return replace(x, ext=x.ext - t.ext + s.ext)
    return x


def _align(a: int) -> int:
    return cdiv(a, 4096) * 4096


# ---- external memory words -----------------------------------------------------------------------

def ucode_words(ep: EngineProgram) -> np.ndarray:
    """The runs' command words (64-bit, as the command scratchpad holds them, each in a bus beat of
    its own), for the region at `ep.ucode_ext`, as 64-bit words; rewritten whenever
    `compiler.set_lr` changes the update constants."""
    p, prog = ep.params, ep.prog
    end = pack_command(p, {"op": OP_END, "phase": prog.phases.index("control")})
    words: list[int] = []
    for run in ep.runs:
        words += [pack_command(p, t.gemm.fields(prog.phases.index(t.gemm.phase))) for t in run.tiles]
        words.append(end)
    flat = np.array([w for v in words for w in bus_words(v, p.cmd_words)], dtype=np.uint64)
    out = np.zeros((len(flat), ext_word_bytes(p, SEL_CMEM) // 8), dtype=np.uint64)
    out[:, 0] = flat
    return out.reshape(-1)


def program_words(commands: list[Command]) -> np.ndarray:
    words = PROGRAM_WORD_BITS // 64
    out = np.zeros((len(commands), words), dtype=np.uint64)
    for i, c in enumerate(commands):
        out[i] = bus_words(c.pack(), words)
    return out.reshape(-1)


def program_digest(ep: EngineProgram) -> str:
    """SHA-256 of all the engine runs of `ep` but its data: the program's words, its warm start's
    and the runs' command words, so that a recorded run can be matched with a recompiled one."""
    h = hashlib.sha256(program_words(ep.commands).tobytes())
    if ep.prefetch is not None:
        h.update(program_words(ep.prefetch.commands).tobytes())
    h.update(ucode_words(ep).tobytes())
    return h.hexdigest()
