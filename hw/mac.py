"""MAC and MAC array for the NITRO-D GEMMs: narrow (activation / loss-gradient) x wide (weight /
delta) operands, two's-complement accumulation wrapping at acc_width bits (spec 1.2, 9.3).

Dataflow: an outer-product array. Each input transfer carries column k of A (rows values) and row k
of B (cols values); every PE(i, j) does acc += A[i,k] * B[k,j] in the same cycle, so all rows*cols
multipliers are busy on every transfer. `first` restarts the accumulators, `last` ends a tile: the
finished C tile (rows x cols) is copied into an output buffer while the next tile already
accumulates, and leaves as `rows` transfers of one C row each.

Pipeline (free-running: no register has a stall enable; why each level exists, for Fmax on ECP5):
    1  input register                     (top-level I/O timing; one copy per row / column)
    2  per-PE operand registers           (the MULT18X18D input registers: they absorb the operand
                                           fan-out routing; hw.dsp)
    3  product register                   (the MULT18X18D output register)
    4  fabric product register            (the route from the DSP column to the accumulator:
                                           4.5 ns at 8x8, so it gets a level of its own; one
                                           register per DSP when a wide operand is cut into limbs)
    5  accumulator                        (acc + the product, or + each limb product: a carry
                                           chain per limb, enabled by `valid`; the limb sum
                                           between the DSPs and level 4 spent the cycle on the
                                           route out of the DSP column in the engine)
    then the tile buffer, drained one row per cycle into a 16-row output skid FIFO (LUT RAM) that
    the consumer reads; first C row valid 6 cycles after the `last` transfer.
Back-pressure without a stall: the accumulators and the buffer hold one tile each. `i.ready` is a
register that admits transfers only while fewer than two tiles are committed (a `last` accepted and
not yet moved into the output FIFO): a finished tile then always finds the buffer free when the next tile's first
product reaches the accumulators, whatever the consumer does. Cost: when a tile's `last` is accepted
while the previous tile is still draining, input waits until that drain ends (a few cycles per tile
only when tiles are shorter than the drain plus the pipe).
"""
from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import registered_mul_terms
from .fanout import replicated_reg
from .stream_unit import check_int, skid_output

OUT_FIFO = 16  # C rows the output skid FIFO holds (one ECP5 LUT RAM deep)


def _truth_table(q: int, inputs: list[Value]) -> Value:
    """The boolean function of `inputs` whose truth table is the integer q (bit k: output for
    the input combination k, inputs[0] the least significant)."""
    if not inputs:
        return Const(q & 1, 1)
    n = len(inputs) - 1
    lo, hi = q & ((1 << (1 << n)) - 1), q >> (1 << n)
    return Mux(inputs[-1], _truth_table(hi, inputs[:-1]), _truth_table(lo, inputs[:-1]))


class MacArray(wiring.Component):
    """C = A @ B tiles, wrapped to acc_width bits. A: rows x K, a_width bits; B: K x cols, b_width.

    i.payload {a: ArrayLayout(signed(a_width), rows), b: ArrayLayout(signed(b_width), cols),
               first: 1, last: 1}   (one k per transfer; a tile may be a single transfer)
    o.payload ArrayLayout(signed(acc_width), cols)   (C rows 0..rows-1, in order)
    """

    latency = 6  # `last` transfer -> first C row valid

    def __init__(self, rows: int = 8, cols: int = 8, a_width: int = 8, b_width: int = 16,
                 acc_width: int = 32) -> None:
        self.rows = check_int("rows", rows, 1, 64)
        self.cols = check_int("cols", cols, 1, 64)
        self.a_width = check_int("a_width", a_width, 2, 32)
        self.b_width = check_int("b_width", b_width, 2, 64)
        self.acc_width = check_int("acc_width", acc_width, 2, 64)
        if acc_width < a_width + b_width - 1 and acc_width < 32:
            # A narrower accumulator than one product is legal only as the reference's int32 wrap.
            raise ValueError(
                f"acc_width {acc_width} is narrower than one {a_width}x{b_width}-bit product "
                f"({a_width + b_width - 1} bits); use >= 32 (wrapping, as the reference) or wider"
            )
        in_layout = data.StructLayout({
            "a": data.ArrayLayout(signed(a_width), rows),
            "b": data.ArrayLayout(signed(b_width), cols),
            "first": 1, "last": 1,
        })
        super().__init__({
            "i": In(stream.Signature(in_layout)),
            "o": Out(stream.Signature(data.ArrayLayout(signed(acc_width), cols))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        R, C, W = self.rows, self.cols, self.acc_width
        p = self.i.payload
        ready = Signal(init=1, name="in_ready")
        fire = Signal()
        m.d.comb += [self.i.ready.eq(ready), fire.eq(self.i.valid & ready)]

        def reg(v, name, reset=False):
            r = Signal(v.shape(), name=name, reset_less=not reset)
            m.d.sync += r.eq(v)
            return r

        # Level 1: input registers. The valid chain has a reset: a bubble must not look like a transfer.
        v1, f1 = reg(fire, "v1", True), reg(p.first, "f1")
        a1 = [reg(p.a[i], f"a1_{i}") for i in range(R)]
        b1 = [reg(p.b[j], f"b1_{j}") for j in range(C)]
        v2, f2 = reg(v1, "v2", True), reg(f1, "f2")
        v3, f3 = reg(v2, "v3", True), reg(f2, "f3")
        v4 = reg(v3, "v4", True)
        # The control logic gets its own "valid last" chain, so that v3 / f3 (rows*cols*acc_width
        # enables and selects) do not pull the small control cluster across the array.
        lv1 = reg(fire & p.last, "lv1", True)
        lv2 = reg(lv1, "lv2", True)
        lv3 = reg(lv2, "lv3", True)
        lv4 = reg(lv3, "lv4", True)

        accs = [[None] * C for _ in range(R)]
        for i in range(R):
            for j in range(C):
                # One `first` register per PE, next to its accumulator (one f4 for all
                # rows*cols*acc_width accumulator bits was the critical path at 8x8; one per row
                # still spent ~3 ns routing to the row's PEs). Equal D inputs would be merged back
                # by yosys, so PE q's copy differs in a don't-care: when v3 is low (a bubble: the
                # accumulators keep their value) it takes truth table q of (f3, lv3, v2): one LUT4
                # with v3, 256 distinct copies (arrays up to 16 x 16; beyond, copies repeat).
                q = (i * C + j) % 256
                f4 = Signal(name=f"f4_{i}_{j}", reset_less=True)
                m.d.sync += f4.eq(Mux(v3, f3, _truth_table(q, [f3, lv3, v2])))
                terms, _ = registered_mul_terms(m, platform, a1[i], b1[j], f"pe{i}_{j}")  # 2, 3
                prod = [reg(t, f"p_{i}_{j}_{k}") << off for k, (t, off) in enumerate(terms)]  # 4
                acc = Signal(signed(W), name=f"acc_{i}_{j}", reset_less=True)        # level 5
                with m.If(v4):
                    m.d.sync += acc.eq(sum(prod, Mux(f4, 0, acc))[:W])
                accs[i][j] = acc

        # Tile buffer: loaded from the accumulators, then shifted up one C row per cycle into the
        # output skid FIFO (hw.stream_unit.skid_output) while the FIFO has room. Every buffer
        # enable is a register; o.ready only steers the FIFO (a rows:1 read mux or a shift on
        # o.ready fanned out to all rows*cols*acc_width buffer bits gave 131 MHz at 8x8).
        # `copy` (accumulators -> buffer) and `move` (buffer row 0 -> FIFO) are computed one cycle
        # ahead from next-state values and registered: once for the control logic and once per
        # PE for that PE's acc_width buffer bits (hw.fanout; one register for all of them, 2048
        # loads at 8x8, was the standalone array's critical path: 6.4 ns, 5.6 of it routing).
        cap = Signal(name="acc_done")     # the accumulators hold a finished tile
        buf_full = Signal(name="buf_full")  # the buffer holds rows not yet moved to the FIFO
        copy_ctl, move_ctl = Signal(name="copy_ctl"), Signal(name="move_ctl")
        buf = [[Signal(signed(W), name=f"buf_{i}_{j}", reset_less=True) for j in range(C)]
               for i in range(R)]
        cap_next, buf_next = Signal(), Signal()
        copy_next, move_next = Signal(), Signal()
        copy_pe = replicated_reg(m, platform, copy_next, R * C, "copy")
        move_pe = replicated_reg(m, platform, move_next, R * C, "move")
        for i in range(R):
            for j in range(C):
                with m.If(copy_pe[i * C + j]):
                    m.d.sync += buf[i][j].eq(accs[i][j])
                with m.Elif(move_pe[i * C + j]):
                    if i < R - 1:  # the last row is refilled only by `copy`
                        m.d.sync += buf[i][j].eq(buf[i + 1][j])

        row0 = Signal(data.ArrayLayout(signed(W), C))
        m.d.comb += [row0[j].eq(buf[0][j]) for j in range(C)]
        fill, push, pop = skid_output(m, move_ctl, Value.cast(row0), self.o, OUT_FIFO, banks=C)
        # Room for one more `move`, as a register of the fill alone (the fill adder between
        # o.ready and the move decision was the 8x8 critical path; move_ctl in front of it, the
        # engine's, 8.1 ns of route): a fill of at most cap - 3 leaves room for a move at each
        # of the next two edges and the one decided this cycle. The bound ignores this cycle's
        # pop and whether a move is in flight (conservative: the FIFO holds one row less).
        # (written as matches: an adder and a compare were two carry chains, the 1x1 critical path)
        room = Signal(init=1, name="fifo_room")
        m.d.sync += room.eq(~fill.matches(*range(OUT_FIFO - 2, OUT_FIFO + 1)))

        row = Signal(range(max(R, 2)), name="drain_row")
        last_row = Signal(name="drain_last_row")  # row == R - 1, as a register (fewer LUT inputs)
        m.d.comb += cap_next.eq(lv4 | (cap & ~copy_ctl))
        with m.If(copy_ctl):
            m.d.comb += buf_next.eq(1)
            m.d.sync += [row.eq(0), last_row.eq(R == 1)]
        with m.Elif(move_ctl):
            m.d.sync += [row.eq(row + 1), last_row.eq(row == R - 2)]
            m.d.comb += buf_next.eq(~last_row)
        with m.Else():
            m.d.comb += buf_next.eq(buf_full)
        m.d.comb += [copy_next.eq(cap_next & ~buf_next),
                     move_next.eq(buf_next & room)]  # (copy_next implies ~buf_next)
        m.d.sync += [cap.eq(cap_next), buf_full.eq(buf_next),
                     copy_ctl.eq(copy_next), move_ctl.eq(move_next)]

        # Credits: tiles whose `last` was accepted and that are not yet in the buffer, plus the
        # buffered tile; admit transfers while fewer than two.
        pending = Signal(range(3), name="tiles_pending")
        pending_next = Signal.like(pending)
        m.d.comb += pending_next.eq(pending + (fire & p.last) - copy_ctl)
        m.d.sync += [pending.eq(pending_next), ready.eq((pending_next + buf_next) < 2)]
        return m


class Mac(MacArray):
    """A single MAC: the 1 x 1 array (dot products of length K, one C value per `last`)."""

    def __init__(self, a_width: int = 8, b_width: int = 16, acc_width: int = 32) -> None:
        super().__init__(1, 1, a_width, b_width, acc_width)
