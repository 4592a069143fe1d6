"""The core's cycles for one GEMM tile's MAC-array tiles, by the path its output op takes: one
source for the tiler's choices (`tiling`) and the performance model (`perf`)."""
from __future__ import annotations

from .params import OP_RELU_BWD, EngineParams, row_scaled

ROW_PAIR_CYCLES = 3  # see row_tile_cycles


def row_tile_cycles(k: int, lanes: int) -> float:
    """The MAC array's cycles per C tile of K beats when every row is taken as it leaves: the
    tile buffer's copy and L moves, or K; a tile admitted while the buffer drains
    (`hw.mac.MacArray`) makes two tiles take K + L + ROW_PAIR_CYCLES."""
    return max(lanes + 1, (k + lanes + ROW_PAIR_CYCLES) / 2, k)


def by_rows(op: int, p_in: int, p_out: int) -> bool:
    """The op takes whole C rows, one per cycle (ReLU backward, row-wide scaling); every other
    op takes C's elements through the serializer, one per cycle."""
    return op == OP_RELU_BWD or bool(row_scaled(op, p_in, p_out))


def mac_cycles(p: EngineParams, mm: int, nn: int, kk: int, rows: bool = False) -> float:
    """The MAC-array cycles of an mm x nn tile with K = kk: per C tile K, but at least what its
    output op needs (`rows`: `by_rows`)."""
    L = p.lanes
    per = row_tile_cycles(kk, L) if rows else max(kk, L * L)
    return -(-mm // L) * -(-nn // L) * per
