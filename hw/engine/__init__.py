"""NITRO-D training engine: GEMM sequencer, MAC array, on-chip memories and output pipelines."""
from .core import Engine
from .params import EngineParams

__all__ = ["Engine", "EngineParams"]
