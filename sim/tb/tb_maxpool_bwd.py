"""MaxPool 2x2 window backward: delta routed to the first maximum, zeros elsewhere."""
import numpy as np

from model.layers import maxpool_backward, maxpool_forward
from sim.tb.common import UnitBench, cocotb_test, corner_ints, tensors


def golden(v):
    n = len(v["delta"])
    routed = maxpool_backward(v["delta"].reshape(n, 1, 1, 1), v["arg"].reshape(n, 1, 1, 1),
                              (n, 1, 2, 2), (2, 2), (0, 0))
    return routed.reshape(n, 4)


@cocotb_test()
async def corners(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(12)
    d = corner_ints(rng, 32, 1 << 18)
    # each delta with each of the 4 args (corner_ints puts its fixed corners first, in a run)
    d, arg = np.repeat(d, 4), np.tile(np.arange(4), len(d))
    await b.check("corner deltas x every arg", {"delta": d, "arg": arg}, golden)


@cocotb_test()
async def real_deltas(dut):
    b = UnitBench(dut)
    r = tensors().load("step1", "cnn")
    _, arg = maxpool_forward(r["fwd/non_linearity_00"], (2, 2), (0, 0))
    v = {"delta": r["bwd_in/pooling_pred_00"].ravel().astype(np.int64),
         "arg": arg.ravel().astype(np.int64)}
    await b.check("real MNIST pool deltas, random valid/ready", v, golden, valid_p=0.5,
                  ready_p=0.5)
