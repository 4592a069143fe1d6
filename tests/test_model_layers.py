"""Layer arithmetic against the spec's measured vectors (spec 2, 4.1, Appendix A)."""
import numpy as np
import pytest

from model.layers import (RELU_MEAN_CORRECTION, dropout_forward, dropout_rescale, loss_gradient,
                          maxpool_backward, maxpool_forward, nitro_relu_backward, nitro_relu_forward,
                          nitro_scaling, rss_loss_reference)
from model.numerics import NitroError
from model.optim import Schedule, integer_sgd_update

S = np.array([-127, -5, -4, -3, -1, 0, 1, 126, 127], dtype=np.int8)


def test_scaling_vectors():
    z = np.array([25_000_000, 30_000_000, -200_705, -200_703, -401_408, -30_000_000, 200_703], np.int32)
    out = nitro_scaling(z, 200_704)
    np.testing.assert_array_equal(out, [124, 127, -1, 0, -2, -127, 0])
    assert out.dtype == np.int8
    assert nitro_scaling(np.array([-(1 << 31)], np.int32), 1).item() == -127  # never -128


def test_relu_forward_vectors():
    a = nitro_relu_forward(S, 4)
    np.testing.assert_array_equal(a, [-67, -37, -37, -36, -36, -36, -35, 90, 91])
    assert a.dtype == np.int8


def test_per_slope_tables_are_the_spec():
    """mu(alpha) and the Kaiming gain x1000 as spec 2.4 tabulates them (the reference derives
    neither; the model's tables are copies, checked here against the spec's)."""
    from model.init import KAIMING_GAIN

    alphas = [3, 4, 5, 7, 8, 10, 15, 16, 20]
    assert RELU_MEAN_CORRECTION == dict(zip(alphas, [31, 36, 38, 40, 42, 43, 44, 44, 45]))
    assert KAIMING_GAIN == dict(zip(alphas, [1342, 1372, 1387, 1400, 1403, 1407, 1411, 1411, 1412]))


@pytest.mark.parametrize("alpha", sorted(RELU_MEAN_CORRECTION))
def test_relu_forward_every_slope(alpha):
    s = np.arange(-128, 128, dtype=np.int8)
    a = nitro_relu_forward(s, alpha).astype(int)
    mu = RELU_MEAN_CORRECTION[alpha]
    for v, got in zip(s.tolist(), a.tolist()):
        v = max(v, -127)
        assert got == (v - mu if v >= 0 else -((-v) // alpha) - mu)


@pytest.mark.parametrize("delta,expected", [
    (-7, [-1, -1, -1, -1, -1, -7, -7, -7, 0]),
    (9, [2, 2, 2, 2, 2, 9, 9, 9, 0]),
    (-(1 << 31), [-536_870_912] * 5 + [-(1 << 31)] * 3 + [-1]),
])
def test_relu_backward_vectors(delta, expected):
    d = np.full(S.shape, delta, dtype=np.int32)
    out = nitro_relu_backward(d, S, 4)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int32


def test_unsupported_slope_is_rejected():
    with pytest.raises(NitroError, match="slope inverse 6"):
        nitro_relu_forward(S, 6)
    with pytest.raises(NitroError, match="slope inverse 2"):
        nitro_relu_backward(S.astype(np.int32), S, 2)


def test_loss_gradient_wraps_like_the_reference():
    y = np.array([32, 0, 32, 0], np.int8)
    yh = np.array([-100, -127, 127, -96], np.int8)
    np.testing.assert_array_equal(loss_gradient(yh, y), [124, -127, 95, -96])
    np.testing.assert_array_equal(loss_gradient(yh, y, wrap_int8=False), [-132, -127, 95, -96])
    assert rss_loss_reference(np.array([0], np.int8), np.array([32], np.int8)) == 0  # 32^2 wraps


def test_maxpool_first_maximum_and_routing():
    x = np.array([[5, 5, 1], [5, 2, 0], [9, 9, 9]], dtype=np.int8)[None, None]
    out, arg = maxpool_forward(x, (2, 2), (0, 0))
    np.testing.assert_array_equal(out, [[[[5]]]])
    assert arg.item() == 0
    back = maxpool_backward(np.array([[[[7]]]], np.int32), arg, x.shape, (2, 2), (0, 0))
    np.testing.assert_array_equal(back[0, 0], [[7, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_padded_pool_pads_with_zero_and_drops_padding_gradient():
    x = np.full((1, 1, 3, 2), -40, dtype=np.int8)
    x[0, 0, 2, 1] = -3
    out, arg = maxpool_forward(x, (2, 1), (1, 0), pad_value=0)  # reference quirk: pad value 0
    np.testing.assert_array_equal(out[0, 0], [[0, 0], [-40, -3]])
    back = maxpool_backward(np.array([[[[1, 2], [3, 4]]]], np.int32), arg, x.shape, (2, 1), (1, 0))
    np.testing.assert_array_equal(back[0, 0], [[0, 0], [3, 0], [0, 4]])  # pad winners dropped
    out_fix, _ = maxpool_forward(x, (2, 1), (1, 0), pad_value=-128)
    np.testing.assert_array_equal(out_fix[0, 0], [[-40, -40], [-40, -3]])


def test_dropout_rescale():
    np.testing.assert_array_equal(dropout_forward(np.array([91, -67, 91], np.int8), np.array([1, 1, 0]), 0.1),
                                  [101, -74, 0])
    assert dropout_rescale(0.15) == 1176
    spec = [1052, 1111, 1176, 1250, 1333, 1428, 1538, 1666, 1818, 2000,  # spec 2.8, p = 0.05 .. 0.95
            2222, 2500, 2857, 3333, 4000, 5000, 6666, 10000, 20000]
    assert [dropout_rescale(round(0.05 * k, 2)) for k in range(1, 20)] == spec
    with pytest.raises(NitroError, match="dropout rate 0.12"):
        dropout_rescale(0.12)


@pytest.mark.parametrize("w,g,d,eta,u,w_new", [
    (5000, 1_000_000, 327_680, 12_000, 3, 4997),
    (-30_000, -400_000, 327_680, 25_000, -2, -29_998),
    (7, -1000, 512, 3000, -1, 8),
    (3001, 0, 512, 3000, 1, 3000),
    (-2999, 0, 512, 3000, 0, -2999),
])
def test_integer_sgd_vectors(w, g, d, eta, u, w_new):
    new, upd = integer_sgd_update(np.array([w]), np.array([g]), d, eta)
    assert (int(upd[0]), int(new[0])) == (u, w_new)


def test_sgd_rejects_bad_divisors():
    with pytest.raises(NitroError):
        integer_sgd_update(np.array([1]), np.array([1]), 0, 0)
    with pytest.raises(NitroError):
        integer_sgd_update(np.array([1]), np.array([1]), 5, -1)


def test_plateau_schedule_and_early_stop_follow_the_reference():
    s = Schedule()
    accs = [0.9] * 9 + [0.95] + [0.955] * 15  # best set at epoch 10, then 15 epochs without +1 point
    lr = []
    for a in accs:
        assert not s.end_epoch(a)
        lr.append(s.lr_inv)
    assert lr[-2] == 512 and lr[-1] == 1536
    stop = [s.end_epoch(0.955) for _ in range(40)]
    # EarlyStopping sets its best at epoch 30, then fires after 35 epochs without gain: epoch 65.
    assert len(accs) + stop.index(True) + 1 == 65


@pytest.mark.parametrize("factor", [1, 3, 2304, 25600, 200704, 786432, 1179648, (1 << 31) - 1])
def test_scaling_float_path_equals_integer_tdiv(factor):
    """The float64 shortcut in nitro_scaling agrees with integer truncating division everywhere."""
    from model.numerics import tdiv

    rng = np.random.default_rng(factor)
    z = rng.integers(-(1 << 31), 1 << 31, size=200_000, dtype=np.int64)
    k = rng.integers(-(1 << 31) // factor, (1 << 31) // factor, size=50_000)
    edges = np.concatenate([k * factor, k * factor - 1, k * factor + 1, [-(1 << 31), (1 << 31) - 1, 0, -1]])
    z = np.clip(np.concatenate([z, edges]), -(1 << 31), (1 << 31) - 1).astype(np.int32)
    expected = np.clip(tdiv(z, factor), -127, 127).astype(np.int8)
    np.testing.assert_array_equal(nitro_scaling(z, factor), expected)


def test_sgd_float_path_equals_integer_tdiv():
    """The float64 shortcut in integer_sgd_update agrees with integer truncating division (tdiv;
    int64 operands would take the same shortcut, so they are no reference)."""
    from model.numerics import tdiv

    rng = np.random.default_rng(7)
    w = rng.integers(-(1 << 31), 1 << 31, size=100_000).astype(np.int32)
    g = rng.integers(-(1 << 31), 1 << 31, size=100_000).astype(np.int32)
    w[:4], g[:4] = [-(1 << 31), (1 << 31) - 1, -1, 0], [-(1 << 31), (1 << 31) - 1, -1, 0]
    for d, eta in ((512, 3000), (327_680, 12_000), (7, 0), ((1 << 31) - 1, 1)):
        wf, uf = integer_sgd_update(w, g, d, eta)
        u = tdiv(g, d) + (tdiv(w, eta) if eta else 0)
        np.testing.assert_array_equal(np.asarray(uf, dtype=np.int64), u)
        np.testing.assert_array_equal(np.asarray(wf, dtype=np.int64), w.astype(np.int64) - u)
