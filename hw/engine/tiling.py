"""Tiling and lowering: every GEMM of a compiled step (`hw.engine.compiler`) cut into tiles the
scratchpads hold, and the engine program that moves and runs them (`hw.engine.program`).

A tile covers whole MAC-array tiles of C: rows [m0, m1) and columns [n0, n1) of the output, and
all of K, or one chunk of K when all of K does not fit (`_chunk_shape`): the chunks of a tile run
one after another and accumulate either in the array (one MAC-array tile) or, for the serial ops,
in the partial-sum memory (up to `pmem_depth` elements of C, so each chunk's operands are loaded
once for all of its MAC-array tiles). A convolution's forward is chunked by window taps, a delta
GEMM through a learning pool cut into segments of image rows. Its operands and outputs are 2-D
blocks of the tensors in external memory; each is LOADed to (or STOREd from) a region of its
scratchpad, where it is contiguous, and the tile's GEMM command addresses those regions. The tile
shape is the one with the fewest operand beats that fits every scratchpad; a GEMM whose outputs
for one MAC-array tile do not fit is refused with the scratchpad and the limit named.

Tiles are grouped into runs (one RUN each, `_group`): a tile that reads a block an earlier tile of
the run wrote joins that run when everything fits, and reads the block where it was written
instead of a store and a load through external memory (the chains of small GEMMs of local
learning: forward, learning layer, delta, updates). The window positions of a convolution's
weight gradient (nine, or two of a tap-packed input: `compiler.tap_packed`) read the same
activations and deltas: they take each block and chunk of K one after another in one run
(`_cuts`), each keeping its partial sums in a PMEM region of its own.
A linear forward cut along the batch takes its block's learning layer and delta into the run of
the block's last chunk of K; one cut along its columns takes them, cut at the same columns, into
the run of its last block's last chunk (`_chain`).
Per run: LOADs (the A or B block is kept when the next single-tile run of the same GEMM reuses
it), the commands into the command scratchpad, RUN, STOREs, double-buffered (`_schedule`); the
last run also loads the next step's first run (`Prefetch`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import takewhile

import numpy as np

from model.numerics import NitroError

from .compiler import (
    BATCH_TENSORS, PARTIAL_OPS, SLOTS, Gemm, Program, Tensor, cdiv, pack_command, read_slots,
    validate_gemm, written_slots,
)
from .image import tensor_span
from .params import (
    CTR_KINDS, MEM_NAMES, N_PHASES, OP_END, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU,
    OP_SGD, SEL_CMEM, SEL_CTR, EngineParams,
)
from .program import (
    END, PROGRAM_WORD_BITS, RUN, SOP_END, SOP_LOAD, SOP_STORE, SOP_SWAP, SWAP, SYNC, Command,
    Transfer, beats_per_word, bus_words, ext_word_bytes, load, store,
)
from .tilecost import by_rows, mac_cycles

N_COUNTERS = N_PHASES * len(CTR_KINDS)


@dataclass(frozen=True)
class Block:
    """Element ranges [r0, r1) x [f0, f1) of a tensor (rows x features); with `reps` > 1 the
    features f0 + q * period + [0, f1 - f0) for q < reps (some channels of every pixel)."""

    t: Tensor
    r0: int
    r1: int
    f0: int
    f1: int
    period: int = 0
    reps: int = 1

    @property
    def f_end(self) -> int:
        return self.f0 + (self.reps - 1) * self.period + self.f1 - self.f0


@dataclass
class Tile:
    parent: Gemm
    gemm: Gemm  # the tile's command, on scratchpad addresses
    loads: list[Transfer]  # the blocks it reads that its run does not hold yet
    stores: list[Transfer]  # the blocks it writes that no earlier tile of its run wrote


@dataclass
class Run:
    """Tiles run back to back in one scratchpad set: one RUN of their GEMM commands, then END."""

    tiles: list[Tile]
    top: dict[int, int] = field(default_factory=dict, repr=False)  # words used per scratchpad
    held: dict[tuple, Tensor] = field(default_factory=dict, repr=False)  # block key -> region
    written: set[tuple] = field(default_factory=set, repr=False)  # block keys its tiles write
    ucode_ext: int = 0  # byte address of its command words

    @property
    def loads(self) -> list[Transfer]:
        return [x for t in self.tiles for x in t.loads]

    @property
    def stores(self) -> list[Transfer]:
        return [x for t in self.tiles for x in t.stores]

    @property
    def kept(self) -> set:
        """The operand blocks (A, B) a single-tile run leaves in its set for the next tile of the
        same GEMM."""
        if len(self.tiles) != 1:
            return set()
        t = self.tiles[0]
        return {(id(t.parent), x) for x in t.loads[:2]}

    @property
    def commands(self) -> int:
        """Its command words: a GEMM per tile, then END."""
        return len(self.tiles) + 1


@dataclass
class Prefetch:
    """Steps back to back: while a step's last run computes, the next step's first run is loaded
    into the set it runs in, its batch blocks from a copy of the next batch the host writes
    beside the current one (`staged`: batch tensor -> that copy). The next step then starts warm:
    `commands`, the program without the first run's loads, at `ext`."""

    staged: dict[str, Tensor]
    commands: list[Command]
    ext: int


@dataclass
class EngineProgram:
    """A compiled step ready for the engine: tensors, tiles, program and where each lives."""

    prog: Program
    runs: list[Run]
    commands: list[Command]
    ucode_ext: int
    prog_ext: int
    ctr_ext: int
    ext_bytes: int
    prefetch: Prefetch | None = None

    @property
    def params(self) -> EngineParams:
        return self.prog.params

    @property
    def tiles(self) -> list[Tile]:
        return [t for r in self.runs for t in r.tiles]


def _blocks(g: Gemm, m0: int, m1: int, n0: int, n1: int, k0: int = 0, k1: int | None = None,
            outs: bool = True) -> dict[str, Block]:
    """Role ('a', 'b', slot) -> the block of its tensor that the tile [m0, m1) x [n0, n1) uses,
    for the K range [k0, k1) (default all of K); without the output slots when `outs` is False."""
    k1 = g.k if k1 is None else k1
    if g.conv is not None:
        return _conv_blocks(g, m0, m1, n0, n1, k0, k1, outs)
    if g.pool is not None:
        return _pool_blocks(g, m0, m1, n0, n1, k0, k1, outs)
    if g.unpool is not None:
        return _unpool_blocks(g, m0, m1, n0, n1, k0, k1, outs)
    blocks = {"a": Block(g.a, m0, m1, k0, k1) if g.a.layout == "col" else Block(g.a, k0, k1, m0, m1),
              "b": Block(g.b, k0, k1, n0, n1)}
    for slot, t in g.outs.items() if outs else ():
        blocks[slot] = Block(t, n0, n1, m0, m1) if slot == "o4" else Block(t, m0, m1, n0, n1)
    return blocks


def _conv_blocks(g: Gemm, m0: int, m1: int, n0: int, n1: int, k0: int, k1: int,
                 outs: bool) -> dict[str, Block]:
    """A convolution's blocks are whole images (rows of its tensors): the forward's tile is L
    images (M = images x pixels) with all of K and N; a weight gradient's K range is whole
    images, its A and B blocks all their channels (the MAC-array tile is an offset in them)."""
    cg, hw = g.conv, g.conv.pixels
    if cg.window is None:
        i0, y0, y1, s0, s1 = _fwd_rows(cg, m0, m1, g.a.lanes, _taps(cg, k0, k1))
        ci, co, w = cg.c_in, cg.c_out, cg.w
        blocks = {"a": Block(g.a, i0, i0 + g.a.lanes, s0 * w * ci, s1 * w * ci),
                  "b": Block(g.b, k0, k1, n0, n1)}
        if n1 - n0 == co:
            out = {slot: Block(t, i0, i0 + g.a.lanes, y0 * w * co, y1 * w * co)
                   for slot, t in g.outs.items()}
        else:  # some output channels of every pixel
            out = {slot: Block(t, i0, i0 + g.a.lanes, y0 * w * co + n0, y0 * w * co + n1, co,
                               (y1 - y0) * w) for slot, t in g.outs.items()}
    else:
        i0, y0, y1, s0, s1 = _wgrad_rows(cg, k0, k1)
        i1 = max(i0 + 1, k1 // hw)
        row0 = cg.row0
        a_px, b_px = g.a.feats // hw * cg.w, g.b.feats // hw * cg.w  # features per image row
        blocks = {"a": Block(g.a, i0, i1, s0 * a_px, s1 * a_px),
                  "b": Block(g.b, i0, i1, y0 * b_px, y1 * b_px)}
        a_cut, b_sliced = _wgrad_cut(g, m0, m1, n0, n1)
        if b_sliced:  # some output channels of a chunked gradient: their deltas only
            blocks["b"] = Block(g.b, i0, i1, y0 * b_px + n0, y0 * b_px + n1, cg.c_out,
                                (y1 - y0) * cg.w)
        if a_cut is not None:  # ... and some input channels: their activations only
            blocks["a"] = Block(g.a, i0, i1, s0 * a_px + a_cut[0], s0 * a_px + a_cut[1],
                                a_px // cg.w, (s1 - s0) * cg.w)
        out = {slot: Block(t, row0 + m0, row0 + m1, n0, n1) for slot, t in g.outs.items()}
    return blocks | (out if outs else {})


def _wgrad_cut(g: Gemm, m0: int, m1: int, n0: int, n1: int) -> tuple[tuple[int, int] | None, bool]:
    """A weight-gradient tile's operand slices: the features [a0, a1) of each pixel (whole
    words) its A block holds when that is not all of them (else None), and whether its B block
    holds only the tile's output channels' deltas."""
    L = g.a.lanes
    a0, a1 = m0 // L * L, cdiv(m1, L) * L
    return (a0, a1) if a1 - a0 < g.a.feats // g.conv.pixels else None, n1 - n0 < g.conv.c_out


def _wgrad_rows(cg, k0: int, k1: int) -> tuple[int, int, int, int, int]:
    """A weight-gradient chunk [k0, k1) of K = images x pixels: its first image, output rows
    [y0, y1) (all rows when it spans whole images) and the source rows [s0, s1) they read."""
    hw = cg.pixels
    if k1 - k0 >= hw:
        return k0 // hw, 0, cg.h, 0, cg.h
    y0 = k0 % hw // cg.w
    y1 = y0 + (k1 - k0) // cg.w
    return k0 // hw, y0, y1, max(y0 - 1, 0), min(y1 + 1, cg.h)


def _pool_blocks(g: Gemm, m0: int, m1: int, n0: int, n1: int, k0: int, k1: int,
                 outs: bool) -> dict[str, Block]:
    """A max-pool's tile: images [m0, m1), output rows [n0, n1), words [k0, k1) of each pixel;
    its source (and s, and its marked copy) the image rows their windows read."""
    pg = g.pool
    s0, s1 = pg.source_rows(n0, n1)

    def rows(t: Tensor, r0: int, r1: int, w: int, pixels: int) -> Block:
        fp = t.feats // pixels  # features per pixel
        if k1 - k0 == pg.words:
            return Block(t, m0, m1, r0 * w * fp, r1 * w * fp)
        fw = fp // pg.words  # features per word
        return Block(t, m0, m1, r0 * w * fp + k0 * fw, r0 * w * fp + k1 * fw, fp, (r1 - r0) * w)

    blocks = {"a": rows(g.a, s0, s1, pg.w, pg.h * pg.w)}
    for slot, t in g.outs.items() if outs else ():
        blocks[slot] = (rows(t, n0, n1, pg.wo, pg.ho * pg.wo) if slot == "o0" else
                        rows(t, s0, s1, pg.w, pg.h * pg.w))
    return blocks


def _unpool_blocks(g: Gemm, m0: int, m1: int, n0: int, n1: int, k0: int, k1: int,
                   outs: bool) -> dict[str, Block]:
    """A delta GEMM through a learning pool: columns [n0, n1) are whole image rows of the
    un-pooled delta, or a segment of whole windows of one; B holds the pooled pixels whose
    windows cover them."""
    pg, row = g.unpool, _unpool_row(g)
    r0, r1 = pg.pooled_rows(n0 // row, cdiv(n1, row))
    prow = g.b.feats // pg.ho
    f0, f1 = r0 * prow, r1 * prow
    seg = _unpool_segment(g, n0, n1)
    if seg is not None:  # its windows' pooled pixels
        (x0, w), px = seg, row // pg.w  # (features per pixel)
        f0 += (x0 + pg.pw) // pg.kw * px
        f1 = f0 + cdiv(w + (x0 + pg.pw) % pg.kw, pg.kw) * px
    blocks = {"a": Block(g.a, m0, m1, k0, k1), "b": Block(g.b, k0, k1, f0, f1)}
    for slot, t in g.outs.items() if outs else ():
        blocks[slot] = Block(t, m0, m1, n0, n1)
    return blocks


def _unpool_segment(g: Gemm, n0: int, n1: int) -> tuple[int, int] | None:
    """(first pixel, pixels) of a delta tile through a learning pool that is a segment of one
    image row; None for whole rows."""
    row = _unpool_row(g)
    if (n1 - n0) % row == 0 and n0 % row == 0:
        return None
    px = row // g.unpool.w  # features per pixel
    return n0 % row // px, (n1 - n0) // px


def _unpool_row(g: Gemm) -> int:
    """Features per image row of a delta GEMM through a learning pool (its N spans the rows the
    pool's windows cover)."""
    return g.n // g.unpool.covered


def _pool_shape(g: Gemm, p: EngineParams) -> TileShape:
    """The images (whole words of them in the batch-packed layout) x output rows that fit with
    the most output words per tile."""
    step = p.lanes if g.a.layout == "col" else 1

    def fits(i: int, r: int, wc: int) -> bool:  # a band away from the top reads kh rows each
        n0 = min(1, g.n - r)
        return _fits(g, p, i, n0 + r, wc, n0=n0)

    # some words of each pixel: of L images at most when batch-packed (a strided block)
    best = max(((i * r * wc, i, r, wc) for wc in range(1, g.k + 1) if g.k % wc == 0
                for i in range(step, (g.m if wc == g.k or step == 1 else step) + 1, step)
                for r in [_largest(0, g.n, lambda r: fits(i, r, wc))] if r), default=None)
    if best is not None:
        return TileShape(best[1], best[2], False, best[3])
    s, u, d = _overflow(g, p, step, 1, 1)
    raise NitroError(f"engine: {g.name} needs {u} words of the {s} scratchpad for one word of "
                     f"each pixel of one output row of {step} image(s); the engine has {d}")


def _unpool_shape(g: Gemm, p: EngineParams) -> TileShape:
    """Whole MAC-array tiles of rows x whole image rows of the delta, the most words that fit;
    else L images x segments of image rows, each the most whole pooling windows that fit."""
    L, row, rows, pg = p.lanes, _unpool_row(g), g.unpool.covered, g.unpool
    best = max(((i * r, i, r) for i in range(L, cdiv(g.m, L) * L + 1, L)
                for r in [_largest(0, rows, lambda r: _fits(g, p, min(i, g.m), r * row))]
                if r), default=None)
    if best is not None:
        return TileShape(best[1], best[2] * row, False)
    px, mm = row // pg.w, min(L, g.m)
    for s in range(pg.wo, 0, -1):  # windows per segment
        xs = sorted({0, pg.w} | {x for x in range(s * pg.kw - pg.pw, pg.w, s * pg.kw) if x > 0})
        if all(_fits(g, p, mm, x1 * px, n0=x0 * px) for x0, x1 in zip(xs, xs[1:])):
            edges = sorted({y * row + x * px for y in range(rows) for x in xs})
            return TileShape(mm, 0, False, n_cuts=tuple(edges))
    s, u, d = _overflow(g, p, mm, pg.kw * px)
    raise NitroError(f"engine: {g.name} needs {u} words of the {s} scratchpad for one pooling "
                     f"window of {L} images; the engine has {d}")


def _fwd_rows(cg, m0: int, m1: int, L: int,
              taps: tuple[int, int, int, int] = (0, 3, 0, 3)) -> tuple[int, int, int, int, int]:
    """A forward tile's first image, output rows [y0, y1) and the source rows [s0, s1) the
    window taps `taps` read (M = L-image tiles x pixels x L)."""
    per, row = L * cg.pixels, L * cg.w
    i0, y0 = m0 // per * L, m0 % per // row
    y1 = y0 + (m1 - m0) // row
    s0 = min(max(y0 - 1 + taps[0], 0), cg.h - 1)
    # (taps that read only padding rows still get one row: every beat of it reads zero)
    return i0, y0, y1, s0, max(min(y1 - 2 + taps[1], cg.h), s0 + 1)


def _taps(cg, k0: int, k1: int) -> tuple[int, int, int, int]:
    """The window taps (ky0, ky1, kx0, kx1) of a forward chunk [k0, k1) of K = (ky, kx, c_in):
    whole window rows, or taps of one row."""
    t0, t1 = k0 // cg.c_in, k1 // cg.c_in
    if t0 % 3 == 0 and t1 % 3 == 0:
        return t0 // 3, t1 // 3, 0, 3
    return t0 // 3, t0 // 3 + 1, t0 % 3, t0 % 3 + t1 - t0


def _conv_shape(g: Gemm, p: EngineParams, share: int) -> TileShape:
    return _wgrad_shape(g, p, share) if g.conv.window is not None else _conv_fwd_shape(g, p)


def _conv_fwd_shape(g: Gemm, p: EngineParams) -> TileShape:
    """L images x the most output rows (a divisor of the image's) x output channels that fit with
    the source rows their windows read; when none does with all of K, chunks of K of whole window
    rows or single taps (all input channels), their partial sums in PMEM."""
    L, cg = p.lanes, g.conv
    row = L * cg.w

    def best(kc: int | None, tiles: float) -> tuple | None:
        def fits(r: int, nc: int) -> bool:
            # a tile away from the top reads the most source rows, and of the chunks the one
            # whose taps read the most rows (a whole-image tile: the middle window row's)
            m0 = row * min(1, cg.h - r)
            return r * cg.w * nc // L <= tiles and all(
                _fits(g, p, m0 + r * row, nc, k0 + kc if kc else None, m0=m0, k0=k0)
                for k0 in (range(0, g.k, kc) if kc else (0,)))

        return max(((r * nc, r, nc) for nc in range(L, g.n + 1, L) if g.n % nc == 0
                    for r in range(cg.h, 0, -1) if cg.h % r == 0 and fits(r, nc)), default=None)

    most = p.pmem_depth // (L * L)  # C tiles: pixels x channel words
    for kc, tiles in ((None, float("inf")), (3 * cg.c_in, most), (cg.c_in, most)):  # all, a row, a tap
        b = best(kc, tiles)
        if b is not None:
            return TileShape(b[1] * row, b[2], False, kc, kc is not None)
    s, u, d = _overflow(g, p, row, L, cg.c_in)
    raise NitroError(f"engine: {g.name} (convolution of {cg.w}-pixel rows, {g.k} inputs, "
                     f"{g.n} outputs) needs {u} words of the {s} scratchpad for one row "
                     f"of {L} images, {L} channels and one window tap; the engine has {d}")


def _wgrad_shape(g: Gemm, p: EngineParams, share: int) -> TileShape:
    """A weight gradient: all of K when it fits, else in chunks (`_chunk_shape`, `share` windows
    reading each chunk's blocks) of whole images, or of a band of image rows when one image does
    not fit."""
    L, hw, cg = p.lanes, g.conv.pixels, g.conv
    if _fits(g, p, g.m, g.n):
        return TileShape(g.m, g.n, False)
    n = g.k // hw

    def chunk(mm: int, nn: int) -> int | None:
        if _fits(g, p, mm, nn, hw):
            images = _largest(1, n, lambda i: _fits(g, p, mm, nn, i * hw))
            return cdiv(n, cdiv(n, images)) * hw

        def band(r: int) -> bool:  # rows of one image, away from its top (two more source rows)
            k0 = cg.w * min(1, cg.h - r)
            return _fits(g, p, mm, nn, k0 + r * cg.w, k0=k0)

        rows = [r for r in range(cg.h - 1, 0, -1) if cg.h % r == 0 and band(r)]
        return rows[0] * cg.w if rows else None

    sh = _chunk_shape(g, p, chunk, share)[1]
    if sh is None:
        s, u, d = _overflow(g, p, min(L, g.m), min(L, g.n), cg.w)
        raise NitroError(f"engine: {g.name} (weight gradient over {cg.w}-pixel image rows) needs "
                         f"{u} words of the {s} scratchpad for one row; the engine has {d}")
    return sh


def _local(b: Block, base: int) -> Tensor:
    return Tensor(b.t.name, b.t.sel, b.t.layout, b.r1 - b.r0, (b.f1 - b.f0) * b.reps, base,
                  b.t.lanes)


def _usage(g: Gemm, mm: int, nn: int, kk: int | None = None, m0: int = 0,
           n0: int = 0, k0: int = 0) -> dict[int, int]:
    """Words per scratchpad of the tile [m0, mm) x [n0, nn) x [k0, kk)."""
    use: dict[int, int] = {}
    for b in _blocks(g, m0, mm, n0, nn, k0, kk).values():
        use[b.t.sel] = use.get(b.t.sel, 0) + _local(b, 0).words
    return use


TILE_OVERHEAD_BEATS = 150  # per tile (a run of its own, unless grouped): command words and fetches


@dataclass(frozen=True)
class TileShape:
    m: int  # C rows per tile
    n: int  # C columns per tile
    n_outer: bool  # tiles ordered column-block first: the B block stays, A blocks stream
    k: int | None = None  # K per chunk when all of K does not fit
    partial: bool = False  # the chunks' sums in PMEM (else in the array: one C tile per tile)
    n_cuts: tuple[int, ...] | None = None  # the column edges (from 0 to N) when not every n


def tile_shape(g: Gemm, p: EngineParams, share: int = 1, exposed: bool = False) -> TileShape:
    """The tile shape and order with the fewest operand beats to load: for each column count the
    most rows that fit every scratchpad (and the converse); the operand that stays is loaded once
    per set, the other once per tile. When one MAC-array tile of C with all of K does not fit, K
    is cut into chunks (`_chunk_shape`). `share`: GEMMs that read the same blocks (the windows
    of a weight gradient), which `_cuts` runs together. `exposed`: nothing runs while the first
    tile's operands load (the program's first GEMM), so chunks of K, whose first loads are short,
    are taken when that gains more than the chunks' extra commands cost."""
    if g.conv is not None:
        return _conv_shape(g, p, share)
    if g.pool is not None:
        return _pool_shape(g, p)
    if g.unpool is not None:
        return _unpool_shape(g, p)
    L = p.lanes
    mt, nt = cdiv(g.m, L), cdiv(g.n, L)
    one = (min(L, g.m), min(L, g.n))

    def chunk(mm: int, nn: int) -> int | None:
        kc = _largest(0, g.k, lambda kk: _fits(g, p, mm, nn, kk))
        return cdiv(g.k, cdiv(g.k, kc)) if kc else None

    if not _fits(g, p, *one):
        sh = _chunk_shape(g, p, chunk)[1]
        if sh is None:
            s, u, d = _overflow(g, p, *one, 1)
            raise NitroError(f"engine: {g.name} (M={g.m}, K={g.k}, N={g.n}) needs {u} words of the "
                             f"{s} scratchpad for one {L}x{L} tile; the engine has {d}")
        return sh

    def fits(mc: int, nc: int) -> bool:
        return _fits(g, p, min(mc * L, g.m), min(nc * L, g.n))

    shapes = {(_largest(0, mt, lambda c: fits(c, nc)), nc) for nc in range(1, nt + 1)}
    shapes |= {(mc, _largest(0, nt, lambda c: fits(mc, c))) for mc in range(1, mt + 1)}
    a_beats = g.k * beats_per_word(p, g.a.sel)  # per MAC-array tile of rows
    b_beats = g.k * beats_per_word(p, g.b.sel)  # per MAC-array tile of columns
    best = None
    for mc, nc in shapes:
        if not mc or not nc:
            continue
        mc, nc = cdiv(mt, cdiv(mt, mc)), cdiv(nt, cdiv(nt, nc))  # balanced
        mch, nch = cdiv(mt, mc), cdiv(nt, nc)
        tiles = mch * nch
        for n_outer in (False, True):
            if n_outer:
                beats = nch * nc * b_beats * min(mch, 2) + tiles * mc * a_beats
            else:
                beats = mch * mc * a_beats * min(nch, 2) + tiles * nc * b_beats
            cost = beats + tiles * TILE_OVERHEAD_BEATS
            if best is None or cost < best[0]:
                best = (cost, TileShape(mc * L, nc * L, n_outer))
    sh = best[1]
    if exposed and g.op in PARTIAL_OPS:
        cost, chunked = _chunk_shape(g, p, chunk, exposed=True)
        if chunked is not None and cost < _exposed_cycles(g, p, sh):
            return chunked
    return sh


def _exposed_cycles(g: Gemm, p: EngineParams, sh: TileShape) -> int:
    """A GEMM's cycles in shape `sh` (all of K per tile) when its first tile's operands load with
    nothing to overlap: those beats, then per tile the slower of the operand that streams and
    the MAC-array tiles, and the fixed overhead; `_chunk_shape`'s cost in the same terms."""
    first = _operand_beats(g, p, sh.m, sh.n)
    stream = g.k * beats_per_word(p, (g.a if sh.n_outer else g.b).sel) * (sh.m if sh.n_outer else sh.n)
    macs = mac_cycles(p, sh.m, sh.n, g.k, by_rows(g.op, g.p_in, g.p_out))
    return first + cdiv(g.m, sh.m) * cdiv(g.n, sh.n) * (max(stream, macs) + TILE_OVERHEAD_BEATS)


def _operand_beats(g: Gemm, p: EngineParams, mm: int, nn: int, kk: int | None = None) -> int:
    """Bus beats of the operand blocks of the tile [0, mm) x [0, nn) x [0, kk)."""
    return sum(_local(b, 0).words * beats_per_word(p, b.t.sel)
               for b in _blocks(g, 0, mm, 0, nn, 0, kk, outs=False).values())


def _fits(g: Gemm, p: EngineParams, mm: int, nn: int, kk: int | None = None, **at: int) -> bool:
    """The tile [m0, mm) x [n0, nn) x [k0, kk) (`at`: its starts) fits every scratchpad."""
    return all(u <= p.depth(s) for s, u in _usage(g, mm, nn, kk, **at).items())


def _overflow(g: Gemm, p: EngineParams, mm: int, nn: int,
              kk: int | None = None) -> tuple[str, int, int]:
    """(scratchpad name, words needed, words it has) of the first scratchpad the tile overflows."""
    s, u = next((s, u) for s, u in _usage(g, mm, nn, kk).items() if u > p.depth(s))
    return MEM_NAMES[s], u, p.depth(s)


def _largest(lo: int, hi: int, ok) -> int:
    """The largest c in lo + 1..hi with ok(c), else lo; ok is monotone (true up to some c)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def _chunk_shape(g: Gemm, p: EngineParams, chunk, share: int = 1,
                 exposed: bool = False) -> tuple[float, TileShape | None]:
    """A GEMM whose K does not fit, in chunks of K (`chunk(mm, nn)`: K per chunk of an mm x nn
    tile, None when none fits): on one C tile, the array holding its sums between chunks, or for
    the serial ops on as many C tiles as PMEM holds the partial sums of, so that each chunk's
    operands are loaded once for all of them, and once for as many of the `share` GEMMs reading
    them as PMEM holds the partial sums of. Blocks are balanced (the last one no larger than
    the others). The shape with the fewest cycles: per chunk command of each block the slower of
    its share of the operand beats and its MAC-array tiles, plus the fixed overhead, and with
    `exposed` the first chunk's beats. Returns (that cost, the shape)."""
    L = p.lanes
    mt, nt, most = cdiv(g.m, L), cdiv(g.n, L), p.pmem_depth // (L * L)
    shapes = {(1, 1, False)}
    if g.op in PARTIAL_OPS:  # the largest with all of PMEM, or its share for some GEMMs of `share`
        for t in {most // s for s in range(1, share + 1)}:
            shapes |= {(mc, min(nt, t // mc), True) for mc in range(1, min(mt, t) + 1)}
            shapes |= {(min(mt, t // nc), nc, True) for nc in range(1, min(nt, t) + 1)}
    best = None
    for mc, nc, partial in sorted(shapes):
        if partial:
            mc, nc = cdiv(mt, cdiv(mt, mc)), cdiv(nt, cdiv(nt, nc))
        mm, nn = min(mc * L, g.m), min(nc * L, g.n)
        kc = chunk(mm, nn)
        if kc is None or (partial and mc * nc == 1 and share == 1):
            continue

        def command(bm: int, bn: int) -> float:  # one chunk command of a bm x bn block
            beats = _operand_beats(g, p, bm, bn, kc)
            if not partial:
                return max(beats, kc) + TILE_OVERHEAD_BEATS
            beats /= min(share, _pmem_share(p, mc * nc))
            return max(beats, mac_cycles(p, bm, bn, kc)) + TILE_OVERHEAD_BEATS

        # blocks of mm x nn, and smaller ones at the bottom and right edges
        sizes = [(n, b) for n, b in ((g.m // mm, mm), (1, g.m % mm)) if n and b]
        cols = [(n, b) for n, b in ((g.n // nn, nn), (1, g.n % nn)) if n and b]
        cost = cdiv(g.k, kc) * sum(a * c * command(bm, bn) for a, bm in sizes for c, bn in cols)
        cost += _operand_beats(g, p, mm, nn, kc) if exposed else 0
        if best is None or cost < best[0]:
            best = (cost, TileShape(mm, nn, False, kc, partial))
    return (0, None) if best is None else best


def _pmem_share(p: EngineParams, c_tiles: int) -> int:
    """How many GEMMs PMEM holds the partial sums of at once, each of `c_tiles` MAC-array tiles."""
    return p.pmem_depth // (p.lanes * p.lanes * c_tiles)


def transfers(b: Block, base: int, p: EngineParams) -> list[Transfer]:
    """The 2-D transfers of block `b` to / from scratchpad words `base`..., contiguous on chip:
    one, or for some channels of every pixel one per image (one per L images batch-packed)."""
    if b.reps == 1:
        return [transfer(b, base, p)]
    t, L, n = b.t, b.t.lanes, b.f1 - b.f0
    bpw = ext_word_bytes(p, t.sel)
    if t.layout == "col":
        assert cdiv(b.r1, L) - b.r0 // L == 1, "a strided batch-packed block is one word of images"
        return [Transfer(t.sel, base, b.reps, n, t.ext + ((b.r0 // L) * t.feats + b.f0) * bpw,
                         b.period * bpw)]
    return [Transfer(t.sel, base + k * b.reps * n // L, b.reps, n // L,
                     t.ext + (r * t.stride + b.f0 // L) * bpw, b.period // L * bpw)
            for k, r in enumerate(range(b.r0, b.r1))]


def transfer(b: Block, base: int, p: EngineParams) -> Transfer:
    """The 2-D transfer of block `b` to / from scratchpad words `base`..., contiguous on chip."""
    t, L = b.t, b.t.lanes
    bpw = ext_word_bytes(p, t.sel)
    if t.layout == "wT":  # one row per panel of L columns, landing side by side (row-major)
        j0 = b.f0 // L
        return Transfer(t.sel, base, cdiv(b.f1, L) - j0, b.r1 - b.r0, t.ext + (j0 * t.rows + b.r0) * bpw,
                        t.rows * bpw, across=1)
    if t.layout == "col":
        rows, row_words = cdiv(b.r1, L) - b.r0 // L, b.f1 - b.f0
        ext, stride = t.ext + ((b.r0 // L) * t.feats + b.f0) * bpw, t.feats * bpw
    else:
        rows, row_words = b.r1 - b.r0, cdiv(b.f1, L) - b.f0 // L
        ext, stride = t.ext + (b.r0 * t.stride + b.f0 // L) * bpw, t.stride * bpw
    if row_words * bpw == stride and rows * row_words < (1 << 16):  # contiguous: one row
        rows, row_words = 1, rows * row_words
    return Transfer(t.sel, base, rows, row_words, ext, stride)


def lower(prog: Program, inference: bool = False, base: int | None = None) -> EngineProgram:
    """Tile every GEMM of the training step (or of inference), group the tiles into runs and lay
    out the program, its command words and the counters in external memory from byte `base`
    (default: after the tensors)."""
    p = prog.params
    runs = _group(_step_cuts(_window_groups(prog.infer_gemms if inference else prog.gemms), p), p)
    ncw, cw, ctw = p.cmd_words, ext_word_bytes(p, SEL_CMEM), ext_word_bytes(p, SEL_CTR)
    ucode_ext = prog.tensor_bytes if base is None else base
    for run in runs:
        run.ucode_ext = ucode_ext
        ucode_ext += run.commands * ncw * cw
    ctr_ext = _align(ucode_ext)
    stage_ext = _align(ctr_ext + N_COUNTERS * ctw)
    staged = {} if inference else _staged(prog, stage_ext)
    head = [*runs[0].loads, _ucode_load(runs[0], p)]
    cmds, skip = _schedule(runs, p, [_restaged(x, prog, staged, p) for x in head] if staged else [])
    tail = [store(Transfer(SEL_CTR, 0, 1, N_COUNTERS, ctr_ext, N_COUNTERS * ctw)), END]
    prog_ext = _align(max([stage_ext] + [s.ext + _bytes(s, p) for s in staged.values()]))
    cold = _synced(cmds + tail, p)
    end = prog_ext + len(cold) * PROGRAM_WORD_BITS // 8
    pf = None
    if skip:  # the warm program: without the first run's loads (they wait for no STORE: no SYNC)
        assert cold[:len(head) + 1] == cmds[:len(head) + 1] and cmds[len(head)] == SWAP
        warm = cold[skip:]
        pf = Prefetch(staged, warm, _align(end))
        end = pf.ext + len(warm) * PROGRAM_WORD_BITS // 8
    return EngineProgram(prog, runs, cold, runs[0].ucode_ext, prog_ext, ctr_ext, _align(end), pf)


def _bytes(t: Tensor, p: EngineParams) -> int:
    """Bytes of tensor `t` in external memory."""
    return tensor_span(p, t)[1] * 8


def _staged(prog: Program, base: int) -> dict[str, Tensor]:
    """A copy of every batch tensor from byte `base`, for the next step's batch."""
    out = {}
    for name in BATCH_TENSORS:
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


def _ucode_load(run: Run, p: EngineParams) -> Transfer:
    """A run's command words into the command scratchpad."""
    words = run.commands * p.cmd_words
    return Transfer(SEL_CMEM, 0, 1, words, run.ucode_ext, words * ext_word_bytes(p, SEL_CMEM))


def _window_groups(gemms: list[Gemm]) -> list[list[Gemm]]:
    """The GEMMs in order, the window positions of one weight gradient together (they read the
    same blocks: `_cuts` interleaves them), every other GEMM on its own."""
    def window(g: Gemm) -> bool:
        return g.conv is not None and g.conv.window is not None

    groups: list[list[Gemm]] = []
    for g in gemms:
        if groups and window(g) and window(groups[-1][0]) and groups[-1][0].name == g.name:
            groups[-1].append(g)
        else:
            groups.append([g])
    return groups


def _step_cuts(groups: list[list[Gemm]], p: EngineParams) -> list[_Cut]:
    """The tiles of every GEMM group (`_cuts`) in run order; a forward cut into blocks is followed
    by the learning GEMMs that read those blocks (`_chain`), and the learning-layer update that
    needs all of them then waits for the end of the step. The deferred updates start a run of
    their own (the later ones join it where they fit): their outputs, all that is stored after
    the core ends, are small (`_short_first` makes the next step's first loads fit beside that
    run)."""
    cuts: list[_Cut] = []
    late: list[_Cut] = []
    i = 0
    while i < len(groups):
        chain, deferred, sh = _chain(groups, i, p)
        if not chain:
            cuts += _cuts(groups[i], p, exposed=i == 0, sh=sh)
            i += 1
            continue
        own = _cuts(groups[i], p, sh=sh)
        rows = sh.m < groups[i][0].m
        cuts += _row_follow(own, chain, p) if rows else _column_follow(own, chain, sh, p)
        i += 1 + len(chain)
        if deferred:
            late += [replace(c, joins=bool(late) or k > 0) for k, c in enumerate(_cuts(groups[i], p))]
            i += 1
    return _short_first(cuts, late[-1], p) + late if late else cuts


def _short_first(cuts: list[_Cut], last: _Cut, p: EngineParams) -> list[_Cut]:
    """The step's first GEMM, when it runs in chunks of K, with its first chunk as short as can
    be: at least L*L (so that its MAC-array tiles are not drain bound) and long enough that its
    run covers the next chunk's loads, when its own loads then take no longer than the step's
    last run (`last`), during which the next step loads them (`Prefetch`); the rest of the
    block's K before its last chunk in chunks no longer than before. A cold step waits for
    fewer loads, and a warm one needs no long last run."""
    c0, L = cuts[0], p.lanes
    block = list(takewhile(lambda c: (c.g, c.m0, c.n0) == (c0.g, c0.m0, c0.n0), cuts))
    if not c0.partial or c0.g.conv is not None or len(block) < 2:  # (a convolution's K is taps)
        return cuts
    g, mm, nn, kc, end = c0.g, c0.m1 - c0.m0, c0.n1 - c0.n0, c0.k1 - c0.k0, block[-1].k0
    nxt = _operand_beats(g, p, mm, nn, kc)
    k1 = 1 + _largest(L * L - 1, kc, lambda k: mac_cycles(p, mm, nn, k) + TILE_OVERHEAD_BEATS < nxt)
    budget = mac_cycles(p, last.m1 - last.m0, last.n1 - last.n0, last.k1 - last.k0,
                        by_rows(last.g.op, last.g.p_in, last.g.p_out))
    if k1 >= kc or _operand_beats(g, p, mm, nn, k1) > budget:  # (kc <= end: two chunks or more)
        return cuts
    edges = _balanced(k1, end, cdiv(end - k1, kc))
    head = [replace(c0, k0=0, k1=k1)] + [replace(c0, k0=a, k1=b) for a, b in zip(edges, edges[1:])]
    return head + cuts[len(block) - 1:]


def _row_follow(own: list[_Cut], chain: list[Gemm], p: EngineParams) -> list[_Cut]:
    """A forward cut into blocks of rows, each block's learning GEMMs (its rows) joining the
    run of the block's last chunk of K."""
    cuts: list[_Cut] = []
    chunks: dict[int, list[tuple[int, int]]] = {}  # per block height (the fit is the same)
    for m0, m1 in sorted({(c.m0, c.m1) for c in own}):
        follow = [_Cut(g, m0, m1, 0, g.n, 0, g.k) for g in chain]
        block = [c for c in own if c.m0 == m0]
        if m1 - m0 not in chunks:
            chunks[m1 - m0] = [(c.k0, c.k1) for c in _with_room(block, follow, p)]
        cuts += [replace(block[-1], k0=a, k1=b) for a, b in chunks[m1 - m0]] + follow
    return cuts


def _column_follow(own: list[_Cut], chain: list[Gemm], sh: TileShape, p: EngineParams) -> list[_Cut]:
    """A forward cut into blocks of columns (all rows, shape `sh`), its learning GEMMs
    (`_column_pieces`) joining the run of the last block's last chunk."""
    f = own[0].g
    follow = [c for g in chain for c in _column_pieces(g, f, sh, p)]
    last = [c for c in own if c.n1 == f.n]
    return [c for c in own if c not in last] + _with_room(last, follow, p) + follow


def _column_pieces(g: Gemm, f: Gemm, sh: TileShape, p: EngineParams) -> list[_Cut]:
    """Learning GEMM g after forward f cut into column blocks of `sh`, cut where the last block
    starts: the learning layer (K = f's columns) in two chunks of K, its partial sums in PMEM
    beside the last block's, the first reading the earlier blocks' stored outputs; the delta
    (N = f's columns) in two column blocks."""
    cut = f.n - (f.n % sh.n or sh.n)
    if g.op == OP_SCALE_LOSS:
        p_base = cdiv(f.m, p.lanes) * cdiv(f.n - cut, p.lanes) * p.lanes
        return [_Cut(g, 0, g.m, 0, g.n, 0, cut, True, p_base, True),
                _Cut(g, 0, g.m, 0, g.n, cut, g.k, True, p_base)]
    return [_Cut(g, 0, g.m, 0, cut, 0, g.k), _Cut(g, 0, g.m, cut, g.n, 0, g.k)]


def _chain(groups: list[list[Gemm]], i: int, p: EngineParams) -> tuple[list[Gemm], bool, TileShape]:
    """The learning GEMMs after forward groups[i] that go with its blocks: when the forward (a
    linear layer) is cut along the batch, the learning layer and the delta, whose rows read only
    the same rows, each fit one block; when it is cut along its columns in chunks of K, they
    are cut at the same columns and the learning layer's partial sums fit PMEM beside the last
    block's. They join the run of a block's last chunk instead of waiting for the whole
    forward's outputs to be stored and loaded again. The learning-layer update after them, which
    reads every row, is deferred to the end of the step when no later GEMM touches what it
    reads or writes. Returns (the chain, whether the update is deferred, groups[i]'s shape)."""
    f = groups[i][0]
    sh = tile_shape(f, p, share=len(groups[i]), exposed=i == 0)
    if len(groups[i]) > 1 or f.op != OP_SCALE_RELU or f.conv is not None or f.pool is not None:
        return [], False, sh
    rows = sh.m < f.m and sh.n >= f.n
    if not rows and not (sh.m >= f.m and sh.n < f.n and sh.partial):
        return [], False, sh
    L = p.lanes

    def fits(g: Gemm) -> bool:  # g's pieces (`_row_follow`, `_column_pieces`)
        if rows:
            return _fits(g, p, sh.m, g.n)
        return all(_fits(g, p, c.m1, c.n1, c.k1, m0=c.m0, n0=c.n0, k0=c.k0) and (
            not c.partial or (c.p_base + cdiv(g.m, L) * cdiv(g.n, L) * L) * L <= p.pmem_depth)
            for c in _column_pieces(g, f, sh, p))

    chain = []
    for group in groups[i + 1:]:
        g = group[0]
        if (len(group) > 1 or g.op not in (OP_SCALE_LOSS, OP_RELU_BWD) or g.a.layout != "col"
                or g.m != f.m or g.unpool is not None or not fits(g)):
            break
        chain.append(g)
    if not chain or chain[0].a is not f.outs["o0"]:
        return [], False, sh
    j = i + 1 + len(chain)
    update = j < len(groups) - 1 and groups[j][0].op == OP_SGD
    return chain, update and _deferrable(groups[j], [g for gs in groups[j + 1:] for g in gs]), sh


def touched(g: Gemm) -> tuple[set[str], set[str]]:
    """The names of the tensors GEMM `g` reads and of those it writes."""
    reads = {g.a.name, g.b.name} | {g.outs[s].name for s in read_slots(g.op)}
    return reads, {t.name for s, t in g.outs.items() if s in written_slots(g.op)}


def _deferrable(group: list[Gemm], later: list[Gemm]) -> bool:
    """`group` may run after all of `later`: none of them reads what it writes or writes what
    it reads or writes."""
    for g in group:
        r, w = touched(g)
        if any(w & (r2 | w2) or r & w2 for r2, w2 in map(touched, later)):
            return False
    return True


def _balanced(a: int, b: int, n: int) -> list[int]:
    """The edges of [a, b) cut into n pieces that differ by at most one."""
    return [a + (b - a) * j // n for j in range(n + 1)]


def _with_room(own: list[_Cut], follow: list[_Cut], p: EngineParams) -> list[_Cut]:
    """A block's chunks of K, the last one short enough for the `follow` tiles to join its run
    (the rest of K in as few chunks as fit); unchanged when they join it already, or cannot."""
    def joins(last: _Cut) -> bool:
        run = Run([])
        tile, _ = _tile(last, p, run)
        run.tiles.append(tile)
        for c in follow:
            t, forwarded = _tile(c, p, run)
            if t is None or not (forwarded or c.joins):
                return False
            run.tiles.append(t)
        return run.commands <= p.cmem_depth

    last, g = own[-1], own[-1].g
    if joins(last) or not last.partial:
        return own
    size = _largest(0, last.k1 - last.k0, lambda k: joins(replace(last, k0=g.k - k)))
    if not size:
        return own
    rest = g.k - size
    most = _largest(0, rest, lambda k: _fits(g, p, last.m1 - last.m0, last.n1 - last.n0, k))
    n = cdiv(rest, most)
    edges = _balanced(0, rest, n) + [g.k]
    return [replace(last, k0=a, k1=b) for a, b in zip(edges, edges[1:])]


def _cuts(group: list[Gemm], p: EngineParams, exposed: bool = False,
          sh: TileShape | None = None) -> list[_Cut]:
    """The tiles of a GEMM, or of the windows of a weight gradient, in run order. Windows share
    their A and B blocks: unless the array holds a tile's sums between its chunks, the windows
    whose partial sums PMEM holds at once (each in a region of its own) take each block, and
    each chunk of K, one after another, so the block is loaded once for all of them.
    `exposed`: the program's first GEMM (`tile_shape`); `sh`: its shape, when known."""
    g = group[0]
    assert g.m == max(w.m for w in group)  # the first window spans the others' rows
    sh = sh or tile_shape(g, p, share=len(group), exposed=exposed)
    edges = sh.n_cuts or (*range(0, g.n, sh.n), g.n)
    blocks = [(m0, n0, n1) for m0 in range(0, g.m, sh.m) for n0, n1 in zip(edges, edges[1:])]
    if sh.n_outer:
        blocks.sort(key=lambda b: (b[1], b[0]))
    kc = sh.k or g.k
    chunks = [(k0, min(k0 + kc, g.k)) for k0 in range(0, g.k, kc)]
    tiles = cdiv(sh.m, p.lanes) * cdiv(sh.n, p.lanes)
    rows = tiles * p.lanes  # PMEM rows of a tile's sums
    if sh.partial:
        per = _pmem_share(p, tiles)
    elif sh.k is None:
        per = len(group)  # all of K: no sums kept between commands
    else:
        per = 1  # the array holds the sums: a window's chunks back to back
    out = []
    for w0 in range(0, len(group), per):
        ws = group[w0:w0 + per]
        out += [_Cut(w, m0, min(m0 + sh.m, w.m), n0, n1, k0, k1, sh.partial,
                     j * rows if sh.partial else 0, j > 0)
                for m0, n0, n1 in blocks for k0, k1 in chunks for j, w in enumerate(ws)
                if m0 < w.m]  # (the windows of a tap-packed input differ in M)
    return out


@dataclass(frozen=True)
class _Cut:
    """Where a tile lies in its GEMM: C rows [m0, m1), columns [n0, n1), K range [k0, k1);
    `partial`: its chunks' sums in PMEM from row `p_base`; `joins`: it joins the run of the tile
    before it when it fits there (a window of the same weight gradient, which reads the same
    blocks; a learning layer's first chunk of K after a forward cut into column blocks; a
    deferred learning-layer update after the first, in the step's last run)."""

    g: Gemm
    m0: int
    m1: int
    n0: int
    n1: int
    k0: int
    k1: int
    partial: bool = False
    p_base: int = 0
    joins: bool = False


def _group(cuts: list[_Cut], p: EngineParams) -> list[Run]:
    """Tiles in order, each joining the previous run when it reads a block that run wrote (or
    `joins` it), fits beside it and the command scratchpad holds one more command; else starting
    a run."""
    runs: list[Run] = []
    for cut in cuts:
        run = runs[-1] if runs else None
        if run is not None and run.commands < p.cmem_depth:
            trial = Run(list(run.tiles), dict(run.top), dict(run.held), set(run.written))
            tile, forwarded = _tile(cut, p, trial)
            if (forwarded or cut.joins) and tile is not None:
                trial.tiles.append(tile)
                runs[-1] = trial
                continue
        run = Run([])
        tile, _ = _tile(cut, p, run)
        assert tile is not None  # a fresh run takes any tile (validate_gemm names what overflows)
        run.tiles.append(tile)
        runs.append(run)
    return runs


def _schedule(runs: list[Run], p: EngineParams, prefetch: list[Transfer]) -> tuple[list[Command], int]:
    """Double buffering: each run's LOADs (and command words) go to the host's set while the core
    runs the previous run, SWAP hands them to the core, RUN starts it, and the previous run's
    STOREs drain the other set during the run. A run that loads what the previous run stores
    loads the rest and its command words first (during the run), then waits for the run, stores
    the outputs it needs (SWAP, STOREs, SWAP back), loads them, and the previous run's other
    outputs are stored during its own run: the only bubble. A set keeps the operand block the
    tile order keeps (A or B) for the next single-tile run of the same GEMM that lands there. The
    program ends with the host's side on the set it started with (no program depends on which
    that is). `prefetch` (the next step's first run) is loaded into the host's set during the
    last run, which the next program's first run then finds on the host's side (an even number
    of runs: the warm program starts with the SWAP) or on the core's (odd: it starts with the
    RUN), unless the last run writes bytes it reads. Returns the commands and how many of them
    the warm program skips (0: no prefetch)."""
    cmds: list[Command] = []
    host = 1  # the set the host side reaches
    resident: list = [set(), set()]  # per set: the (GEMM, A or B transfer)s it holds
    owed: list[Transfer] = []  # the outputs of the run last started, not stored yet
    for run in runs:
        kept = resident[host] if len(run.tiles) == 1 else set()
        parent = run.tiles[0].parent
        loads = [x for k, x in enumerate(run.loads) if k > 1 or (id(parent), x) not in kept]
        owed_spans = _spans(owed, p)
        dep = [x for x in loads if _overlap(_spans([x], p), owed_spans)]
        ucode = [load(_ucode_load(run, p))]
        if dep:  # the independent loads still overlap the run; then store, swap back, load the rest
            free = [x for x in loads if x not in dep]
            parts = [_cut_by(x, owed_spans, p) for x in dep]
            free += [y for early, _ in parts for y in early]
            dep = [y for _, late in parts for y in late]
            dep_spans = _spans(dep, p)
            need = [x for x in owed if _overlap(_spans([x], p), dep_spans)]
            cmds += [load(x) for x in free] + ucode
            cmds += [SWAP] + [store(x) for x in need] + [SWAP]
            loads, owed, ucode = dep, [x for x in owed if x not in need], []
        resident[host] = run.kept
        cmds += [load(x) for x in loads] + ucode + [SWAP, RUN]
        host ^= 1
        cmds += [store(x) for x in owed]
        owed = run.stores
    if _overlap(_spans(prefetch, p), _spans(owed, p)):
        prefetch = []  # the last run writes what the next first run reads: it cannot go ahead
    skip = (len(prefetch) + (host != 1)) if prefetch else 0
    cmds += [load(x) for x in prefetch]
    cmds += [SWAP] + [store(x) for x in owed]
    host ^= 1
    return cmds + ([SWAP] if host != 1 else []), skip


def _synced(cmds: list[Command], p: EngineParams) -> list[Command]:
    """The program with the SYNCs its LOADs need: STOREs run beside the commands after them
    until a SWAP, SYNC or END (`hw.engine.program`), and a LOAD that writes scratchpad words a
    running STORE reads, or reads bytes it writes, waits for it (`_sync_segment`, which may
    reorder a segment's LOADs). Each segment between SWAPs is as `_schedule` writes it: a RUN,
    STOREs, then LOADs."""
    out: list[Command] = []
    segment: list[Command] = []
    for c in cmds:
        if c.op in (SOP_SWAP, SOP_END):
            out += _sync_segment(segment, p) + [c]
            segment = []
        else:
            segment.append(c)
    return out + _sync_segment(segment, p)


def _sync_segment(seg: list[Command], p: EngineParams) -> list[Command]:
    """Commands between two SWAPs (a RUN, the previous run's STOREs, the next run's LOADs: the
    order `_schedule` writes) with a SYNC before each LOAD that writes scratchpad words a STORE
    before it reads, or reads bytes it writes, while that STORE may still run.

    STOREs move one after another beside the commands after them, a LOAD holds the sequencer
    until it is done, and a SYNC waits for every STORE issued before it. So the LOADs go in
    Johnson's order for two machines in series: those that need fewer STORE beats than they
    take themselves first, fewest first; then the others, longest first. The STOREs a LOAD needs
    (and no LOAD before it) are issued just after the previous SYNC, so they run beside the
    LOADs up to their own SYNC, and the STOREs no LOAD needs after the last SYNC. A STORE keeps
    its order with every STORE that writes its bytes; when two LOADs write the same words, all
    of the segment's LOADs keep their order."""
    rank = {SOP_STORE: 1, SOP_LOAD: 2}
    assert [rank.get(c.op, 0) for c in seg] == sorted(rank.get(c.op, 0) for c in seg), seg
    spans = {k: _spans([c.xfer], p) for k, c in enumerate(seg) if c.xfer is not None}
    hull = {k: (s[0][0], max(e for _, e in s)) for k, s in spans.items()}

    def touch(j: int, k: int) -> bool:  # transfers j and k share external bytes
        return hull[j][0] < hull[k][1] and hull[k][0] < hull[j][1] and _overlap(spans[j], spans[k])

    def same_words(j: int, k: int) -> bool:
        a, b = seg[j].xfer, seg[k].xfer
        return a.sel == b.sel and a.spad < b.spad + b.words and b.spad < a.spad + a.words

    def beats(ks: list[int]) -> int:
        return sum(seg[k].xfer.words * beats_per_word(p, seg[k].xfer.sel) for k in ks)

    stores = [k for k, c in enumerate(seg) if c.op == SOP_STORE]
    loads = [k for k, c in enumerate(seg) if c.op == SOP_LOAD]
    need = {}
    for j in loads:
        ks = {k for k in stores if same_words(j, k) or touch(j, k)}
        for k in reversed(stores):  # and the STOREs before them that write their bytes
            if k not in ks and any(touch(k, i) for i in ks if i > k):
                ks.add(k)
        need[j] = sorted(ks)
    if not any(need.values()):
        return seg
    first = sorted((j for j in loads if beats(need[j]) < beats([j])), key=lambda j: beats(need[j]))
    order = first + sorted((j for j in loads if j not in first), key=lambda j: -beats([j]))
    if any(same_words(a, b) for i, a in enumerate(order) for b in order[i + 1:] if a > b):
        order = loads
    fresh: dict[int | None, list[int]] = {}  # per LOAD, its STOREs no LOAD before it needs
    seen: set[int] = set()
    for j in order:
        fresh[j] = [k for k in need[j] if k not in seen]
        seen.update(fresh[j])
    waits = [j for j in order if fresh[j]] + [None]
    fresh[None] = [k for k in stores if k not in seen]  # after the last SYNC
    following = dict(zip(waits, waits[1:]))
    out = [c for c in seg if c.xfer is None] + [seg[k] for k in fresh[waits[0]]]
    for j in order:
        if fresh[j]:
            out += [SYNC] + [seg[k] for k in fresh[following[j]]]
        out.append(seg[j])
    return out


MAX_CUT_PIECES = 3


def _cut_by(x: Transfer, spans: list[tuple[int, int]], p: EngineParams) -> tuple[list, list]:
    """A load that reads some of `spans` (the previous run's outputs, not stored yet) as the
    pieces that do not (loaded while that run runs) and those that do: runs of whole rows, or of
    words of a one-row transfer; both stay contiguous on chip. An `across` transfer stays whole."""
    bpw = ext_word_bytes(p, x.sel)
    if x.across:
        return [], [x]
    if x.rows == 1:  # words in groups of the same dependence
        marks = [_overlap([(x.ext + w * bpw, x.ext + (w + 1) * bpw)], spans) for w in range(x.row_words)]
        def piece(a, b): return replace(x, spad=x.spad + a, row_words=b - a, ext=x.ext + a * bpw)
    else:
        n = x.row_words * bpw
        marks = [_overlap([(x.ext + r * x.stride, x.ext + r * x.stride + n)], spans) for r in range(x.rows)]
        def piece(a, b): return replace(x, spad=x.spad + a * x.row_words, rows=b - a, ext=x.ext + a * x.stride)
    out: tuple[list, list] = ([], [])
    a = 0
    for b in range(1, len(marks) + 1):
        if b == len(marks) or marks[b] != marks[a]:
            out[marks[a]].append(piece(a, b))
            a = b
    # every piece is a command of its own (a fetch and the memory's first-beat latency): pieces
    # that alternate along the transfer cost more than the early ones gain
    return out if len(out[0]) + len(out[1]) <= MAX_CUT_PIECES else ([], [x])


def _spans(xs: list[Transfer], p: EngineParams) -> list[tuple[int, int]]:
    """The byte intervals of external memory the transfers touch, sorted by start."""
    out = []
    for x in xs:
        n = x.row_words * ext_word_bytes(p, x.sel)
        out += [(x.ext + r * x.stride, x.ext + r * x.stride + n) for r in range(x.rows)]
    return sorted(out)


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] <= b[j][0]:
            i += 1
        elif b[j][1] <= a[i][0]:
            j += 1
        else:
            return True
    return False


def _align(a: int) -> int:
    return cdiv(a, 4096) * 4096


def _key(b: Block) -> tuple:
    return (b.t.name, b.r0, b.r1, b.f0, b.f_end, b.period, b.reps)


def _meets(k1: tuple, k2: tuple) -> bool:
    """Two block keys may share an element (strided blocks: their feature spans meet)."""
    return k1[0] == k2[0] and k1[1] < k2[2] and k2[1] < k1[2] and k1[3] < k2[4] and k2[3] < k1[4]


def _tile(cut: _Cut, p: EngineParams, run: Run) -> tuple[Tile | None, bool]:
    """The tile `cut` placed in `run`'s set after what it holds: a block the run holds is used
    where it is (not loaded again; written in place); the others get regions of their own.
    Updates `run` and returns (the tile, whether it reads a block the run wrote), or (None,
    False) when it does not fit beside the run or touches part of a block the run holds. A chunk
    of K before the last has no outputs (nothing drains)."""
    g = cut.g
    hold = cut.k1 < g.k and g.pool is None
    blocks = _blocks(g, cut.m0, cut.m1, cut.n0, cut.n1, cut.k0, cut.k1, outs=not hold)
    reads = tuple(r for r in ("a", "b") + (() if hold else read_slots(g.op)) if r in blocks)
    new = [_key(b) for b in blocks.values() if _key(b) not in run.held]
    if any(_meets(k, h) for k in new for h in run.held):  # (run.written is part of run.held)
        return None, False
    forwarded = any(_key(blocks[r]) in run.written for r in reads)
    local: dict[str, Tensor] = {}
    loads, stores = [], []
    for role, b in blocks.items():  # "a" first: a fresh run's A region starts at word 0
        key = _key(b)
        fresh = key not in run.held
        if fresh:
            base = run.top.get(b.t.sel, 0)
            run.held[key] = _local(b, base)
            run.top[b.t.sel] = base + run.held[key].words
            if run.top[b.t.sel] > p.depth(b.t.sel) and run.tiles:
                return None, False
            if role in reads:
                loads += transfers(b, base, p)
        local[role] = run.held[key]
        if role in SLOTS and role in written_slots(g.op) and key not in run.written:
            run.written.add(key)
            stores += transfers(b, local[role].base, p)
    ks = f", {cut.k0}:{cut.k1}" if cut.k1 - cut.k0 < g.k else ""
    conv, pool, unpool = _geometry(cut, p)
    win = f" window {conv.window}" if conv is not None and conv.window is not None else ""
    tg = Gemm(f"{g.name}[{cut.m0}:{cut.m1}, {cut.n0}:{cut.n1}{ks}]{win}", g.phase, g.op, local["a"],
              local.get("b", local["a"]), cut.m1 - cut.m0, cut.k1 - cut.k0, cut.n1 - cut.n0,
              {s: local[s] for s in g.outs if s in local}, g.consts, g.sgd,
              cut.k0 > 0 and not cut.partial and pool is None, hold and not cut.partial, conv,
              pool, unpool, cut.k0 > 0 and cut.partial, hold and cut.partial, cut.p_base)
    validate_gemm(tg, p)
    return Tile(g, tg, loads, stores), forwarded


def _geometry(cut: _Cut, p: EngineParams) -> tuple:
    """The tile's convolution, max-pool and pool-map geometry (`ConvGeom`, `PoolGeom`): where in
    its images, channels and window taps the tile lies."""
    g, conv = cut.g, cut.g.conv
    if conv is not None and conv.window is not None:
        _, y0, y1, s0, _ = _wgrad_rows(conv, cut.k0, cut.k1)
        a_cut, b_sliced = _wgrad_cut(g, cut.m0, cut.m1, cut.n0, cut.n1)
        conv = replace(conv, y0=y0, a_row=s0, a_word=0 if a_cut else cut.m0 // p.lanes,
                       a_words=(a_cut[1] - a_cut[0]) // p.lanes if a_cut else 0,
                       b_word=0 if b_sliced else cut.n0 // p.lanes,
                       rows=0 if cut.k1 - cut.k0 >= conv.pixels else y1 - y0)
    elif conv is not None:
        taps = _taps(conv, cut.k0, cut.k1)
        _, y0, _, s0, _ = _fwd_rows(conv, cut.m0, cut.m1, p.lanes, taps)
        conv = replace(conv, y0=y0, a_row=s0, taps=taps)
    pool = None if g.pool is None else replace(g.pool, y0=cut.n0, words=cut.k1 - cut.k0)
    unpool = None
    if g.unpool is not None:
        x0, seg = _unpool_segment(g, cut.n0, cut.n1) or (0, 0)
        unpool = replace(g.unpool, y0=cut.n0 // _unpool_row(g), x0=x0, seg=seg)
    return conv, pool, unpool


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
