# amaranth: UnusedElaboratable=no
"""The core's output pipes at their corners against the golden model (the cosim reaches them
only with real training values): the serial scaling with its NITRO-ReLU and loss gradient
(`ScalePipeline`) and the row-wide NITRO-ReLU backward (`ReluBackwardRow`), whose deltas wrap to
the engine's delta width."""
import numpy as np
from amaranth.sim import Simulator

from hw.engine.outputs import ReluBackwardRow, ScalePipeline
from hw.engine.params import EngineParams
from model.layers import loss_gradient, nitro_relu_backward, nitro_relu_forward, nitro_scaling
from model.numerics import wrap
from sim.tb.common import corner_ints

P = EngineParams()
L = P.lanes
N = 3000


def _run(dut, cycles: int, drive, sample) -> None:
    """Each cycle: drive(ctx, k) sets the inputs, sample(ctx, k) reads the outputs, then a clock."""
    async def bench(ctx):
        for k in range(cycles):
            drive(ctx, k)
            sample(ctx, k)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_scale_pipeline_at_its_corners():
    rng = np.random.default_rng(31)
    sfs = np.array([1, 3, 9, 255, 2304, 200704, 1 << 20, P.max_scale])
    sf = rng.choice(sfs, N)
    k = rng.choice([-129, -128, -127, -1, 0, 1, 127, 128, 129], N)
    near = np.clip(k * sf + rng.integers(-2, 3, N), -(1 << 31), (1 << 31) - 1)
    z = np.where(rng.random(N) < 0.5, near, corner_ints(rng, 32, N))
    y = rng.choice(np.array([-128, -127, -1, 0, 1, 32, 127]), N)
    dut = ScalePipeline(P)
    got = {"s": {}, "a": {}, "e": {}}

    def drive(ctx, c):  # element c - 1 enters in cycle c, its sf a cycle earlier
        if c < N:
            ctx.set(dut.sf, int(sf[c]))
        if 0 <= c - 1 < N:
            ctx.set(dut.z, int(z[c - 1]))
            ctx.set(dut.y, int(y[c - 1]))

    def sample(ctx, c):
        if 0 <= c - 1 - dut.latency < N:
            for name in got:
                got[name][c - 1 - dut.latency] = ctx.get(getattr(dut, name))

    _run(dut, N + dut.latency + 2, drive, sample)
    s = np.empty(N, np.int64)
    for f in np.unique(sf):
        s[sf == f] = nitro_scaling(z[sf == f], int(f))
    expected = {"s": s, "a": nitro_relu_forward(s.astype(np.int8), P.slope_inv),
                "e": loss_gradient(s.astype(np.int8), y.astype(np.int8))}
    for name, want in expected.items():
        assert len(got[name]) == N
        np.testing.assert_array_equal([got[name][i] for i in range(N)], want, err_msg=name)


def test_relu_backward_row_wraps_to_the_delta_width():
    rng = np.random.default_rng(32)
    rl = 2
    rows = corner_ints(rng, P.acc_bits, N * L, pivots=[P.slope_inv]).reshape(N, L)
    s = rng.choice(np.concatenate([[-128, -127, -1, 0, 1, 126, 127], rng.integers(-128, 128, 9)]),
                   (N, L))
    dut = ReluBackwardRow(P, rl)
    got = {}

    def drive(ctx, c):
        ctx.set(dut.valid, c < N)
        if c < N:
            ctx.set(dut.row, [int(v) for v in rows[c]])
            ctx.set(dut.addr, c)
        if 0 <= c - rl < N:  # the stored s arrives read_latency cycles after its row
            ctx.set(dut.s_word, sum((int(v) & 0xFF) << (8 * j) for j, v in enumerate(s[c - rl])))

    def sample(ctx, c):
        if ctx.get(dut.out_valid):
            word = ctx.get(dut.out_word)
            mask = (1 << P.delta_bits) - 1
            got[ctx.get(dut.out_addr)] = [word >> (P.delta_bits * j) & mask for j in range(L)]

    _run(dut, N + dut.latency + 2, drive, sample)
    assert sorted(got) == list(range(N))
    want = wrap(nitro_relu_backward(rows, s.astype(np.int8), P.slope_inv), P.delta_bits)
    got_words = np.array([got[i] for i in range(N)], dtype=np.int64)
    np.testing.assert_array_equal(wrap(got_words, P.delta_bits), want)
    assert np.any(want != nitro_relu_backward(rows, s.astype(np.int8), P.slope_inv))  # wraps seen
