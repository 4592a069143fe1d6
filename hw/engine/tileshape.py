"""Which blocks of its operands and outputs a tile of each GEMM kind reads and writes (a linear
layer's rows and columns, a convolution's window rows and taps, a max-pool's and a pool map's
image rows), where in its images the tile lies, and the tile shape that fits the scratchpads with
the fewest operand beats (`tile_shape`), K cut into chunks when all of K does not fit."""
from __future__ import annotations

from dataclasses import dataclass, replace

from model.numerics import NitroError

from .compiler import PARTIAL_OPS, Gemm, Tensor, cdiv
from .params import MEM_NAMES, EngineParams
from .program import beats_per_word
from .tilecost import by_rows, mac_cycles
from .tiles import Block, local_block

def operand_blocks(g: Gemm, m0: int, m1: int, n0: int, n1: int, k0: int = 0, k1: int | None = None,
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
        c0, c1 = _channels(cg, k0, k1)
        a = (Block(g.a, i0, i0 + g.a.lanes, s0 * w * ci, s1 * w * ci) if c1 - c0 == ci else
             Block(g.a, i0, i0 + g.a.lanes, s0 * w * ci + c0, s0 * w * ci + c1, ci, (s1 - s0) * w))
        blocks = {"a": a, "b": Block(g.b, k0, k1, n0, n1)}
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
        fw = cdiv(fp, pg.words)  # features per word (a vector's last row-layout word may be partial)
        return Block(t, m0, m1, r0 * w * fp + k0 * fw, r0 * w * fp + min(k1 * fw, fp), fp, (r1 - r0) * w)

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

    def band(i: int, r: int, wc: int) -> tuple:  # away from the top: it reads kh rows each
        n0 = min(1, g.n - r)
        return i, n0 + r, wc, {"n0": n0}

    def fits(i: int, r: int, wc: int) -> bool:
        return _fits(g, p, band(i, r, wc))

    # some words of each pixel: of L images at most when batch-packed (a strided block); the
    # images in whole words of the batch-packed layout (a batch under L is one word of them)
    top = cdiv(g.m, step) * step
    best = max(((i * r * wc, i, r, wc) for wc in range(1, g.k + 1) if g.k % wc == 0
                for i in range(step, (top if wc == g.k or step == 1 else step) + 1, step)
                for r in [largest(0, g.n, lambda r: fits(i, r, wc))] if r), default=None)
    if best is not None:
        return TileShape(best[1], best[2], False, best[3])
    s, u, d = _overflow(g, p, band(step, 1, 1))
    raise NitroError(f"engine: {g.name} needs {u} words of the {s} scratchpad for one word of "
                     f"each pixel of one output row of {step} image(s); the engine has {d}")


def _unpool_shape(g: Gemm, p: EngineParams) -> TileShape:
    """Whole MAC-array tiles of rows x whole image rows of the delta, the most words that fit;
    else L images x segments of image rows, each the most whole pooling windows that fit."""
    L, row, rows, pg = p.lanes, _unpool_row(g), g.unpool.covered, g.unpool
    best = max(((i * r, i, r) for i in range(L, cdiv(g.m, L) * L + 1, L)
                for r in [largest(0, rows, lambda r: tile_fits(g, p, min(i, g.m), r * row))]
                if r), default=None)
    if best is not None:
        return TileShape(best[1], best[2] * row, False)
    px, mm = row // pg.w, min(L, g.m)

    def cuts(s: int) -> list[int]:  # segment edges (pixel columns) of s windows each
        return sorted({0, pg.w} | {x for x in range(s * pg.kw - pg.pw, pg.w, s * pg.kw) if x > 0})

    def segments(xs: list[int]) -> list[tuple]:  # the tiles, as _overflow takes them
        return [(mm, x1 * px, None, {"n0": x0 * px}) for x0, x1 in zip(xs, xs[1:])]

    for s in range(pg.wo, 0, -1):  # windows per segment
        xs = cuts(s)
        if all(_fits(g, p, t) for t in segments(xs)):
            edges = sorted({y * row + x * px for y in range(rows) for x in xs})
            return TileShape(mm, 0, False, n_cuts=tuple(edges))
    s, u, d = _overflow(g, p, *segments(cuts(1)))
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
    whole window rows, taps of one row, or some channels of one tap."""
    t0, t1 = k0 // cg.c_in, cdiv(k1, cg.c_in)
    if t0 % 3 == 0 and t1 % 3 == 0:
        return t0 // 3, t1 // 3, 0, 3
    return t0 // 3, t0 // 3 + 1, t0 % 3, t0 % 3 + t1 - t0


def _channels(cg, k0: int, k1: int) -> tuple[int, int]:
    """The input channels [c0, c1) a forward chunk [k0, k1) of K reads at each of its taps: all,
    or some of one tap's."""
    if k1 - k0 >= cg.c_in:
        return 0, cg.c_in
    return k0 % cg.c_in, k0 % cg.c_in + k1 - k0


def _conv_shape(g: Gemm, p: EngineParams, share: int) -> TileShape:
    return _wgrad_shape(g, p, share) if g.conv.window is not None else _conv_fwd_shape(g, p)


def _conv_fwd_shape(g: Gemm, p: EngineParams) -> TileShape:
    """L images x the most output rows (a divisor of the image's) x output channels that fit with
    the source rows their windows read; when none does with all of K, chunks of K of whole window
    rows, single taps (all input channels) or the most input channels of a tap (a divisor of
    c_in), their partial sums in PMEM."""
    L, cg = p.lanes, g.conv
    row = L * cg.w

    def chunks(r: int, nc: int, kc: int | None) -> list[tuple]:
        # a tile away from the top reads the most source rows, and of the chunks the one
        # whose taps read the most rows (a whole-image tile: the middle window row's)
        m0 = row * min(1, cg.h - r)
        return [(m0 + r * row, nc, k0 + kc if kc else None, {"m0": m0, "k0": k0})
                for k0 in (range(0, g.k, kc) if kc else (0,))]

    def best(kc: int | None, tiles: float) -> tuple | None:
        def fits(r: int, nc: int) -> bool:
            return r * cg.w * nc // L <= tiles and all(_fits(g, p, t) for t in chunks(r, nc, kc))

        return max(((r * nc, r, nc) for nc in range(L, g.n + 1, L) if g.n % nc == 0
                    for r in range(cg.h, 0, -1) if cg.h % r == 0 and fits(r, nc)), default=None)

    most = p.pmem_depth // (L * L)  # C tiles: pixels x channel words
    per_tap = [c for c in range(cg.c_in, 0, -1) if cg.c_in % c == 0]  # a tap's channels, or some
    for kc, tiles in ((None, float("inf")), (3 * cg.c_in, most), *((c, most) for c in per_tap)):
        b = best(kc, tiles)
        if b is not None:
            return TileShape(b[1] * row, b[2], False, kc, kc is not None)
    over = _overflow(g, p, *chunks(1, L, 1))  # one row, L output channels, one input channel per chunk
    if over is None:  # the scratchpads hold a row's channel of a tap: PMEM does not
        raise NitroError(f"engine: {g.name} (convolution of {cg.w}-pixel rows, {g.k} inputs) needs "
                         f"{cg.w * L * L} words of PMEM for the partial sums of one row of {L} "
                         f"images and {L} channels; the engine has {p.pmem_depth}")
    s, u, d = over
    raise NitroError(f"engine: {g.name} (convolution of {cg.w}-pixel rows, {g.k} inputs, "
                     f"{g.n} outputs) needs {u} words of the {s} scratchpad for one row "
                     f"of {L} images, {L} output channels and one input channel of a window tap; "
                     f"the engine has {d}")


def _wgrad_shape(g: Gemm, p: EngineParams, share: int) -> TileShape:
    """A weight gradient: all of K when it fits, else in chunks (`_chunk_shape`, `share` windows
    reading each chunk's blocks) of whole images, or of a band of image rows when one image does
    not fit."""
    L, hw, cg = p.lanes, g.conv.pixels, g.conv
    if tile_fits(g, p, g.m, g.n):
        return TileShape(g.m, g.n, False)
    n = g.k // hw

    def band(mm: int, nn: int, r: int) -> tuple:  # rows of one image away from its top: it reads
        k0 = cg.w * min(1, cg.h - r)  # two more source rows
        return mm, nn, k0 + r * cg.w, {"k0": k0}

    def chunk(mm: int, nn: int) -> int | None:
        if tile_fits(g, p, mm, nn, hw):
            images = largest(1, n, lambda i: tile_fits(g, p, mm, nn, i * hw))
            return cdiv(n, cdiv(n, images)) * hw
        rows = [r for r in range(cg.h - 1, 0, -1) if cg.h % r == 0 and _fits(g, p, band(mm, nn, r))]
        return rows[0] * cg.w if rows else None

    sh = _chunk_shape(g, p, chunk, share)[1]
    if sh is None:
        s, u, d = _overflow(g, p, band(min(L, g.m), min(L, g.n), 1))
        raise NitroError(f"engine: {g.name} (weight gradient over {cg.w}-pixel image rows) needs "
                         f"{u} words of the {s} scratchpad for one row; the engine has {d}")
    return sh


def _usage(g: Gemm, mm: int, nn: int, kk: int | None = None, m0: int = 0,
           n0: int = 0, k0: int = 0) -> dict[int, int]:
    """Words per scratchpad of the tile [m0, mm) x [n0, nn) x [k0, kk)."""
    use: dict[int, int] = {}
    for b in operand_blocks(g, m0, mm, n0, nn, k0, kk).values():
        use[b.t.sel] = use.get(b.t.sel, 0) + local_block(b, 0).words
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
    of a weight gradient), which `runs._cuts` runs together. `exposed`: nothing runs while the first
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
        kc = largest(0, g.k, lambda kk: tile_fits(g, p, mm, nn, kk))
        return cdiv(g.k, cdiv(g.k, kc)) if kc else None

    if not tile_fits(g, p, *one):
        sh = _chunk_shape(g, p, chunk)[1]
        if sh is None:
            s, u, d = _overflow(g, p, (*one, 1, {}))
            raise NitroError(f"engine: {g.name} (M={g.m}, K={g.k}, N={g.n}) needs {u} words of the "
                             f"{s} scratchpad for one {L}x{L} tile; the engine has {d}")
        return sh

    def fits(mc: int, nc: int) -> bool:
        return tile_fits(g, p, min(mc * L, g.m), min(nc * L, g.n))

    shapes = {(largest(0, mt, lambda c: fits(c, nc)), nc) for nc in range(1, nt + 1)}
    shapes |= {(mc, largest(0, nt, lambda c: fits(mc, c))) for mc in range(1, mt + 1)}
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
    first = operand_beats(g, p, sh.m, sh.n)
    stream = g.k * beats_per_word(p, (g.a if sh.n_outer else g.b).sel) * (sh.m if sh.n_outer else sh.n)
    macs = mac_cycles(p, sh.m, sh.n, g.k, by_rows(g.op, g.p_in, g.p_out))
    return first + cdiv(g.m, sh.m) * cdiv(g.n, sh.n) * (max(stream, macs) + TILE_OVERHEAD_BEATS)


def operand_beats(g: Gemm, p: EngineParams, mm: int, nn: int, kk: int | None = None) -> int:
    """Bus beats of the operand blocks of the tile [0, mm) x [0, nn) x [0, kk)."""
    return sum(local_block(b, 0).words * beats_per_word(p, b.t.sel)
               for b in operand_blocks(g, 0, mm, 0, nn, 0, kk, outs=False).values())


def tile_fits(g: Gemm, p: EngineParams, mm: int, nn: int, kk: int | None = None, **at: int) -> bool:
    """The tile [m0, mm) x [n0, nn) x [k0, kk) (`at`: its starts) fits every scratchpad."""
    return all(u <= p.depth(s) for s, u in _usage(g, mm, nn, kk, **at).items())


def _fits(g: Gemm, p: EngineParams, tile: tuple) -> bool:
    """`tile_fits` of a tile as the shape searches build them: (mm, nn, kk, starts)."""
    mm, nn, kk, at = tile
    return tile_fits(g, p, mm, nn, kk, **at)


def _overflow(g: Gemm, p: EngineParams, *tiles: tuple) -> tuple[str, int, int] | None:
    """(scratchpad name, words needed, words it has) of the first scratchpad that one of `tiles`
    overflows: (mm, nn, kk, starts as `_usage` takes them) of the smallest tiles a shape search
    tried. None when they all fit (the search failed on another limit)."""
    for mm, nn, kk, at in tiles:
        for s, u in _usage(g, mm, nn, kk, **at).items():
            if u > p.depth(s):
                return MEM_NAMES[s], u, p.depth(s)
    return None


def largest(lo: int, hi: int, ok) -> int:
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
            beats = operand_beats(g, p, bm, bn, kc)
            if not partial:
                return max(beats, kc) + TILE_OVERHEAD_BEATS
            beats /= min(share, pmem_share(p, mc * nc))
            return max(beats, mac_cycles(p, bm, bn, kc)) + TILE_OVERHEAD_BEATS

        # blocks of mm x nn, and smaller ones at the bottom and right edges
        sizes = [(n, b) for n, b in ((g.m // mm, mm), (1, g.m % mm)) if n and b]
        cols = [(n, b) for n, b in ((g.n // nn, nn), (1, g.n % nn)) if n and b]
        cost = cdiv(g.k, kc) * sum(a * c * command(bm, bn) for a, bm in sizes for c, bn in cols)
        cost += operand_beats(g, p, mm, nn, kc) if exposed else 0
        if best is None or cost < best[0]:
            best = (cost, TileShape(mm, nn, False, kc, partial))
    return (0, None) if best is None else best


def pmem_share(p: EngineParams, c_tiles: int) -> int:
    """How many GEMMs PMEM holds the partial sums of at once, each of `c_tiles` MAC-array tiles."""
    return p.pmem_depth // (p.lanes * p.lanes * c_tiles)


def tile_geometry(g: Gemm, m0: int, m1: int, n0: int, n1: int, k0: int, k1: int,
                  p: EngineParams) -> tuple:
    """The tile's convolution, max-pool and pool-map geometry (`ConvGeom`, `PoolGeom`): where in
    its images, channels and window taps the tile lies."""
    conv = g.conv
    if conv is not None and conv.window is not None:
        _, y0, y1, s0, _ = _wgrad_rows(conv, k0, k1)
        a_cut, b_sliced = _wgrad_cut(g, m0, m1, n0, n1)
        conv = replace(conv, y0=y0, a_row=s0, a_word=0 if a_cut else m0 // p.lanes,
                       a_words=(a_cut[1] - a_cut[0]) // p.lanes if a_cut else 0,
                       b_word=0 if b_sliced else n0 // p.lanes,
                       rows=0 if k1 - k0 >= conv.pixels else y1 - y0)
    elif conv is not None:
        taps = _taps(conv, k0, k1)
        _, y0, _, s0, _ = _fwd_rows(conv, m0, m1, p.lanes, taps)
        c0, c1 = _channels(conv, k0, k1)
        conv = replace(conv, y0=y0, a_row=s0, taps=taps, a_words=0 if c1 - c0 == conv.c_in else c1 - c0)
    pool = None if g.pool is None else replace(g.pool, y0=n0, words=k1 - k0)
    unpool = None
    if g.unpool is not None:
        x0, seg = _unpool_segment(g, n0, n1) or (0, 0)
        unpool = replace(g.unpool, y0=n0 // _unpool_row(g), x0=x0, seg=seg)
    return conv, pool, unpool
