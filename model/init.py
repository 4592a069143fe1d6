"""Integer Kaiming-uniform initialisation (spec 5)."""
from __future__ import annotations

import numpy as np

from .layers import SLOPE_INV
from .numerics import NitroError, isqrt
from .spec import NetworkSpec

# Kaiming gain x1000 of a leaky ReLU with slope 1/alpha (spec 2.4 table).
KAIMING_GAIN = {3: 1342, 4: 1372, 5: 1387, 7: 1400, 8: 1403, 10: 1407, 15: 1411, 16: 1411, 20: 1412}
INIT_CAP = 64


def kaiming_bound(fan_in: int, slope_inv: int = SLOPE_INV) -> int:
    """fdiv(gain*128*1732, isqrt(fan_in)*10^6), capped at 64."""
    if fan_in <= 0:
        raise NitroError(f"fan-in must be positive, got {fan_in}")
    if slope_inv not in KAIMING_GAIN:
        raise NitroError(f"no Kaiming gain for slope inverse {slope_inv}")
    return min(KAIMING_GAIN[slope_inv] * 128 * 1732 // (isqrt(fan_in) * 1000 * 1000), INIT_CAP)


def init_params(spec: NetworkSpec, rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """Draw int32 weights uniformly in [-bound, bound], layers in the reference's construction order."""
    slope = next((it.relu.slope_inv for it in spec.blocks.values()), 4)
    params = {}
    for layer in spec.param_layers():
        b = kaiming_bound(layer.fan_in, slope)
        params[layer.name] = rng.randint(-b, b + 1, size=layer.weight_shape, dtype=np.int32)
    return params
