"""Runtime-programmable divider: host constants (model.divider) x corner numerators."""
import numpy as np

from model.numerics import tdiv
from model.optim import sgd_divisor
from sim.tb.common import UnitBench, cocotb_test, corner_ints, tensors
from sim.units import SGD_DIVISORS


def divisor_pool(rng) -> np.ndarray:
    # IntegerSGD's D over the schedule, plus log-uniform others
    rand = np.floor(2.0 ** rng.uniform(0, 32, 200)).astype(np.int64)
    extra = [1, 2, 3, 7, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]
    return np.unique(np.clip(np.array(SGD_DIVISORS + extra + rand.tolist()), 1, (1 << 32) - 1))


def payload(bench, n, d):
    pool, idx = np.unique(d, return_inverse=True)
    cs = [bench.unit.constants(int(x)) for x in pool]
    return {"n": n, "mult": np.array([c.mult for c in cs])[idx],
            "shift": np.array([c.shift for c in cs])[idx]}


@cocotb_test()
async def corners(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(6)
    pool = divisor_pool(rng)
    n = corner_ints(rng, 32, 1_000_000, pivots=pool[:64].tolist())
    d = rng.choice(pool, len(n))
    await b.check("32-bit corners x 300 runtime divisors", payload(b, n, d),
                  lambda v: tdiv(n, d))


@cocotb_test()
async def multiples(dut):
    """Numerators at and beside the multiples of their own divisor, for every divisor of a pool
    drawn as the corners' is (the schedule's, the extremes and 200 log-uniform others): where a
    constant off by one shows first (the corners pair a numerator with a random divisor, so the
    large divisors never see their multiples)."""
    b = UnitBench(dut)
    rng = np.random.default_rng(7)
    lo, hi = -(1 << 31), (1 << 31) - 1
    n, d = [], []
    for div in divisor_pool(rng).tolist():
        kmin, kmax = -(-lo // div), hi // div  # the multiples k * div inside int32
        ks = np.unique(np.concatenate([[kmin, kmax, kmin + 1, kmax - 1, -1, 1],
                                       rng.integers(kmin, kmax + 1, 40)]))
        ks = ks[(ks >= kmin) & (ks <= kmax)]
        for e in range(-2, 3):
            v = ks * div + e
            v = v[(v >= lo) & (v <= hi)]
            n.append(v)
            d.append(np.full(len(v), div))
    n, d = np.concatenate(n), np.concatenate(d)
    await b.check("k * D + (-2..2) for each runtime divisor D", payload(b, n, d), lambda v: tdiv(n, d))


@cocotb_test()
async def real_sgd_divisions(dut):
    b = UnitBench(dut)
    vs = tensors().vector_set()
    r = vs.refs["1"]
    layers = vs.net.spec.param_layers()
    n = np.concatenate([r[f"wgrad/{L.name}"].ravel() for L in layers]).astype(np.int64)
    d = np.concatenate([np.full(r[f"wgrad/{L.name}"].size, sgd_divisor(vs.lr_inv, L.amp))
                        for L in layers])
    await b.check("real MNIST weight gradients / D, random valid/ready", payload(b, n, d),
                  lambda v: tdiv(n, d), valid_p=0.7, ready_p=0.7)
