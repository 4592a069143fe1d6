# amaranth: UnusedElaboratable=no
"""The core's output pipes at their corners against the golden model (the cosim reaches them
only with real training values): the serial scaling with its NITRO-ReLU and loss gradient
(`ScalePipeline`) and the row-wide NITRO-ReLU backward (`ReluBackwardRow`), whose deltas wrap to
the engine's delta width."""
import numpy as np
from amaranth import Cat

from hw.engine.outputs import ReluBackwardRow, ScalePipeline
from hw.engine.params import EngineParams
from model.layers import loss_gradient, nitro_relu_backward, nitro_relu_forward, nitro_scaling
from model.numerics import wrap
from sim.tb.common import corner_ints
from sim.testing import clocked

P = EngineParams()
L = P.lanes
N = 3000


def _fields(words: list[int], width: int, n: int) -> np.ndarray:
    """Each word's n `width`-bit fields, lowest first, as signed values."""
    w = np.array(words, dtype=object)
    return wrap(np.array([[(v >> (width * j)) & ((1 << width) - 1) for j in range(n)] for v in w],
                         dtype=np.int64), width)


def test_scale_pipeline_at_its_corners():
    rng = np.random.default_rng(31)
    sfs = np.array([1, 3, 9, 255, 2304, 200704, 1 << 20, P.max_scale])
    sf = rng.choice(sfs, N)
    k = rng.choice([-129, -128, -127, -1, 0, 1, 127, 128, 129], N)
    near = np.clip(k * sf + rng.integers(-2, 3, N), -(1 << 31), (1 << 31) - 1)
    z = np.where(rng.random(N) < 0.5, near, corner_ints(rng, 32, N))
    y = rng.choice(np.array([-128, -127, -1, 0, 1, 32, 127]), N)
    dut = ScalePipeline(P)
    # cycle c: element c - 1 enters, its sf a cycle earlier; the outputs `latency` cycles later
    cycles = [([(dut.sf, int(sf[c]))] if c < N else [])
              + ([(dut.z, int(z[c - 1])), (dut.y, int(y[c - 1]))] if 1 <= c <= N else [])
              for c in range(N + dut.latency + 1)]
    out = clocked(dut, cycles, Cat(dut.s, dut.a, dut.e))[dut.latency:dut.latency + N]
    assert len(out) == N
    got = _fields(out, P.act_bits, 3)
    s = np.empty(N, np.int64)
    for f in np.unique(sf):
        s[sf == f] = nitro_scaling(z[sf == f], int(f))
    expected = {"s": s, "a": nitro_relu_forward(s.astype(np.int8), P.slope_inv),
                "e": loss_gradient(s.astype(np.int8), y.astype(np.int8))}
    for j, (name, want) in enumerate(expected.items()):
        np.testing.assert_array_equal(got[:, j], want, err_msg=name)


def test_relu_backward_row_wraps_to_the_delta_width():
    rng = np.random.default_rng(32)
    rl = 2
    rows = corner_ints(rng, P.acc_bits, N * L, pivots=[P.slope_inv]).reshape(N, L)
    s = rng.choice(np.concatenate([[-128, -127, -1, 0, 1, 126, 127], rng.integers(-128, 128, 9)]),
                   (N, L))
    dut = ReluBackwardRow(P, rl)
    # cycle c: row c enters; the stored s arrives read_latency cycles after its row
    cycles = [[(dut.valid, c < N)]
              + ([(dut.row, [int(v) for v in rows[c]]), (dut.addr, c)] if c < N else [])
              + ([(dut.s_word, sum((int(v) & 0xFF) << (8 * j) for j, v in enumerate(s[c - rl])))]
                 if 0 <= c - rl < N else [])
              for c in range(N + dut.latency + 1)]
    word_bits = L * P.delta_bits
    out = clocked(dut, cycles, Cat(dut.out_word, dut.out_addr, dut.out_valid))
    got = {(v >> word_bits) & ((1 << len(dut.out_addr)) - 1): v & ((1 << word_bits) - 1)
           for v in out if v >> (word_bits + len(dut.out_addr)) & 1}
    assert sorted(got) == list(range(N))
    want = wrap(nitro_relu_backward(rows, s.astype(np.int8), P.slope_inv), P.delta_bits)
    np.testing.assert_array_equal(_fields([got[i] for i in range(N)], P.delta_bits, L), want)
    assert np.any(want != nitro_relu_backward(rows, s.astype(np.int8), P.slope_inv))  # wraps seen
