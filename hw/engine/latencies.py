"""The output pipes' depths, from the engine's parameters alone."""
from __future__ import annotations

from dataclasses import dataclass

from hw.relu import NitroReluBackward, NitroReluForward
from hw.scaling import ScaleClip
from hw.sgd import IntegerSGDUpdate

from .params import EngineParams


@dataclass(frozen=True)
class PipeLatencies:
    """The output pipes' depths from the engine's parameters alone (the command flush and the
    performance model need them without building the pipes; the units compute their own
    latencies from the same functions)."""

    clip: int  # z -> s: hw.scaling.ScaleClip
    out: int  # s -> a, e: NITRO-ReLU, then a register (the op select and the lane copies into
    #           two memories' write selects get a cycle of their own: a long route)
    sgd: int  # IntegerSGD
    relu_bwd: int  # one NITRO-ReLU backward unit

    @classmethod
    def of(cls, p: EngineParams) -> PipeLatencies:
        return cls(clip=ScaleClip.latency_for(),
                   out=NitroReluForward.latency_for(p.slope_inv) + 1,
                   sgd=IntegerSGDUpdate.latency_for(p.acc_bits, p.max_divisor),
                   relu_bwd=NitroReluBackward.latency_for(p.slope_inv, p.acc_bits))

    @property
    def scale(self) -> int:
        return self.clip + self.out

    @property
    def deepest(self) -> int:
        """Behind the partial-sum register (both serial pipes start one register after it)."""
        return max(self.scale + 1, self.sgd + 1, self.relu_bwd)
