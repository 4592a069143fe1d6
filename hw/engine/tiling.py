"""Tiling and lowering: every GEMM of a compiled step (`hw.engine.compiler`) cut into tiles the
scratchpads hold, and the engine program that moves and runs them (`hw.engine.program`).

A tile covers whole MAC-array tiles of C: rows [m0, m1) and columns [n0, n1) of the output, all of
K. Its operands and outputs are 2-D blocks of the tensors in external memory; each is LOADed to
(or STOREd from) its own region of its scratchpad, where it is contiguous, and the tile's GEMM
command addresses those regions. Per tile: LOADs (the A block is kept when the next tile of the
same GEMM reuses it), the command into the command scratchpad, RUN, STOREs, double-buffered
(`_schedule`). The tile shape is the largest (fewest tiles) that fits every scratchpad; a GEMM
whose single MAC-array tile does not fit is refused with the scratchpad and the limit named.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.numerics import NitroError

from .compiler import SLOTS, Gemm, Program, Tensor, cdiv, pack_command, validate_gemm
from .params import (
    CTR_KINDS, MEM_NAMES, N_PHASES, OP_END, OP_RELU_BWD, OP_SCALE_LOSS, OP_SGD, SEL_CMEM, SEL_CTR,
    EngineParams,
)
from .program import (
    END, PROGRAM_WORD_BITS, RUN, SWAP, Command, Transfer, beats_per_word, bus_words, load, store,
)

# slots an op reads (loaded before RUN) and writes (stored after RUN)
READS = {OP_SCALE_LOSS: ("o3",), OP_RELU_BWD: ("o2",), OP_SGD: ("o3",)}
READ_ONLY = {OP_SCALE_LOSS: ("o3",), OP_RELU_BWD: ("o2",)}
N_COUNTERS = N_PHASES * len(CTR_KINDS)


@dataclass(frozen=True)
class Block:
    """Element ranges [r0, r1) x [f0, f1) of a tensor (rows x features)."""

    t: Tensor
    r0: int
    r1: int
    f0: int
    f1: int


@dataclass
class Tile:
    parent: Gemm
    gemm: Gemm  # the tile's command, on scratchpad addresses
    loads: list[Transfer]
    stores: list[Transfer]
    ucode_ext: int = 0  # byte address of its command words (the GEMM, then END)


@dataclass
class EngineProgram:
    """A compiled step ready for the engine: tensors, tiles, program and where each lives."""

    prog: Program
    tiles: list[Tile]
    commands: list[Command]
    ucode_ext: int
    prog_ext: int
    ctr_ext: int
    ext_bytes: int

    @property
    def params(self) -> EngineParams:
        return self.prog.params


def _blocks(g: Gemm, m0: int, m1: int, n0: int, n1: int) -> dict[str, Block]:
    """Role ('a', 'b', slot) -> the block of its tensor that the tile [m0, m1) x [n0, n1) uses."""
    blocks = {"a": Block(g.a, m0, m1, 0, g.k) if g.a.layout == "col" else Block(g.a, 0, g.k, m0, m1),
              "b": Block(g.b, 0, g.k, n0, n1)}
    for slot, t in g.outs.items():
        blocks[slot] = Block(t, n0, n1, m0, m1) if slot == "o4" else Block(t, m0, m1, n0, n1)
    return blocks


def _local(b: Block, base: int) -> Tensor:
    return Tensor(b.t.name, b.t.sel, b.t.layout, b.r1 - b.r0, b.f1 - b.f0, base, b.t.lanes)


def _usage(g: Gemm, mm: int, nn: int) -> dict[int, int]:
    use: dict[int, int] = {}
    for b in _blocks(g, 0, mm, 0, nn).values():
        use[b.t.sel] = use.get(b.t.sel, 0) + _local(b, 0).words
    return use


TILE_OVERHEAD_BEATS = 150  # per tile: its command words and about ten program fetches


@dataclass(frozen=True)
class TileShape:
    m: int  # C rows per tile
    n: int  # C columns per tile
    n_outer: bool  # tiles ordered column-block first: the B block stays, A blocks stream


def tile_shape(g: Gemm, p: EngineParams) -> TileShape:
    """The tile shape and order with the fewest operand beats to load: for each column count the
    most rows that fit every scratchpad (and the converse); the operand that stays is loaded once
    per set, the other once per tile."""
    L = p.lanes
    mt, nt = cdiv(g.m, L), cdiv(g.n, L)
    over = {s: (u, p.depth(s)) for s, u in _usage(g, min(L, g.m), min(L, g.n)).items()
            if u > p.depth(s)}
    if over:
        s, (u, d) = next(iter(over.items()))
        raise NitroError(f"engine: {g.name} (M={g.m}, K={g.k}, N={g.n}) needs {u} words of the "
                         f"{MEM_NAMES[s]} scratchpad for one {L}x{L} tile; the engine has {d} "
                         f"(the K limit of this GEMM is about {g.k * d // u})")

    def fits(mc: int, nc: int) -> bool:
        return all(u <= p.depth(s) for s, u in _usage(g, min(mc * L, g.m), min(nc * L, g.n)).items())

    def most(limit: int, ok) -> int:  # the largest c in 0..limit with ok(c) (ok is monotone)
        lo, hi = 0, limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
        return lo

    shapes = {(most(mt, lambda c: fits(c, nc)), nc) for nc in range(1, nt + 1)}
    shapes |= {(mc, most(nt, lambda c: fits(mc, c))) for mc in range(1, mt + 1)}
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
    return best[1]


def transfer(b: Block, base: int, p: EngineParams) -> Transfer:
    """The 2-D transfer of block `b` to / from scratchpad words `base`..., contiguous on chip."""
    t, L = b.t, b.t.lanes
    bpw = beats_per_word(p, t.sel) * p.bus_bits // 8
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
    """Tile every GEMM of the training step (or of inference) and lay out the program, its
    command words and the counters in external memory from byte `base` (default: after the
    tensors)."""
    p = prog.params
    tiles: list[Tile] = []
    for g in prog.infer_gemms if inference else prog.gemms:
        sh = tile_shape(g, p)
        blocks = [(m0, n0) for m0 in range(0, g.m, sh.m) for n0 in range(0, g.n, sh.n)]
        if sh.n_outer:
            blocks.sort(key=lambda b: (b[1], b[0]))
        tiles += [_tile(g, m0, min(m0 + sh.m, g.m), n0, min(n0 + sh.n, g.n), p) for m0, n0 in blocks]
    ncw = p.cmd_words
    ucode_ext = prog.ext_words * (p.bus_bits // 8) if base is None else base
    for i, tile in enumerate(tiles):
        tile.ucode_ext = ucode_ext + i * 2 * ncw * 8
    cmds = _schedule(tiles, p)
    ctr_ext = _align(ucode_ext + len(tiles) * 2 * ncw * 8)
    cmds += [store(Transfer(SEL_CTR, 0, 1, N_COUNTERS, ctr_ext, N_COUNTERS * 8)), END]
    prog_ext = _align(ctr_ext + N_COUNTERS * 8)
    end = prog_ext + len(cmds) * PROGRAM_WORD_BITS // 8
    return EngineProgram(prog, tiles, cmds, ucode_ext, prog_ext, ctr_ext, _align(end))


def _schedule(tiles: list[Tile], p: EngineParams) -> list[Command]:
    """Double buffering: each tile's LOADs (and command words) go to the host's set while the core
    runs the previous tile, SWAP hands them to the core, RUN starts it, and the previous tile's
    STOREs drain the other set during the run. A tile that loads what the previous tile stores
    loads the rest first (during the run), then waits for the run, stores its outputs (SWAP,
    STOREs, SWAP back) and loads what depends on them: the only bubble. A set keeps the operand
    block the tile order keeps (A or B) for the next tile of the same GEMM that lands there. The
    program ends with the core in set 0, where the next one starts."""
    ncw = p.cmd_words
    cmds: list[Command] = []
    host = 1  # the set the host side reaches
    resident: list = [None, None]  # per set: the (GEMM, A or B transfer)s it holds
    pending, pending_spans = None, []  # the tile run last, its outputs not stored yet
    for tile in tiles:
        kept = resident[host] or set()
        loads = [x for k, x in enumerate(tile.loads) if k > 1 or (id(tile.parent), x) not in kept]
        dep = [x for x in loads if pending is not None and _overlap(_spans([x], p), pending_spans)]
        if dep:  # the independent loads still overlap the run; then store, swap back, load the rest
            cmds += [load(x) for x in loads if x not in dep]
            cmds += [SWAP] + [store(x) for x in pending.stores] + [SWAP]
            loads, pending = dep, None
        resident[host] = {(id(tile.parent), x) for x in tile.loads[:2]}
        cmds += [load(x) for x in loads]
        cmds += [load(Transfer(SEL_CMEM, 0, 1, 2 * ncw, tile.ucode_ext, 2 * ncw * 8)), SWAP, RUN]
        host ^= 1
        if pending is not None:
            cmds += [store(x) for x in pending.stores]
        pending, pending_spans = tile, _spans(tile.stores, p)
    if pending is not None:
        cmds += [SWAP] + [store(x) for x in pending.stores]
        host ^= 1
    return cmds + ([SWAP] if host != 1 else [])


def _spans(xs: list[Transfer], p: EngineParams) -> list[tuple[int, int]]:
    """The byte intervals of external memory the transfers touch, sorted by start."""
    out = []
    for x in xs:
        n = x.row_words * beats_per_word(p, x.sel) * p.bus_bits // 8
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


def _tile(g: Gemm, m0: int, m1: int, n0: int, n1: int, p: EngineParams) -> Tile:
    blocks = _blocks(g, m0, m1, n0, n1)
    top: dict[int, int] = {}
    local: dict[str, Tensor] = {}
    loads, stores = [], []
    reads = ("a", "b") + READS.get(g.op, ())
    for role, b in blocks.items():  # "a" first: its scratchpad region starts at 0
        base = top.get(b.t.sel, 0)
        local[role] = _local(b, base)
        top[b.t.sel] = base + local[role].words
        if role in reads:
            loads.append(transfer(b, base, p))
        if role in SLOTS and role not in READ_ONLY.get(g.op, ()):
            stores.append(transfer(b, base, p))
    tg = Gemm(f"{g.name}[{m0}:{m1}, {n0}:{n1}]", g.phase, g.op, local["a"], local["b"], m1 - m0,
              g.k, n1 - n0, {s: local[s] for s in g.outs}, g.consts, g.sgd)
    validate_gemm(tg, p)
    return Tile(g, tg, loads, stores)


# ---- external memory words -----------------------------------------------------------------------

def ucode_words(ep: EngineProgram) -> np.ndarray:
    """The tiles' command words (64-bit, as the command scratchpad holds them), for the region at
    `ep.ucode_ext`; rewritten whenever `compiler.set_lr` changes the update constants."""
    p, prog = ep.params, ep.prog
    ncw = p.cmd_words
    end = pack_command(p, {"op": OP_END, "phase": prog.phases.index("control")})
    out = np.zeros((len(ep.tiles), 2, ncw), dtype=np.uint64)
    for i, tile in enumerate(ep.tiles):
        for j, v in enumerate((pack_command(p, tile.gemm.fields(prog.phases.index(tile.gemm.phase))),
                               end)):
            out[i, j] = bus_words(v, ncw)
    return out.reshape(-1)


def program_words(ep: EngineProgram) -> np.ndarray:
    words = PROGRAM_WORD_BITS // 64
    out = np.zeros((len(ep.commands), words), dtype=np.uint64)
    for i, c in enumerate(ep.commands):
        out[i] = bus_words(c.pack(), words)
    return out.reshape(-1)
