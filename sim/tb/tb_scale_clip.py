"""Runtime-SF scaling (the engine's): corner numerators x the paper's and random SFs, real GEMM
outputs, against model.layers.nitro_scaling."""
import numpy as np

from model.layers import nitro_scaling
from sim.tb.common import MLP_STEPS, UnitBench, cocotb_test, corner_ints, tensors
from sim.units import SCALING_FACTORS


def golden(z, sf):
    out = np.empty(len(z), dtype=np.int64)
    for f in np.unique(sf):
        out[sf == f] = nitro_scaling(z[sf == f], int(f))
    return out


def sf_pool(rng, max_scale: int) -> np.ndarray:
    """The paper's SFs, 1, the largest, and log-uniform others."""
    rand = np.floor(2.0 ** rng.uniform(0, np.log2(max_scale), 200)).astype(np.int64)
    return np.unique(np.clip(np.array(SCALING_FACTORS + [1, 2, 3, 255, max_scale] + rand.tolist()),
                             1, max_scale))


@cocotb_test()
async def corners(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(8)
    pool = sf_pool(rng, b.unit.max_scale)
    # numerators around k * SF for the clip points k = +-127, +-128 and small k
    sf = rng.choice(pool, 1_000_000)
    k = rng.choice([-129, -128, -127, -1, 0, 1, 127, 128, 129], len(sf))
    near = np.clip(k * sf + rng.integers(-2, 3, len(sf)), -(1 << 31), (1 << 31) - 1)
    z = np.where(rng.random(len(sf)) < 0.5, near, corner_ints(rng, 32, len(sf)))
    await b.check("32-bit corners x 200 runtime SFs (+-k*SF+-2 at the clip points)",
                  {"z": z, "sf": sf}, lambda v: golden(z, sf))


@cocotb_test()
async def real_tensors(dut):
    b = UnitBench(dut)
    src, z, sf = tensors(), [], []
    for part, which in MLP_STEPS + ((("step1", "cnn"),) if src.cnn else ()):
        r = src.load(part, which)
        for k in r:
            if k.startswith("fwd/linear") or k.startswith("fwd/conv"):
                v = r[k][:4].ravel()
                z.append(v)
                sf.append(np.full(len(v), SCALING_FACTORS[len(sf) % len(SCALING_FACTORS)]))
    z, sf = np.concatenate(z).astype(np.int64), np.concatenate(sf)
    await b.check("real MNIST GEMM outputs, random valid/ready", {"z": z, "sf": sf},
                  lambda v: golden(z, sf), valid_p=0.8, ready_p=0.6)
