"""The engine's MAC array and the streams on either side of it (the operand issue's beats, the
drain's rows), all from one shape."""
from __future__ import annotations

from amaranth.lib import stream

from hw.mac import MacArray, beat_layout, row_layout

from .params import EngineParams


def _shape(p: EngineParams) -> tuple[int, int, int, int, int]:
    """rows, cols, the A width (activations), the B width (deltas, the widest B operand; weights
    are sign-extended to it) and the accumulator's."""
    return p.rows, p.cols, p.act_bits, p.delta_bits, p.acc_bits


def mac_array(p: EngineParams) -> MacArray:
    """The engine's MAC array: activations times weights or deltas (the wider operand, cut into
    limbs for the DSPs), wrapping at acc_bits."""
    return MacArray(*_shape(p))


def beat_signature(p: EngineParams) -> stream.Signature:
    """The array's input: `hw.mac.beat_layout` of the engine's shape."""
    rows, cols, a_width, b_width, _ = _shape(p)
    return stream.Signature(beat_layout(rows, cols, a_width, b_width))


def row_signature(p: EngineParams) -> stream.Signature:
    """The array's output: `hw.mac.row_layout` of the engine's shape."""
    _, cols, _, _, acc_width = _shape(p)
    return stream.Signature(row_layout(cols, acc_width))
