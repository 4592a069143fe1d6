# amaranth: UnusedElaboratable=no
"""The engine's max-pool unit (hw.engine.pool.PoolUnit) on Amaranth's simulator, between two of the
engine's banked memories, against model.layers.maxpool_forward: the pooled words, and the marked
copy of s (every window position but its lane's first maximum reads -128). Cases: several words
per pixel and images, ties, all-negative windows whose maximum is the padding's 0, a tile of
output rows away from the top, windows that leave rows uncovered, a pool between blocks (no
marked copy); one window position read per cycle. The tile with padded windows fails with a
padding of -128 instead of 0, the case with ties fails with ties routed to the last maximum
instead of the first. Dropout (`drop`, 1x1 windows with a keep mask) against
model.layers.dropout_forward."""
from dataclasses import replace

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Mux, Signal

from hw.engine.compiler import Gemm, PoolGeom, Tensor, pack_command
from hw.engine.memory import READ_LATENCY, BankedMemory
from hw.engine.params import OP_POOL, SEL_AMEM_R, SEL_SMEM, EngineParams, command_layout
from hw.engine.perf import pool_cycles
from hw.engine.pool import MASK, PoolUnit
from hw.engine.dropout import dropout_multiplier
from model.layers import dropout_forward, maxpool_backward, maxpool_forward, nitro_relu_forward
from sim.testing import simulate

P = EngineParams()
L = P.lanes
DEPTH = 2048


class _Harness(Elaboratable):
    """PoolUnit on a source memory (read, pooled-word write) and SMEM (s read, marked-copy write);
    with `host` the test bench owns both memories' ports (h_*)."""

    def __init__(self) -> None:
        self.pool = PoolUnit(P)
        self.src, self.smem = BankedMemory(L * 8, DEPTH, 8), BankedMemory(L * 8, DEPTH, 8)
        self.cmd = Signal(command_layout(P))
        self.start = Signal()
        self.host = Signal(init=1)
        self.h_sel, self.h_en = Signal(), Signal()  # 0: source, 1: SMEM
        self.h_addr, self.h_data = Signal(16), Signal(L * 8)
        self.src_q, self.smem_q = Signal(L * 8), Signal(L * 8)

    def elaborate(self, platform) -> Module:
        m = Module()
        pool, src, smem = self.pool, self.src, self.smem
        m.submodules += [pool, src, smem]
        on = ~self.host
        full = (1 << L) - 1
        # the read address registered once, as an engine memory does (READ_LATENCY) ...
        src_rd, smem_rd = Signal(16), Signal(16)
        m.d.sync += [src_rd.eq(Mux(on, pool.rd_addr, self.h_addr)),
                     smem_rd.eq(Mux(on, pool.s_addr, self.h_addr))]
        src_q, smem_q = self.src_q, self.smem_q  # and the words
        m.d.sync += [src_q.eq(src.rd_data), smem_q.eq(smem.rd_data)]
        m.d.comb += [pool.cmd.eq(self.cmd), pool.start.eq(self.start),
                     pool.rd_data.eq(src_q), pool.s_data.eq(smem_q),
                     src.rd_addr.eq(src_rd), smem.rd_addr.eq(smem_rd),
                     src.wr_addr.eq(Mux(on, pool.wr_addr, self.h_addr)),
                     src.wr_data.eq(Mux(on, pool.wr_data, self.h_data)),
                     src.wr_en.eq(Mux(on, pool.wr_en, Mux(self.h_en & ~self.h_sel, full, 0))),
                     smem.wr_addr.eq(Mux(on, pool.mk_addr, self.h_addr)),
                     smem.wr_data.eq(Mux(on, pool.mk_data, self.h_data)),
                     smem.wr_en.eq(Mux(on, pool.mk_en, Mux(self.h_en & self.h_sel, full, 0)))]
        return m


def _words(a: np.ndarray) -> list[int]:
    """(images, h, w, channels) int8 -> scratchpad words (pixels row-major, channels in lanes)."""
    lanes = a.reshape(-1, L).astype(np.uint8)
    return [int.from_bytes(r.tobytes(), "little") for r in lanes]


def _unwords(words: list[int], shape: tuple) -> np.ndarray:
    b = b"".join(w.to_bytes(L, "little") for w in words)
    return np.frombuffer(b, dtype=np.int8).reshape(shape)


def _run(pg: PoolGeom, a: np.ndarray, s: np.ndarray, y0: int, rows: int) -> tuple:
    """Pool output rows [y0, y0 + rows) of images `a` (and mark `s`) on the unit; returns (pooled
    words as (images, rows, wo, channels), the marked copy as (images, h, w, channels), cycles)."""

    n_img, h, w, c = a.shape
    first = pg.source_rows(y0, y0 + rows)[0] * w * pg.words  # the tile's first source row
    src_t = Tensor("a", SEL_AMEM_R, "row", n_img, h * w * c, first)
    dst_t = Tensor("o", SEL_AMEM_R, "row", n_img, rows * pg.wo * c, n_img * h * w * pg.words)
    s_t = Tensor("s", SEL_SMEM, "row", n_img, h * w * c, first)
    mk_t = Tensor("m", SEL_SMEM, "row", n_img, h * w * c, n_img * h * w * pg.words + first)
    mk_region = mk_t.base - first
    outs = {"o0": dst_t} | ({"o2": s_t, "o3": mk_t} if pg.mask else {"o2": s_t} if pg.drop else {})
    g = Gemm("pool", "pool", OP_POOL, src_t, src_t, n_img, pg.words, rows, outs, pool=pg)
    cmd = pack_command(P, replace(pg, y0=y0).fields(g, 0))
    sentinel = np.full_like(s, 99)
    preload = [(0, i, v) for i, v in enumerate(_words(a))]
    preload += [(1, i, v) for i, v in enumerate(_words(s))]
    preload += [(1, mk_region + i, v) for i, v in enumerate(_words(sentinel))]
    dut = _Harness()
    out: dict = {}

    async def bench(ctx):
        for sel, addr, v in preload:
            ctx.set(dut.h_sel, sel)
            ctx.set(dut.h_addr, addr)
            ctx.set(dut.h_data, v)
            ctx.set(dut.h_en, 1)
            await ctx.tick()
        ctx.set(dut.h_en, 0)
        await ctx.tick().repeat(4)  # the last write lands
        ctx.set(dut.host, 0)
        ctx.set(dut.cmd.as_value(), cmd)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycles = 1
        while not ctx.get(dut.pool.done):
            await ctx.tick()
            cycles += 1
        await ctx.tick().repeat(12)  # the marks trail their reads by the read latency
        ctx.set(dut.host, 1)
        out["cycles"] = cycles
        for name, mem, base, n in (("dst", dut.src, dst_t.base, dst_t.words),
                                   ("mk", dut.smem, mk_region, mk_t.words)):
            words = []
            for i in range(n + READ_LATENCY):  # one address per cycle, its data READ_LATENCY later
                ctx.set(dut.h_addr, base + min(i, n - 1))
                await ctx.tick()
                words.append(ctx.get(dut.src_q if mem is dut.src else dut.smem_q))
            out[name] = words[READ_LATENCY - 1:READ_LATENCY - 1 + n]

    simulate(dut, bench)
    return (_unwords(out["dst"], (n_img, rows, pg.wo, c)), _unwords(out["mk"], a.shape),
            out["cycles"])


def _expected(pg: PoolGeom, a: np.ndarray, s: np.ndarray, y0: int, rows: int, pad_value: int = 0,
              last_max: bool = False) -> tuple:
    """The golden model's pool of every output row, cut to the tile, and the marked copy the
    unit writes for the tile's windows (positions of other rows keep the sentinel 99). The
    mutations a test must tell apart: `pad_value` other than the reference's 0, and `last_max`
    (unpadded only): ties routed to the window's last maximum instead of its first."""
    kh, kw, ph, pw = pg.kh, pg.kw, pg.ph, pg.pw
    x = a.transpose(0, 3, 1, 2)
    out, arg = maxpool_forward(x, (kh, kw), (ph, pw), pad_value=pad_value)
    if last_max:  # a later window position wins a tie: its index as the lowest digit of x
        assert not ph and not pw
        pos = (np.arange(pg.h)[:, None] % kh) * kw + np.arange(pg.w) % kw
        arg = maxpool_forward(x.astype(np.int32) * kh * kw + pos, (kh, kw), (0, 0))[1]
    pooled = out.transpose(0, 2, 3, 1)[:, y0:y0 + rows]
    if not pg.mask:
        return pooled, np.full_like(s, 99)
    tile = np.zeros(out.shape, dtype=np.int32)
    tile[:, :, y0:y0 + rows] = 1
    in_shape = (a.shape[0], a.shape[3], pg.h, pg.w)

    def routed(window_arg):  # the positions the golden model routes the tile's windows to
        back = maxpool_backward(tile, window_arg, in_shape, (kh, kw), (ph, pw))
        return back.transpose(0, 2, 3, 1) != 0

    covered = np.logical_or.reduce([routed(np.full_like(arg, k)) for k in range(kh * kw)])
    marked = np.where(covered, np.where(routed(arg), s, MASK), 99).astype(s.dtype)
    return pooled, marked


@pytest.mark.parametrize("h, w, c, k, pad, y0, rows, low, high, mask", [
    (6, 6, 16, (2, 2), (0, 0), 0, 3, -3, 3, True),      # two words per pixel, ties in 7 values
    (6, 4, 8, (4, 2), (1, 0), 0, 2, -100, 0, True),     # padded rows: all-negative windows pool to 0
    (8, 6, 8, (4, 2), (2, 0), 1, 1, -120, 126, True),   # a tile of one output row away from the top
    (7, 5, 8, (2, 2), (0, 0), 0, 3, -127, 126, True),   # a row and a column no window covers (floor)
    (6, 6, 16, (2, 2), (0, 0), 0, 3, -3, 3, False),     # a pool between blocks: no marked copy
])
def test_pool_unit_matches_the_golden_model(h, w, c, k, pad, y0, rows, low, high, mask):
    rng = np.random.default_rng(h * 100 + w * 10 + c + y0)
    n_img = 3
    a = rng.integers(low, high, (n_img, h, w, c), endpoint=True).astype(np.int8)
    s = rng.integers(-127, 128, (n_img, h, w, c)).astype(np.int8)
    pg = PoolGeom(h, w, c // L, *k, *pad, mask=mask)
    got_pool, got_mark, cycles = _run(pg, a, s, y0, rows)
    want_pool, want_mark = _expected(pg, a, s, y0, rows)
    assert want_pool.size and (want_mark != 99).any() == mask  # something was pooled (and marked)
    np.testing.assert_array_equal(got_pool, want_pool)
    np.testing.assert_array_equal(got_mark, want_mark)
    # the cases tell the reference's rules from their mutations
    if pad != (0, 0) and y0 == 0:  # a tile with padded windows
        assert not np.array_equal(got_pool, _expected(pg, a, s, y0, rows, pad_value=-128)[0])
    elif mask and low == -3:
        assert not np.array_equal(got_mark, _expected(pg, a, s, y0, rows, last_max=True)[1])
    # one window position read per cycle (twice with marks), as the performance model counts
    assert cycles == pool_cycles(n_img * rows * pg.wo * pg.words, k[0] * k[1], mask)


@pytest.mark.parametrize("rate", [0.05, 0.15, 0.25])
def test_pool_unit_dropout_matches_the_golden_model(rate):
    """Dropout over 1x1 windows: each word kept where its mask byte is not 0 and rescaled,
    tdiv(x * R, 1000), for NITRO-ReLU outputs over their whole range (both ends included); the
    mask read in the marking pass marks nothing; two cycles per word, and dropout's stages."""
    rng = np.random.default_rng(int(rate * 100))
    n_img, h, w, c = 3, 4, 6, 16
    relu = nitro_relu_forward(np.arange(-128, 128).astype(np.int8), P.slope_inv)
    lo, hi = int(relu.min()), int(relu.max())
    a = rng.integers(lo, hi, (n_img, h, w, c), endpoint=True).astype(np.int8)
    a.flat[:2] = lo, hi
    keep = rng.integers(0, 2, (n_img, h, w, c)).astype(np.int8)
    pg = PoolGeom(h, w, c // L, 1, 1, drop=dropout_multiplier(rate))
    got, marked, cycles = _run(pg, a, keep, 0, h)
    want = dropout_forward(a.transpose(0, 3, 1, 2), keep.transpose(0, 3, 1, 2), rate).transpose(0, 2, 3, 1)
    assert (want != a).any() and (want[keep == 1] != 0).any()  # dropped and rescaled values
    np.testing.assert_array_equal(got, want)
    assert (marked == 99).all()
    assert cycles == pool_cycles(n_img * h * w * pg.words, 1, False, True)
