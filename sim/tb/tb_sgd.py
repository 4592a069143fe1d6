"""IntegerSGD update (no decay, eta 3000, eta 12000): corners, schedule divisors, real MNIST step."""
import numpy as np

from model.numerics import wrap
from model.optim import integer_sgd_update, sgd_divisor
from sim.tb.common import UnitBench, cocotb_test, corner_ints, tensors
from sim.units import SGD_DIVISORS

SCHEDULE = [d for d in SGD_DIVISORS if d < 1 << 32]


# spec 4.1's worked rows (W, G, D, eta); the model's tests pin their results
SPEC_ROWS = (np.array([5000, -30000, 7, 3001, -2999]), np.array([1_000_000, -400_000, -1000, 0, 0]),
             np.array([327_680, 327_680, 512, 512, 512]), np.array([12_000, 25_000, 3000, 3000, 3000]))


def build(bench, w, g, d, eta=None):
    """Payload and golden callback for weights w, gradients g, divisors d and, for a unit with a
    runtime decay divider, decay inverses eta (else each unit's own decay_inv)."""
    u0 = bench.units[0]
    pool, idx = np.unique(d, return_inverse=True)
    cs = [u0.d_constants(int(x)) for x in pool]
    v = {"w": w, "g": g, "d_mult": np.array([c.mult for c in cs])[idx],
         "d_shift": np.array([c.shift for c in cs])[idx]}
    if eta is not None:
        epool, eidx = np.unique(eta, return_inverse=True)
        ecs = np.array([u0.e_constants(int(e)) for e in epool])
        v["e_mult"], v["e_shift"] = ecs[eidx, 0], ecs[eidx, 1]

    def model(_, u):
        etas = eta if eta is not None else np.full(len(w), u.decay_inv)
        res = np.zeros(len(w), dtype=np.int64)
        order = np.lexsort((etas, d))  # the golden update takes scalar divisors: group by (D, eta)
        cuts = np.flatnonzero(np.diff(d[order]) | np.diff(etas[order])) + 1
        for sel in np.split(order, cuts):
            new = integer_sgd_update(w[sel], g[sel], int(d[sel[0]]), int(etas[sel[0]]))[0]
            res[sel] = wrap(new, u.weight_width)
        return res
    return v, bench.per_unit(model)


@cocotb_test()
async def appendix_a(dut):
    """Spec 4.1's (W, G, D) rows on every unit, each with the unit's own decay (the rows with
    their own eta: tb_sgd_engine's spec_rows; the model's tests pin the spec's values)."""
    b = UnitBench(dut)
    v, golden = build(b, *SPEC_ROWS[:3])
    await b.check("spec 4.1 rows", v, golden)


def corner_operands(rng, weight_width: int, n: int):
    """(W, G, D): weights and 32-bit gradients at their corners, divisors of the lr schedule."""
    w = corner_ints(rng, weight_width, n, pivots=[3000, 12000])
    g = rng.permutation(corner_ints(rng, 32, n, pivots=SCHEDULE[:8]))
    d = rng.choice(np.array(SCHEDULE + [1, 3, (1 << 32) - 1]), n)
    return w, g, d


@cocotb_test()
async def corners(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(8)
    v, golden = build(b, *corner_operands(rng, 32, 1_000_000))
    await b.check("32-bit W x G corners x schedule divisors", v, golden, seed=9)


def real_operands() -> tuple[np.ndarray, ...]:
    """(W, G, D, eta) of every weight of the vector set's first step: its initial weights, the
    step's weight gradients, each layer's divisor and decay inverse."""
    vs = tensors().vector_set()
    layers = vs.net.spec.param_layers()
    w = [vs.net.params[layer.name].ravel() for layer in layers]
    g = [vs.refs["1"][f"wgrad/{layer.name}"].ravel() for layer in layers]
    d = [np.full(x.size, sgd_divisor(vs.lr_inv, layer.amp)) for x, layer in zip(w, layers, strict=True)]
    eta = [np.full(x.size, layer.decay_inv) for x, layer in zip(w, layers, strict=True)]
    return tuple(np.concatenate(x).astype(np.int64) for x in (w, g, d, eta))


@cocotb_test()
async def real_step(dut):
    b = UnitBench(dut)
    v, golden = build(b, *real_operands()[:3])
    await b.check("real MNIST step (W, G, D), random valid/ready", v, golden, valid_p=0.8,
                  ready_p=0.6)
