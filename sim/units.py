# amaranth: UnusedElaboratable=no
"""The simulated designs: unit (or lock-step bank of units) per Verilator build, and its depth.

Banks put every parameter value of interest into one build: all NITRO-ReLU slopes, the scaling
factors of the paper's layers, the IntegerSGD decay settings. `depth` = stimulus words per chunk.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth.lib import wiring

from hw.divider import ConstDivider, ProgDivider
from hw.dma import DmaLoopback
from hw.engine.control import ControlRegisters
from hw.engine.array import mac_array
from hw.engine.params import EngineParams
from hw.engine.top import StreamEngine
from hw.lossgrad import LossGradient
from hw.mac import Mac, MacArray
from hw.maxpool import MaxPoolBackward, MaxPoolForward
from hw.relu import NitroReluBackward, NitroReluForward
from hw.scaling import NitroScaling, ScaleClip
from hw.sgd import IntegerSGDUpdate
from model.layers import RELU_MEAN_CORRECTION
from model.optim import LR_INV, ScheduleConfig, sgd_divisor
from model.spec import Hyper, scaling_factor

from .bank import Bank

SLOPES = sorted(RELU_MEAN_CORRECTION)
# SF = 256 * fan-in of every layer of the paper's networks (spec 2.3, 7.3-7.5), plus extremes.
# Simulation cost grows with the bank, so the banks hold a representative subset; the z3 proof
# (sim/formal.py) covers the constants of every layer's SF, and scripts/exhaustive_divider.py
# runs all 2^32 inputs through the SF = 200704 netlist.
FAN_INS = [784, 100, 50, 3000, 9, 4096]
SCALING_FACTORS = [scaling_factor(f) for f in FAN_INS]
# IntegerSGD's divisors D = lr_inv * amp over a long schedule: 11 plateau reductions of the initial
# lr_inv, amp 1 (the learning layers) and the forward layers' amplification.
SGD_DIVISORS = [sgd_divisor(LR_INV * ScheduleConfig.factor ** k, amp)
                for k in range(12) for amp in (1, Hyper.lr_amp)]
# Constant dividers at 32 bits: decay inverses, small and awkward divisors, beyond the input range.
DIVISORS_32 = [3, 7, 641, 12000, 200704, (1 << 31) - 1, (1 << 32) + 1]  # 200704: rtl's const_divider
DIVISORS_16 = [2, 3, 5, 7, 127, 256, 12345, 32767]
SCALING_16 = [9, 100, 258]
DECAYS = [0, 3000, 12000]


SHAPES_TB = "sim.tb.tb_mac_shapes"


@dataclass(frozen=True)
class SimUnit:
    factory: Callable[[], wiring.Component]
    depth: int = 1 << 20
    ecp5: bool = False  # elaborated for synthesis: hw.dsp's MULT18X18D on sim.ecp5_models' model
    tb: str = ""  # its cocotb module, when not sim.tb.tb_<name>


SIM_UNITS: dict[str, SimUnit] = {
    "divider32": SimUnit(lambda: Bank([ConstDivider(d, 32) for d in DIVISORS_32])),
    "div_scale16": SimUnit(lambda: Bank(
        [ConstDivider(d, 16) for d in DIVISORS_16] + [NitroScaling(f, 16) for f in SCALING_16])),
    "progdiv": SimUnit(lambda: ProgDivider(32)),
    "scaling": SimUnit(lambda: Bank([NitroScaling(f) for f in SCALING_FACTORS])),
    "scale_clip": SimUnit(lambda: ScaleClip(32, EngineParams.max_scale)),  # the engine's
    "relu_fwd": SimUnit(lambda: Bank([NitroReluForward(a) for a in SLOPES])),
    "relu_bwd": SimUnit(lambda: Bank([NitroReluBackward(a) for a in SLOPES])),
    "lossgrad": SimUnit(lambda: Bank([LossGradient(True), LossGradient(False)])),
    "maxpool_fwd": SimUnit(lambda: MaxPoolForward(4, 8)),
    "maxpool_bwd": SimUnit(lambda: MaxPoolBackward(4, 32)),
    "sgd": SimUnit(lambda: Bank([IntegerSGDUpdate(decay_inv=e) for e in DECAYS])),
    "sgd_engine": SimUnit(lambda: IntegerSGDUpdate(16, 32, decay_inv=None)),
    "mac": SimUnit(lambda: Mac(8, 16, 32)),
    "mac4x4_w32": SimUnit(lambda: MacArray(4, 4, 8, 32, 32), depth=1 << 18),
    "mac8x8": SimUnit(lambda: mac_array(EngineParams()), depth=1 << 17),  # the engine's
    "mac8x8_ecp5": SimUnit(lambda: mac_array(EngineParams()), depth=1 << 16, ecp5=True),
    "mac6x6": SimUnit(lambda: MacArray(6, 6, 8, 16, 32), depth=1 << 16, tb=SHAPES_TB),
    "mac4x4": SimUnit(lambda: MacArray(4, 4, 8, 16, 32), depth=1 << 16, tb=SHAPES_TB),  # rtl's
    "mac8x8_b16": SimUnit(lambda: MacArray(8, 8, 8, 16, 32), depth=1 << 16, tb=SHAPES_TB),  # rtl's
}

@dataclass(frozen=True)
class SimTop:
    """A component driven by its cocotb module directly, or, with `harness` files, inside a
    Verilog harness that runs the clock (long runs: no Python per cycle)."""
    factory: Callable[[], wiring.Component]
    harness: tuple[Path, ...] = ()


HERE = Path(__file__).parent
# The AXI ports against cocotbext-axi's models (sim/tb/tb_dma.py, sim/tb/tb_regs.py, the whole
# streaming engine in sim/tb/tb_engine_axi.py), and the DMA on the Verilated memory model
# (sim/tb/tb_dma_mem.py).
SIM_TOPS: dict[str, SimTop] = {
    "dma64": SimTop(lambda: DmaLoopback(32, 64, max_burst=16, max_outstanding=4)),
    "dma128": SimTop(lambda: DmaLoopback(32, 128, max_burst=64, max_outstanding=2)),
    "control_regs": SimTop(ControlRegisters),
    "dma64_mem": SimTop(lambda: DmaLoopback(32, 64, max_burst=16, max_outstanding=4),
                        (HERE / "axi_mem.sv", HERE / "dma_tb.sv")),
    "engine_axi": SimTop(StreamEngine),
}
