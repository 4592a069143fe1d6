"""Cutting a step's GEMMs into tiles and grouping the tiles into runs (`tiling` describes the
rules): the window positions of a convolution's weight gradient together, a block's learning
layer and delta behind its forward's last chunk, and a tile that reads what an earlier tile of
the run wrote in the same run when everything fits."""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import takewhile

from .compiler import SLOTS, Gemm, Tensor, cdiv, read_slots, validate_gemm, written_slots
from .params import OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, EngineParams
from .tilecost import by_rows, mac_cycles
from .tiles import Block, Run, Tile, local_block, transfers
from .tileshape import (
    TILE_OVERHEAD_BEATS, TileShape, largest, operand_beats, operand_blocks, pmem_share, tile_fits,
    tile_geometry, tile_shape,
)

def window_groups(gemms: list[Gemm]) -> list[list[Gemm]]:
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


def step_cuts(groups: list[list[Gemm]], p: EngineParams) -> list[_Cut]:
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
    nxt = operand_beats(g, p, mm, nn, kc)
    k1 = 1 + largest(L * L - 1, kc, lambda k: mac_cycles(p, mm, nn, k) + TILE_OVERHEAD_BEATS < nxt)
    budget = mac_cycles(p, last.m1 - last.m0, last.n1 - last.n0, last.k1 - last.k0,
                        by_rows(last.g.op, last.g.p_in, last.g.p_out))
    if k1 >= kc or operand_beats(g, p, mm, nn, k1) > budget:  # (kc <= end: two chunks or more)
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
            return tile_fits(g, p, sh.m, g.n)
        return all(tile_fits(g, p, c.m1, c.n1, c.k1, m0=c.m0, n0=c.n0, k0=c.k0) and (
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
    size = largest(0, last.k1 - last.k0, lambda k: joins(replace(last, k0=g.k - k)))
    if not size:
        return own
    rest = g.k - size
    most = largest(0, rest, lambda k: tile_fits(g, p, last.m1 - last.m0, last.n1 - last.n0, k))
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
        per = pmem_share(p, tiles)
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


def group_runs(cuts: list[_Cut], p: EngineParams) -> list[Run]:
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
    blocks = operand_blocks(g, cut.m0, cut.m1, cut.n0, cut.n1, cut.k0, cut.k1, outs=not hold)
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
            run.held[key] = local_block(b, base)
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
    conv, pool, unpool = tile_geometry(g, cut.m0, cut.m1, cut.n0, cut.n1, cut.k0, cut.k1, p)
    win = f" window {conv.window}" if conv is not None and conv.window is not None else ""
    tg = Gemm(f"{g.name}[{cut.m0}:{cut.m1}, {cut.n0}:{cut.n1}{ks}]{win}", g.phase, g.op, local["a"],
              local.get("b", local["a"]), cut.m1 - cut.m0, cut.k1 - cut.k0, cut.n1 - cut.n0,
              {s: local[s] for s in g.outs if s in local}, g.consts, g.sgd,
              cut.k0 > 0 and not cut.partial and pool is None, hold and not cut.partial, conv,
              pool, unpool, cut.k0 > 0 and cut.partial, hold and cut.partial, cut.p_base)
    validate_gemm(tg, p)
    return Tile(g, tg, loads, stores), forwarded
