"""The fast exact GEMM equals the exact integer oracle in every regime (float32, float64, limbs)."""
import numpy as np
import pytest

from model.gemm import im2col, matmul, matmul_reference, sum_bound
from model.numerics import NitroError


@pytest.mark.parametrize("amax,bmax,k", [
    (127, 64, 100),            # float32 regime
    (128, 30000, 784),         # float64 regime
    (128, (1 << 31) - 1, 4608),  # float64 at its widest: int8 x int32 extremes (bound ~2^50)
    ((1 << 31) - 1, 127, 300),   # wide operand on the left
    ((1 << 31) - 1, (1 << 31) - 1, 64),  # limb split: result needs 67 bits, exact mod 2^64
])
def test_matmul_matches_integer_oracle(amax, bmax, k):
    rng = np.random.default_rng(k)
    a = rng.integers(-amax, amax + 1, size=(17, k), dtype=np.int64)
    b = rng.integers(-bmax, bmax + 1, size=(k, 9), dtype=np.int64)
    a[0, :] = -amax  # aligned extremes: the worst case of the bound
    b[:, 0] = -bmax
    np.testing.assert_array_equal(matmul(a, b), matmul_reference(a, b))


@pytest.mark.parametrize("a,b,dtype", [
    (1, (1 << 24) - 1, np.float32),    # the largest bound float32 holds exactly
    (1, 1 << 24, np.float64),
    (127, (1 << 18) + 1, np.float64),  # an odd product above 2^24: float32 would round it
    (1, (1 << 53) - 1, np.float64),
    (1, 1 << 53, None),                # limbs
    (3, (1 << 53) + 1, None),          # an odd product above 2^53: float64 would round it
])
def test_each_float_regime_ends_where_its_type_stops_being_exact(monkeypatch, a, b, dtype):
    import model.gemm as gemm

    used, real = [], gemm._float_matmul
    monkeypatch.setattr(gemm, "_float_matmul", lambda x, y, t: used.append(t) or real(x, y, t))
    a, b = np.array([[a]], np.int64), np.array([[b]], np.int64)
    np.testing.assert_array_equal(matmul(a, b), matmul_reference(a, b))
    assert used == ([dtype] if dtype else [])


def test_bound_selects_float32_only_when_exact():
    a = np.full((2, 1024), 127, dtype=np.int8)
    b = np.full((1024, 2), 130, dtype=np.int32)  # 127*130*1024 > 2^24
    assert sum_bound(a, b) >= 1 << 24
    np.testing.assert_array_equal(matmul(a, b), np.full((2, 2), 127 * 130 * 1024))


def test_matmul_rejects_bad_operands():
    with pytest.raises(NitroError, match="inner dimensions"):
        matmul(np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int32))
    with pytest.raises(NitroError, match="integer"):
        matmul(np.zeros((2, 3)), np.zeros((3, 2), np.int32))
    with pytest.raises(NitroError, match="2-D"):
        matmul(np.zeros(3, np.int8), np.zeros((3, 2), np.int32))


def test_im2col_is_cross_correlation_with_zero_padding():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(2, 3, 5, 4), dtype=np.int8)
    w = rng.integers(-64, 65, size=(4, 3, 3, 3), dtype=np.int32)
    cols = im2col(x, 3, 3, 1)
    z = matmul(cols, w.reshape(4, -1).T).reshape(2, 5, 4, 4).transpose(0, 3, 1, 2)
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    naive = np.zeros((2, 4, 5, 4), dtype=np.int64)
    for i in range(5):
        for j in range(4):
            naive[:, :, i, j] = np.einsum("mckl,fckl->mf", xp[:, :, i:i + 3, j:j + 3], w)
    np.testing.assert_array_equal(z, naive)


def test_training_steps_identical_on_fast_and_integer_gemm(shared_dir, monkeypatch):
    """Whole training steps (trained weights, real data) agree bit for bit on both GEMM paths;
    under reference_gemm no BLAS product runs."""
    import model.gemm
    from model.conform import spec_from_meta
    from model.gemm import reference_gemm
    from model.network import Network
    import json

    vec = shared_dir / "refvectors"
    meta = json.loads((vec / "cnnx_meta.json").read_text())
    data = np.load(vec / "mlp_warm1500_data.npz")
    init = {k.removesuffix(".weight"): v for k, v in np.load(vec / "cnnx_init.npz").items()}
    spec = spec_from_meta(meta, (1, 28, 28), 10)
    nets = [Network(spec, {k: v * 97 for k, v in init.items()}) for _ in range(2)]  # large weights
    def refused(*a):
        raise AssertionError("a float GEMM ran under reference_gemm")

    fast, float_matmul = [], model.gemm._float_matmul

    def counted(*a):
        fast.append(1)
        return float_matmul(*a)

    for k in (1, 2, 3):
        with monkeypatch.context() as mp:
            mp.setattr(model.gemm, "_float_matmul", counted)
            nets[0].train_step(data[f"step{k}_x"], data[f"step{k}_y_onehot"], 512)
        with reference_gemm(), monkeypatch.context() as mp:
            mp.setattr(model.gemm, "_float_matmul", refused)
            nets[1].train_step(data[f"step{k}_x"], data[f"step{k}_y_onehot"], 512)
    assert fast  # the fast path took BLAS products
    for name, w in nets[0].params.items():
        assert np.any(w != init[name] * 97), name  # the steps changed every layer
        np.testing.assert_array_equal(nets[1].params[name], w)
