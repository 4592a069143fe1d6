"""Runtime-SF scaling (the engine's): corner numerators x the paper's and random SFs, real GEMM
outputs, against model.layers.nitro_scaling."""
import numpy as np

from model.layers import nitro_scaling
from sim.tb.common import UnitBench, cocotb_test, real_gemm_outputs, scaling_stimulus
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
    z, sf = scaling_stimulus(rng, pool, 1_000_000, b.unit.max_scale)
    await b.check("int32 extremes x SF 1, 2, 3, 255, max; 32-bit corners x 200 runtime SFs "
                  "(+-k*SF+-2 at the clip points)",
                  {"z": z, "sf": sf}, lambda v: golden(z, sf))


@cocotb_test()
async def real_tensors(dut):
    b = UnitBench(dut)
    outs = real_gemm_outputs()
    z = np.concatenate(outs)
    sf = np.concatenate([np.full(len(v), SCALING_FACTORS[i % len(SCALING_FACTORS)])
                         for i, v in enumerate(outs)])
    await b.check("real MNIST GEMM outputs, random valid/ready", {"z": z, "sf": sf},
                  lambda v: golden(z, sf), valid_p=0.8, ready_p=0.6)
