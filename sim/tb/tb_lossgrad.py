"""Loss gradient (wrapping and exact variants): every int8 pair, random, real network outputs."""
import numpy as np

from model.layers import loss_gradient
from sim.tb.common import ALL_INT8, UnitBench, cocotb_test, tensors

def model(v, u):
    return loss_gradient(v["y_hat"], v["y"], u.wrap_int8)


@cocotb_test()
async def appendix_a(dut):
    """Spec Appendix A's rows, the first wrapping (the model's tests pin the spec's values)."""
    b = UnitBench(dut)
    v = {"y_hat": np.array([-100, -127, 127, -96]), "y": np.array([32, 0, 32, 0])}
    await b.check("spec Appendix A rows", v, b.per_unit(model))


@cocotb_test()
async def exhaustive(dut):
    b = UnitBench(dut)
    yh, y = np.meshgrid(ALL_INT8, ALL_INT8)
    v = {"y_hat": yh.ravel(), "y": y.ravel()}
    await b.check("all int8 pairs", v, b.per_unit(model))
    v16 = {k: np.tile(x, 16) for k, x in v.items()}
    await b.check("all int8 pairs x16, random valid/ready", v16, b.per_unit(model), valid_p=0.5, ready_p=0.5)


@cocotb_test()
async def real_outputs(dut):
    b = UnitBench(dut)
    yh, y = [], []
    for part in ("step1", "step2", "step3"):
        r = tensors().load(part)
        for k in ("out", "fwd/scaling_pred_00", "fwd/scaling_pred_01"):
            yh.append(r[k].ravel())
            y.append(r["y_onehot"].ravel())
    v = {"y_hat": np.concatenate(yh).astype(np.int64), "y": np.concatenate(y).astype(np.int64)}
    await b.check("real network outputs vs one-hot*32", v, b.per_unit(model))
