"""Dropout on the engine (spec 2.8): the host writes each step's keep masks, as the golden model
draws them, into external memory like the batch; the max-pool unit applies them over 1x1
windows (`hw.engine.pool`, `drop`) with the rate's rescale R as tdiv(x * R, 1000) =
sign(x) * (|x| * multiplier >> DROP_SHIFT). The result stays an int8 activation, so a rate is
admitted only when every NITRO-ReLU output it can rescale still fits int8 (the reference stores
int16, whose values these are). Inference is the identity: a plain 1x1 max-pool copy.
"""
from __future__ import annotations

import numpy as np

from model.layers import dropout_rescale, nitro_relu_forward
from model.numerics import NitroError
from model.spec import Dropout

from .params import CV_BITS, CV_N0_BITS, DROP_MULT_BITS, DROP_SHIFT, EngineParams

ACT_MAG = 128  # the largest |x| of an int8 activation


def dropout_multiplier(rate: float) -> int:
    """The d_mult of a dropout command: (|x| * it) >> DROP_SHIFT == |x| * R // 1000 for every
    |x| <= ACT_MAG (checked here, for the rate at hand)."""
    r = dropout_rescale(rate)
    mult = -(-(r << DROP_SHIFT) // 1000)
    x = np.arange(ACT_MAG + 1, dtype=np.int64)
    if not np.array_equal((x * mult) >> DROP_SHIFT, x * r // 1000):
        raise NitroError(f"engine: dropout rescale {r} is not exact as a multiply-shift by "
                         f"{DROP_SHIFT} bits")
    return mult


def check_dropout(d: Dropout, p: EngineParams) -> None:
    """A rate the engine runs: its rescaled NITRO-ReLU outputs fit int8 and its multiplier the
    unit's; else NitroError naming the layer and the limit."""
    table = nitro_relu_forward(np.arange(-128, 128, dtype=np.int64).astype(np.int8), p.slope_inv)
    lo, hi = int(table.min()), int(table.max())

    def fits(rate: float) -> bool:
        r = dropout_rescale(rate)
        return (-(-lo * r // 1000) >= -128 and hi * r // 1000 <= 127
                and dropout_multiplier(rate) < 1 << DROP_MULT_BITS)

    if not fits(d.rate):
        r = dropout_rescale(d.rate)
        top = max((k / 100 for k in range(5, 100, 5) if fits(k / 100)), default=None)
        raise NitroError(f"engine: {d.name}: dropout rate {d.rate} rescales NITRO-ReLU outputs "
                         f"{lo}..{hi} by {r}/1000 to {-(-lo * r // 1000)}..{hi * r // 1000}, beyond "
                         f"the engine's int8 activations (it runs rates up to {top})")


def flat_geometry(words: int, whole: bool = True) -> tuple[int, int]:
    """(pixels, words per pixel) of a feature vector of `words` scratchpad words per row seen as
    a one-row image for the pool unit's 1x1 walk: the pixels within the window generator's image
    side, the words within its count; a vector whose last word is partial (not `whole`) in one
    pixel. NitroError when no such split exists."""
    side, n0 = (1 << CV_BITS) - 1, (1 << CV_N0_BITS) - 1
    for px in range(1, side + 1 if whole else 2):
        if words % px == 0 and words // px <= n0:
            return px, words // px
    raise NitroError(f"engine: dropout over {words} words per row: the max-pool unit walks rows of "
                     f"at most {side} pixels of {n0} words, and {words} has no such split"
                     + ("" if whole else " (its last word partial: one pixel)"))
