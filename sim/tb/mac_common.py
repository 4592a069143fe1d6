"""MAC-array testbench: tiles of A (rows x K) and B (K x cols) as transfer beats, C rows back.

Golden: model.gemm.matmul (exact) wrapped to the accumulator width with model.numerics.wrap.
"""
from __future__ import annotations

import numpy as np

from model.gemm import matmul
from model.numerics import wrap
from sim.tb.common import UnitBench, compare, concat, record


def beats(tiles):
    """[(A, B)] -> input payload of all transfers (a, b, first, last)."""
    a, b, first, last = [], [], [], []
    for A, B in tiles:
        k = A.shape[1]
        a.append(A.T)
        b.append(B)
        f = np.zeros(k, dtype=np.int64)
        f[0] = 1
        lst = np.zeros(k, dtype=np.int64)
        lst[-1] = 1
        first.append(f)
        last.append(lst)
    return {"a": np.concatenate(a).astype(np.int64), "b": np.concatenate(b).astype(np.int64),
            "first": np.concatenate(first), "last": np.concatenate(last)}


async def check_tiles(bench: UnitBench, label: str, tiles, must_wrap: bool = False, **kw) -> int:
    """Stream tiles in chunks that fit the stimulus / response memories; compare every C tile.
    must_wrap: some exact C values must lie outside the accumulator's range (counted and
    logged), so that its wrap was checked."""
    u = bench.unit
    got, exp, chunk, n_beats, n_rows, products, wrapped = [], [], [], 0, 0, 0, 0
    pending = list(tiles)
    while pending or chunk:
        A, B = pending[0] if pending else (None, None)
        if pending and n_beats + A.shape[1] <= bench.depth and n_rows + u.rows <= bench.depth:
            chunk.append(pending.pop(0))
            n_beats += A.shape[1]
            n_rows += u.rows
            continue
        out = await bench.stream(beats(chunk), n_out=n_rows, **kw)
        got.append(out)
        exact = np.concatenate([matmul(A, B) for A, B in chunk])
        exp.append(wrap(exact, u.acc_width))
        wrapped += int(np.count_nonzero(exp[-1] != exact))
        products += sum(A.shape[0] * A.shape[1] * B.shape[1] for A, B in chunk)
        chunk, n_beats, n_rows = [], 0, 0
    compare(label, None, concat(got), concat(exp))  # rows of C: the inputs are whole tiles
    record(bench.name, label + " (multiply-accumulates)", products, bench.log)
    if must_wrap:  # (C values, not more vectors: the products above already count them)
        assert wrapped > 0, f"{bench.name}: {label}: no C value lay outside the accumulator's range"
        bench.log.info("%s: %s: %d C values past the accumulator's range", bench.name, label, wrapped)
    return products


def random_tiles(bench: UnitBench, rng, n_products: int, max_k: int = 48):
    """Random tiles: K in 1..max_k (K = 1 included: first and last on one beat), corner-heavy."""
    u = bench.unit
    amax, bmax = 1 << (u.a_width - 1), 1 << (u.b_width - 1)
    acorner = np.array([-amax, -amax + 1, -1, 0, 1, amax - 1])
    bcorner = np.array([-bmax, -bmax + 1, -1, 0, 1, bmax - 1])
    tiles, total = [], 0
    while total < n_products:
        k = int(rng.integers(1, max_k + 1))
        A = rng.integers(-amax, amax, (u.rows, k))
        B = rng.integers(-bmax, bmax, (k, u.cols))
        if rng.random() < 0.5:  # extremes (the wrap itself: `wrapping_tiles`)
            A = np.where(rng.random(A.shape) < 0.5, rng.choice(acorner, A.shape), A)
            B = np.where(rng.random(B.shape) < 0.5, rng.choice(bcorner, B.shape), B)
        tiles.append((A, B))
        total += u.rows * u.cols * k
    return tiles


def wrapping_tiles(bench: UnitBench, rng, n: int):
    """n tiles whose exact sums leave the accumulator's range: K of 2 to 3 times
    2^(acc - 1) / (amax * bmax), each row of A and column of B one extreme of either sign (a
    tenth of the values uniform noise), so that most C values wrap."""
    u = bench.unit
    amax, bmax = 1 << (u.a_width - 1), 1 << (u.b_width - 1)
    k0 = (1 << (u.acc_width - 1)) // (amax * bmax) + 1
    tiles = []
    for _ in range(n):
        k = int(rng.integers(2 * k0, 3 * k0 + 1))
        A = np.repeat(rng.choice([-amax, amax - 1], (u.rows, 1)), k, axis=1)
        B = np.repeat(rng.choice([-bmax, bmax - 1], (1, u.cols)), k, axis=0)
        A = np.where(rng.random(A.shape) < 0.1, rng.integers(-amax, amax, A.shape), A)
        B = np.where(rng.random(B.shape) < 0.1, rng.integers(-bmax, bmax, B.shape), B)
        tiles.append((A, B))
    return tiles


def gemm_tiles(bench: UnitBench, A: np.ndarray, B: np.ndarray, max_k: int | None = None):
    """Cut C = A @ B into rows x cols tiles (zero-padded edges), K split at max_k."""
    u = bench.unit
    m, kk = A.shape
    n = B.shape[1]
    Ap = np.zeros((-(-m // u.rows) * u.rows, kk), dtype=np.int64)
    Ap[:m] = A
    Bp = np.zeros((kk, -(-n // u.cols) * u.cols), dtype=np.int64)
    Bp[:, :n] = B
    step = max_k or kk
    return [(Ap[i:i + u.rows, k:k + step], Bp[k:k + step, j:j + u.cols])
            for i in range(0, Ap.shape[0], u.rows) for j in range(0, Bp.shape[1], u.cols)
            for k in range(0, kk, step)]
