# amaranth: UnusedElaboratable=no
"""hw.engine.rowscale.RowScale against the golden model: C rows of whole tiles (with idle cycles
between rows, M and N not multiples of the lanes) -> exactly the SMEM / AMEM_R row lanes and the
AMEM_C column lanes of the elements inside m_len x n_len, holding s = nitro_scaling(z, SF) and
a = nitro_relu_forward(s)."""
import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hw.engine.params import EngineParams
from hw.engine.rowscale import WRITES, RowScale
from model.layers import nitro_relu_forward, nitro_scaling
from sim.tb.common import extremes
from sim.testing import simulate

P = EngineParams()
L = P.lanes


def _simulate(sf, m_len, n_len, z, gaps):
    """Drive the tiles of C (m tiles x n tiles, rows in order, `gaps[i]` idle cycles before row
    i); returns {memory: {(word, lane): value}} of every write, and the number of writes."""
    dut = RowScale(P)
    mem = {name: {} for name in WRITES}
    writes = [0]
    tiles = [(mt, nt) for mt in range(-(-m_len // L)) for nt in range(-(-n_len // L))]

    async def bench(ctx):
        ctx.set(dut.cmd.sc_sf, sf)
        ctx.set(dut.cmd.m_len, m_len)
        ctx.set(dut.cmd.n_len, n_len)
        rows = [(mt, nt, r) for mt, nt in tiles for r in range(L)]
        cycles = [None] * (1 + gaps[0])  # the command's sf is in place a cycle before its rows
        for i, row in enumerate(rows):
            cycles += [None] * gaps[i] + [row]
        for row in cycles + [None] * (dut.latency + 2 * L):
            ctx.set(dut.valid, row is not None)
            if row is not None:
                mt, nt, r = row
                m = mt * L + r
                ctx.set(dut.row, [int(v) for v in z[m, nt * L:(nt + 1) * L]])
                ctx.set(dut.m_row, m)
                ctx.set(dut.nt, nt)
                ctx.set(dut.col_addr, 1000 + mt * 64 + nt * L)  # o0: (m / L) * stride + n
                ctx.set(dut.row_addr1, 2000 + m * 8 + nt)  # o1 / o2: m * stride + n / L
                ctx.set(dut.row_addr2, 3000 + m * 8 + nt)
            for name in WRITES:
                en = ctx.get(getattr(dut, f"{name}_wr_en"))
                addr = ctx.get(getattr(dut, f"{name}_wr_addr"))
                data = ctx.get(getattr(dut, f"{name}_wr_data"))
                for lane in range(L):
                    if en >> lane & 1:
                        mem[name][(addr, lane)] = np.int8(np.uint8(data >> (8 * lane) & 0xFF))
                        writes[0] += 1
            await ctx.tick()

    simulate(dut, bench)
    return mem, writes[0]


def _expected(sf, m_len, n_len, z):
    s = nitro_scaling(z[:m_len, :n_len], sf)
    a = nitro_relu_forward(s, P.slope_inv)
    mem = {name: {} for name in WRITES}
    for m in range(m_len):
        for n in range(n_len):
            mt, r, nt, j = m // L, m % L, n // L, n % L
            mem["smem"][(3000 + m * 8 + nt, j)] = s[m, n]
            mem["amem_r"][(2000 + m * 8 + nt, j)] = a[m, n]
            mem["amem_c"][(1000 + mt * 64 + nt * L + j, r)] = a[m, n]
    return mem


@settings(max_examples=12, deadline=None)
@example(9, 8, 16, 1)  # whole tiles: every lane of every row and column
@example(256 * 784, 13, 8, 2)
@example(1, 3, 5, 7)  # SF 1: the int32 extremes clip
@given(st.sampled_from([9, 256 * 9, 256 * 784, 1]), st.integers(1, 2 * L + 3),
       st.integers(1, 2 * L + 3), st.integers(0, 2**32 - 1))
def test_row_scale_writes_the_golden_values(sf, m_len, n_len, seed):
    rng = np.random.default_rng(seed)
    mp, np_ = -(-m_len // L) * L, -(-n_len // L) * L
    k = rng.integers(-130, 131, (mp, np_))  # around the clip points, and anywhere
    z = np.where(rng.random((mp, np_)) < 0.5, k * sf + rng.integers(-2, 3, (mp, np_)),
                 rng.integers(-2**31, 2**31, (mp, np_))).clip(-2**31, 2**31 - 1)
    inside = z[:m_len, :n_len]  # a view: the int32 extremes among the elements written
    inside.flat[:min(inside.size, 7)] = extremes(32)[:inside.size]
    gaps = rng.choice([0, 0, 0, 1, 3], mp * np_ // L).tolist()
    got, writes = _simulate(sf, m_len, n_len, z, gaps)
    want = _expected(sf, m_len, n_len, z)
    assert writes == 3 * m_len * n_len  # each lane once, nothing outside m_len x n_len
    for name in WRITES:
        assert got[name] == want[name], name
