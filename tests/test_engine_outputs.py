# amaranth: UnusedElaboratable=no
"""The core's output pipes at their corners against the golden model (the cosim reaches them
only with real training values): the serial scaling with its NITRO-ReLU and loss gradient
(`ScalePipeline`), the row-wide NITRO-ReLU backward (`ReluBackwardRow`), whose deltas wrap to
the engine's delta width, and the partial sums of a GEMM run in chunks of K (`OutputOps`)."""
import numpy as np
from amaranth import Cat

from hw.engine.memory import READ_LATENCY
from hw.engine.outputs import OutputOps, ReluBackwardRow, ScalePipeline
from hw.engine.params import ADDR_W, OP_SCALE_RELU, EngineParams
from model.layers import loss_gradient, nitro_relu_backward, nitro_relu_forward, nitro_scaling
from model.numerics import wrap
from sim.tb.common import corner_ints, extremes, scaling_stimulus
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
    z, sf = scaling_stimulus(rng, np.array([1, 3, 9, 255, 2304, 200704, 1 << 20, P.max_scale]), N,
                             P.max_scale)
    n = len(z)
    y = rng.choice(np.array([-128, -127, -1, 0, 1, 32, 127]), n)
    dut = ScalePipeline(P)
    # cycle c: element c - 1 enters, its sf a cycle earlier; the outputs `latency` cycles later
    cycles = [([(dut.sf, int(sf[c]))] if c < n else [])
              + ([(dut.z, int(z[c - 1])), (dut.y, int(y[c - 1]))] if 1 <= c <= n else [])
              for c in range(n + dut.latency + 1)]
    out = clocked(dut, cycles, Cat(dut.s, dut.a, dut.e))[dut.latency:dut.latency + n]
    assert len(out) == n
    got = _fields(out, P.act_bits, 3)
    s = np.empty(n, np.int64)
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
    valid = [v for v in out if v >> (word_bits + len(dut.out_addr)) & 1]
    got = {(v >> word_bits) & ((1 << len(dut.out_addr)) - 1): v & ((1 << word_bits) - 1) for v in valid}
    assert sorted(got) == list(range(N)) and len(valid) == N  # each row written once
    want = wrap(nitro_relu_backward(rows, s.astype(np.int8), P.slope_inv), P.delta_bits)
    np.testing.assert_array_equal(_fields([got[i] for i in range(N)], P.delta_bits, L), want)
    assert np.any(want != nitro_relu_backward(rows, s.astype(np.int8), P.slope_inv))  # wraps seen


def _split(v: int, *widths: int) -> list[int]:
    """The fields of `v`, lowest first, `widths` bits each."""
    out = []
    for w in widths:
        out.append(v & ((1 << w) - 1))
        v >>= w
    return out


def test_output_ops_add_partial_sums_with_int32_wrap():
    """A GEMM run in chunks of K (`p_in`, `p_out`): each element plus its partial sum from PMEM,
    wrapped to int32, goes back to PMEM (all but the last chunk) or is scaled (the last), at the
    int32 extremes of both addends."""
    rng = np.random.default_rng(33)
    za, pa = (a.ravel() for a in np.meshgrid(extremes(32), extremes(32)))
    z = np.concatenate([za, corner_ints(rng, 32, 400)])
    part = np.concatenate([pa, rng.permutation(corner_ints(rng, 32, 400))])
    n, sf, rl = len(z), 255, READ_LATENCY
    summed = wrap(z + part, 32)
    assert np.any(summed != z + part)  # the stimulus wraps
    for p_in, p_out in ((0, 1), (1, 1), (1, 0)):
        dut = OutputOps(P)
        cmd = [(dut.cmd.op, OP_SCALE_RELU), (dut.cmd.p_in, p_in), (dut.cmd.p_out, p_out),
               (dut.cmd.sc_sf, sf)]
        # cycle c: element c - 2 enters (the op's flags are registered a cycle after the command),
        # its partial sum RL cycles later, as PMEM answers
        cycles = [(cmd if c == 0 else []) + [(dut.e_valid, 2 <= c < n + 2)]
                  + ([(dut.e.z, int(z[c - 2])), (dut.e.p, c - 2), (dut.e.a[2], c - 2),
                      (dut.e.j, (c - 2) % L)] if 2 <= c < n + 2 else [])
                  + ([(dut.p_word, int(part[c - 2 - rl]))] if 2 + rl <= c < n + 2 + rl else [])
                  for c in range(n + 2 + dut.latency + 8)]
        written, writes = {}, 0
        for v in clocked(dut, cycles, Cat(dut.pmem_wr_en, dut.pmem_wr_addr, dut.pmem_wr_data,
                                           dut.smem_wr_en != 0, dut.smem_wr_addr, dut.smem_wr_data[:8])):
            pmem_en, pmem_addr, pmem_data, smem_en, smem_addr, smem_s = _split(v, 1, ADDR_W, 32, 1, ADDR_W, 8)
            assert not (pmem_en and smem_en)
            writes += pmem_en or smem_en
            if pmem_en:
                written[pmem_addr] = int(wrap(np.int64(pmem_data), 32))
            if smem_en:
                written[smem_addr] = int(wrap(np.int64(smem_s), 8))
        total = summed if p_in else z
        want = total if p_out else nitro_scaling(total, sf)
        assert sorted(written) == list(range(n)) and writes == n, (p_in, p_out)  # each once
        np.testing.assert_array_equal([written[i] for i in range(n)], want, err_msg=f"{p_in} {p_out}")
