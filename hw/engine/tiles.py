"""The objects of a tiled program (`tiling.lower`): a block of a tensor in external memory, a tile
(one command of a run, with its loads and stores), a run (the tiles one RUN command executes from
one scratchpad set), the next step's prefetch, the whole program; and the transfers that move a
block between external memory and a scratchpad region."""
from __future__ import annotations

from dataclasses import dataclass, field

from .compiler import Gemm, Program, Tensor, cdiv
from .params import EngineParams
from .program import Command, Transfer, ext_word_bytes

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


def local_block(b: Block, base: int) -> Tensor:
    return Tensor(b.t.name, b.t.sel, b.t.layout, b.r1 - b.r0, (b.f1 - b.f0) * b.reps, base,
                  b.t.lanes)


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
