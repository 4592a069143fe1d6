"""MaxPool 2x2 window forward: first-maximum rule on tie-heavy random windows and real maps."""
import numpy as np

from model.layers import maxpool_forward
from sim.tb.common import UnitBench, cocotb_test, tensors


def golden(win):
    out, arg = maxpool_forward(win.reshape(-1, 1, 2, 2), (2, 2), (0, 0))
    return {"max": out.ravel(), "arg": arg.ravel()}


def windows(fmap: np.ndarray) -> np.ndarray:
    """Non-overlapping 2x2 windows of (B, C, H, W) maps in row-major window order (layout only)."""
    b, c, h, w = fmap.shape
    x = fmap[:, :, : h // 2 * 2, : w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2)
    return x.transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4)


@cocotb_test()
async def appendix_a(dut):
    """Spec Appendix A's tied window: the first maximum wins (the model's tests pin it)."""
    b = UnitBench(dut)
    await b.check("spec Appendix A tied window", np.array([[5, 5, 5, 2]]), golden)


@cocotb_test()
async def random_ties(dut):
    b = UnitBench(dut)
    rng = np.random.default_rng(10)
    n = 1 << 20
    narrow = rng.integers(-2, 2, (n // 2, 4))  # 4 values from 4 levels: ties everywhere
    wide = rng.choice(np.array([-128, -127, -1, 0, 1, 126, 127]), (n // 4, 4))
    full = rng.integers(-128, 128, (n - n // 2 - n // 4, 4))
    win = np.concatenate([narrow, wide, full]).astype(np.int64)
    await b.check("random int8 windows (tie-heavy)", win, golden)


@cocotb_test()
async def real_maps(dut):
    b = UnitBench(dut)
    r = tensors().load("step1", "cnn")
    win = np.concatenate([windows(r["fwd/non_linearity_00"]), windows(r["fwd/non_linearity_02"])])
    await b.check("real MNIST feature maps, random valid/ready", win.astype(np.int64), golden,
                  valid_p=0.6, ready_p=0.6)
