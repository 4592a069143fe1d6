"""NITRO-ReLU backward, all slope inverses: every int8 s x corner deltas, real MNIST deltas."""
import numpy as np

from model.layers import nitro_relu_backward
from sim.tb.common import ALL_INT8, MLP_STEPS, UnitBench, cocotb_test, corner_ints, tensors
from sim.units import SLOPES

def model(v, u):
    return nitro_relu_backward(v["delta"], v["s"], u.slope_inv)


@cocotb_test()
async def appendix_a(dut):
    """Spec Appendix A's rows (delta = -7, 9, -2^31; the model's tests pin the spec's values)."""
    b = UnitBench(dut)
    s = np.array([-127, -5, -4, -3, -1, 0, 1, 126, 127] * 3, dtype=np.int64)
    d = np.repeat(np.array([-7, 9, -(1 << 31)], dtype=np.int64), 9)
    await b.check("spec Appendix A rows", {"delta": d, "s": s}, b.per_unit(model))


@cocotb_test()
async def exhaustive_s_corner_delta(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(2)
    deltas = corner_ints(rng, 32, 4096, pivots=SLOPES)
    s, d = np.meshgrid(ALL_INT8, deltas)
    await b.check("all int8 s x 4096 corner deltas", {"delta": d.ravel(), "s": s.ravel()}, b.per_unit(model))


@cocotb_test()
async def backpressure_and_real(dut):
    b = UnitBench(dut)
    v = {"delta": [], "s": []}
    for part, which in MLP_STEPS:
        r = tensors().load(part, which)
        for layer in ("00", "01"):
            v["delta"].append(r[f"bwd_in/non_linearity_{layer}"].ravel())
            v["s"].append(r[f"fwd/scaling_{layer}"].ravel())
    v = {k: np.concatenate(x).astype(np.int64) for k, x in v.items()}
    await b.check("real MNIST deltas, random valid/ready", v, b.per_unit(model), valid_p=0.7, ready_p=0.5)
