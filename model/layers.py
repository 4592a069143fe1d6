"""NITRO-D layer arithmetic, forward and backward (spec section 2), as plain functions.

These functions are the golden model of every hardware unit: testbenches call them directly.
Each docstring gives the input/output dtypes and the rounding. GEMM results are returned exact
(int64); the caller narrows them to the declared accumulator width (see `numerics.WidthPolicy`).
"""
from __future__ import annotations

import numpy as np

from .gemm import im2col, matmul
from .numerics import NitroError, tdiv_scalar, wrap

INT32_MAX = (1 << 31) - 1
SLOPE_INV = 4  # the reference's NITRO-ReLU: negative slope alpha = 1 / 4
ACT_MAX = 127  # NITRO scaling clips to [-127, 127]: -128 is never produced (spec 2.3)

# Mean correction mu(alpha) of NITRO-ReLU, a table in the reference (spec 2.4).
RELU_MEAN_CORRECTION = {3: 31, 4: 36, 5: 38, 7: 40, 8: 42, 10: 43, 15: 44, 16: 44, 20: 45}

# Integer rescale R = trunc(1000 / (1 - p)) of Dropout, keyed by p in hundredths (spec 2.8).
DROPOUT_RESCALE = {
    5: 1052, 10: 1111, 15: 1176, 20: 1250, 25: 1333, 30: 1428, 35: 1538, 40: 1666, 45: 1818,
    50: 2000, 55: 2222, 60: 2500, 65: 2857, 70: 3333, 75: 4000, 80: 5000, 85: 6666, 90: 10000,
    95: 20000,
}


def check_slope_inv(slope_inv: int) -> int:
    """Return mu(alpha) for a supported negative-slope inverse, else raise."""
    if slope_inv not in RELU_MEAN_CORRECTION:
        raise NitroError(
            f"unsupported NITRO-ReLU slope inverse {slope_inv!r}; supported: "
            f"{sorted(RELU_MEAN_CORRECTION)}"
        )
    return RELU_MEAN_CORRECTION[slope_inv]


def dropout_rescale(rate: float) -> int:
    """Integer rescale R of a Dropout rate (a multiple of 0.05 in [0.05, 0.95])."""
    key = round(rate * 100)
    if key not in DROPOUT_RESCALE or abs(rate * 100 - key) > 1e-9:
        raise NitroError(f"unsupported dropout rate {rate!r}; use a multiple of 0.05 in 0.05..0.95")
    return DROPOUT_RESCALE[key]


# ---- GEMM layers ---------------------------------------------------------------------------

def linear_forward(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """z[b][o] = sum_i x[b][i] * W[o][i]; x int8/int16 (B, in), W int32 (out, in); exact int64."""
    return matmul(x, w.T)


def linear_input_grad(delta: np.ndarray, w: np.ndarray) -> np.ndarray:
    """delta_in[b][i] = sum_o delta[b][o] * W[o][i]; exact int64 (uses W before its update)."""
    return matmul(delta, w)


def linear_weight_grad(delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """G[o][i] = sum_b delta[b][o] * x[b][i]; exact int64."""
    return matmul(delta.T, x)


def conv2d_forward(x: np.ndarray, w: np.ndarray, padding: int) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation, stride 1, zero padding; x (B,C,H,W) int8, W (F,C,kh,kw) int32.

    Returns the exact int64 output (B,F,Ho,Wo) and the im2col patch matrix kept for backward.
    """
    f, c, kh, kw = w.shape
    if x.ndim != 4 or x.shape[1] != c:
        raise NitroError(f"conv input must be (B, {c}, H, W), got {x.shape}")
    b, _, h, wd = x.shape
    ho, wo = h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1
    cols = im2col(x, kh, kw, padding)
    z = matmul(cols, w.reshape(f, -1).T)
    return z.reshape(b, ho, wo, f).transpose(0, 3, 1, 2), cols


def conv2d_weight_grad(delta: np.ndarray, cols: np.ndarray, w_shape: tuple) -> np.ndarray:
    """G[f][c][k][l] = sum_{m,i,j} delta[m][f][i][j] * xpad[m][c][i+k][j+l]; exact int64."""
    f = delta.shape[1]
    d = delta.transpose(1, 0, 2, 3).reshape(f, -1)
    return matmul(d, cols).reshape(w_shape)


# ---- element-wise layers -------------------------------------------------------------------

def nitro_scaling(z: np.ndarray, factor: int) -> np.ndarray:
    """NITRO Scaling forward: clip(tdiv(z, SF), -127, 127); any int in, int8 out. Backward is identity."""
    z = np.asarray(z)
    if z.dtype.itemsize <= 4 and 0 < factor < (1 << 53):
        q = np.trunc(z / np.float64(factor))  # exact for |z| < 2^53 (see numerics.tdiv_scalar)
    else:
        q = tdiv_scalar(z, factor)
    np.clip(q, -ACT_MAX, ACT_MAX, out=q)
    return q.astype(np.int8)


def _relu_table(slope_inv: int) -> np.ndarray:
    """NITRO-ReLU of every int8 value, indexed by the value's byte (uint8 view)."""
    mu = check_slope_inv(slope_inv)
    s = np.arange(-128, 128, dtype=np.int64)
    pos = np.clip(s, 0, ACT_MAX)
    neg = tdiv_scalar(np.clip(s, -ACT_MAX, 0), slope_inv)
    table = wrap(wrap(pos + neg, 8).astype(np.int64) - mu, 8)  # int8 arithmetic, as the reference
    return np.roll(table, -128)  # entry v & 0xFF holds relu(v)


_RELU_TABLES = {alpha: _relu_table(alpha) for alpha in RELU_MEAN_CORRECTION}


def nitro_relu_forward(s: np.ndarray, slope_inv: int = SLOPE_INV) -> np.ndarray:
    """NITRO-ReLU: (clip(s,0,127) + tdiv(clip(s,-127,0), alpha)) - mu, int8 arithmetic; int8 out.

    Evaluated once per int8 value into a 256-entry table (the input is always int8).
    """
    check_slope_inv(slope_inv)
    s = np.asarray(s)
    if s.dtype != np.int8:
        if s.size and (int(s.min()) < -128 or int(s.max()) > 127):
            raise NitroError("NITRO-ReLU input must be int8 (the output of a scaling layer)")
        s = s.astype(np.int8)
    return _RELU_TABLES[slope_inv][s.view(np.uint8)]


def nitro_relu_backward(delta: np.ndarray, s: np.ndarray, slope_inv: int = SLOPE_INV) -> np.ndarray:
    """delta / g(s) truncated, g = 1 on [0,126], alpha on [-127,-1], INT32_MAX otherwise; int32 out.

    The asymmetry is the reference's: s = 127 blocks the gradient, s = -127 passes delta/alpha.
    """
    check_slope_inv(slope_inv)
    s = np.asarray(s)
    passes = (s >= 0) & (s < ACT_MAX)
    negative = (s >= -ACT_MAX) & (s < 0)
    out = np.where(negative, tdiv_scalar(delta, slope_inv), tdiv_scalar(delta, INT32_MAX))
    return np.where(passes, delta, out).astype(np.int32)


def loss_gradient(y_hat: np.ndarray, y: np.ndarray, wrap_int8: bool = True) -> np.ndarray:
    """RSS loss gradient y_hat - y (not divided by the batch size).

    wrap_int8=True is the reference quirk (int8 subtraction: y_hat - 32 < -128 wraps to a large
    positive value); False gives the exact difference as int16.
    """
    e = np.asarray(y_hat, dtype=np.int64) - np.asarray(y, dtype=np.int64)
    return wrap(e, 8) if wrap_int8 else e.astype(np.int16)


def rss_loss_reference(y_hat: np.ndarray, y: np.ndarray) -> np.int64:
    """The reference's reported loss: sum((y - y_hat)^2) with difference and square in int8 (garbage)."""
    d = wrap(np.asarray(y, dtype=np.int64) - np.asarray(y_hat, dtype=np.int64), 8).astype(np.int64)
    return np.int64(wrap(d * d, 8).astype(np.int64).sum())


def maxpool_forward(
    x: np.ndarray, kernel: tuple[int, int], padding: tuple[int, int], pad_value: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Max over non-overlapping (kh, kw) windows (stride = kernel) of x padded with `pad_value`.

    Returns (out, arg) where arg is the row-major index in the window of the FIRST maximum.
    Remainder rows/columns beyond Oh*kh / Ow*kw are ignored (floor), as in the reference.
    """
    (kh, kw), (ph, pw) = kernel, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    b, c, h, w = x.shape
    oh, ow = (h - kh) // kh + 1, (w - kw) // kw + 1
    win = x[:, :, : oh * kh, : ow * kw].reshape(b, c, oh, kh, ow, kw).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(b, c, oh, ow, kh * kw)
    arg = np.argmax(win, axis=-1)  # first maximum wins ties (spec 1.5)
    out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return out, arg


def maxpool_backward(
    delta: np.ndarray, arg: np.ndarray, in_shape: tuple, kernel: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Route each delta to its window's first maximum; padding and uncovered rows get 0. int32 out."""
    (kh, kw), (ph, pw) = kernel, padding
    b, c, h, w = in_shape
    oh, ow = arg.shape[2], arg.shape[3]
    onehot = np.arange(kh * kw) == arg[..., None]
    routed = np.where(onehot, delta.astype(np.int32)[..., None], np.int32(0))
    routed = routed.reshape(b, c, oh, ow, kh, kw).transpose(0, 1, 2, 4, 3, 5)
    full = np.zeros((b, c, h + 2 * ph, w + 2 * pw), dtype=np.int32)
    full[:, :, : oh * kh, : ow * kw] = routed.reshape(b, c, oh * kh, ow * kw)
    return full[:, :, ph : ph + h, pw : pw + w]


def dropout_forward(x: np.ndarray, keep: np.ndarray, rate: float) -> np.ndarray:
    """tdiv(x * keep * R, 1000) with a 0/1 keep mask; int16 out (spec 2.8)."""
    r = dropout_rescale(rate)
    v = np.asarray(x, dtype=np.int64) * np.asarray(keep, dtype=np.int64) * r
    return tdiv_scalar(v, 1000).astype(np.int16)
