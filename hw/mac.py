"""MAC and MAC array for the NITRO-D GEMMs: narrow (activation / loss-gradient) x wide (weight /
delta) operands, two's-complement accumulation wrapping at acc_width bits (spec 1.2, 9.3).

Dataflow: an outer-product array. Each input transfer carries column k of A (rows values) and row k
of B (cols values); every PE(i, j) does acc += A[i,k] * B[k,j] in the same cycle, so all rows*cols
multipliers are busy on every transfer. `first` restarts the accumulators, `last` ends a tile: the
finished C tile (rows x cols) is copied into an output buffer while the next tile already
accumulates, and leaves as `rows` transfers of one C row each.

Pipeline (free-running: no register has a stall enable; why each level exists, for Fmax on ECP5):
    1  input register                     (one load each: placed near the source, it absorbs the
                                           route from it)
    2  fan-out register                   (one copy per row / column, near the multipliers)
    3  per-PE operand registers           (the MULT18X18D input registers: they absorb the operand
                                           fan-out routing; hw.dsp)
    4  product register                   (the MULT18X18D output register)
    5  fabric product register            (the route from the DSP column to the accumulator:
                                           4.5 ns at 8x8, so it gets a level of its own; one
                                           register per DSP when a wide operand is cut into limbs)
   (6) limb sum                           (only with limbs: acc + two limb products in one cycle
                                           would be two carry chains)
    6  accumulator (7 with limbs)         (acc + the product, enabled by `valid`)
    then the tile buffer, drained one row per cycle into a 16-row output skid FIFO (LUT RAM) that
    the consumer reads; first C row valid `latency` cycles (7, or 8 with limbs) after the `last`
    transfer.
Back-pressure without a stall: the accumulators and the buffer hold one tile each. `i.ready` is a
register that admits transfers only while fewer than two tiles are committed (a `last` accepted
and not yet moved into the output FIFO), or while the buffer's last rows will have moved before a
transfer admitted now reaches the accumulators (at most E - 1 rows left, and room in the FIFO for
all of them, so that no consumer stall can hold them back): a finished tile then always finds the buffer free
when the next tile's first product reaches the accumulators, whatever the consumer does. Cost:
when a tile's `last` is accepted while the previous tile still has more than E - 1 rows to drain,
input waits (tiles of K = 9 at 8x8: one tile per 10 cycles on average).
"""
from __future__ import annotations

import operator
from functools import reduce

from amaranth import Const, Module, Mux, ResetSignal, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import registered_mul_terms, splits_operand
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


def _reg(m: Module, v, name: str, reset: bool = False) -> Signal:
    r = Signal(v.shape(), name=name, reset_less=not reset)
    m.d.sync += r.eq(v)
    return r


def _chain(m: Module, v, name: str, n: int, reset: bool = False) -> list:
    """[v, v one cycle later, ..., v n cycles later]"""
    out = [v]
    for k in range(1, n + 1):
        out.append(_reg(m, out[-1], f"{name}{k}", reset))
    return out


def beat_layout(rows: int, cols: int, a_width: int, b_width: int) -> data.StructLayout:
    """A `MacArray`'s input beat: one column of A, one row of B, and the C tile's K-loop flags."""
    return data.StructLayout({
        "a": data.ArrayLayout(signed(a_width), rows),
        "b": data.ArrayLayout(signed(b_width), cols),
        "first": 1, "last": 1,
    })


def row_layout(cols: int, acc_width: int) -> data.ArrayLayout:
    """A `MacArray`'s output: one row of a finished C tile."""
    return data.ArrayLayout(signed(acc_width), cols)


class MacArray(wiring.Component):
    """C = A @ B tiles, wrapped to acc_width bits. A: rows x K, a_width bits; B: K x cols, b_width.

    i.payload {a: ArrayLayout(signed(a_width), rows), b: ArrayLayout(signed(b_width), cols),
               first: 1, last: 1}   (one k per transfer; a tile may be a single transfer)
    o.payload ArrayLayout(signed(acc_width), cols)   (C rows 0..rows-1, in order)
    """

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
        super().__init__({
            "i": In(stream.Signature(beat_layout(rows, cols, a_width, b_width))),
            "o": Out(stream.Signature(row_layout(cols, acc_width))),
        })
        # `last` transfer -> first C row valid: one level more when the wide operand is cut into
        # limbs (their sum gets its own register)
        self.latency = 7 + splits_operand(signed(a_width), signed(b_width))

    def elaborate(self, platform) -> Module:
        m = Module()
        R, C = self.rows, self.cols
        E = self.latency - 2  # the level whose valid enables the accumulators (5, or 6 with limbs)
        p = self.i.payload
        ready = Signal(init=1, name="in_ready")
        fire = Signal()
        m.d.comb += [self.i.ready.eq(ready), fire.eq(self.i.valid & ready)]

        # Levels 1 and 2: input registers, twice (the operands come from across the die). The
        # valid chain has a reset: a bubble must not look like a transfer.
        # v[k] / f[k]: valid / first of the transfer whose values are at level k.
        v, f = _chain(m, fire, "v", E - 1, True), _chain(m, p.first, "f", E - 1)
        # The control logic gets its own "valid last" chain, so that v / f (rows*cols*acc_width
        # enables and selects) do not pull the small control cluster across the array.
        lv = _chain(m, fire & p.last, "lv", E, True)
        a1 = [_reg(m, _reg(m, p.a[i], f"a0_{i}"), f"a1_{i}") for i in range(R)]
        b1 = [_reg(m, _reg(m, p.b[j], f"b0_{j}"), f"b1_{j}") for j in range(C)]

        accs = self._pes(m, platform, v, f, lv, a1, b1, E)
        copy_ctls, buf_nexts, moved, fill = self._tile_buffer(m, platform, accs, lv, E)
        self._credits(m, fire, p, ready, copy_ctls, buf_nexts, moved, fill, E)
        return m

    def _pes(self, m: Module, platform, v, f, lv, a1, b1, E: int) -> list[list[Signal]]:
        """Levels 3 to E + 1: each PE's product and accumulator; returns the accumulators."""
        R, C, W = self.rows, self.cols, self.acc_width
        # The accumulators' enable, one copy per PE next to its acc_width flip-flops (one register
        # for all rows*cols*acc_width of them would be a die-wide enable net); each copy resets
        # like the valid chain.
        en = replicated_reg(m, platform, v[E - 1] & ~ResetSignal(allow_reset_less=True), R * C, "acc_en")
        accs = [[None] * C for _ in range(R)]
        for i in range(R):
            for j in range(C):
                # One `first` register per PE, next to its accumulator (a shared one, even one per
                # row, would select across many PEs' accumulators). Equal D inputs would be merged back
                # by yosys, so PE q's copy differs in a don't-care: in a bubble (the accumulators
                # keep their value) it takes truth table q of (f, lv, v one level earlier): one
                # LUT4, 256 distinct copies (arrays up to 16 x 16; beyond, copies repeat).
                q = (i * C + j) % 256
                first = Signal(name=f"first_{i}_{j}", reset_less=True)
                m.d.sync += first.eq(Mux(v[E - 1], f[E - 1],
                                         _truth_table(q, [f[E - 1], lv[E - 1], v[E - 2]])))
                terms, _ = registered_mul_terms(m, platform, a1[i], b1[j], f"pe{i}_{j}")  # 3, 4
                prod = [_reg(m, t, f"p_{i}_{j}_{k}") << off for k, (t, off) in enumerate(terms)]  # 5
                if len(prod) > 1:  # level 6: the limb sum (one carry chain per level)
                    psum = Signal(signed(W), name=f"psum_{i}_{j}", reset_less=True)
                    m.d.sync += psum.eq(sum(prod))  # wraps or sign-extends to acc_width
                    prod = [psum]
                acc = Signal(signed(W), name=f"acc_{i}_{j}", reset_less=True)
                with m.If(en[i * C + j]):
                    m.d.sync += acc.eq((prod[0] + Mux(first, 0, acc))[:W])
                accs[i][j] = acc
        return accs

    def _tile_buffer(self, m: Module, platform, accs, lv, E: int):
        """The finished tile's buffer and its drain into the output FIFO, decided per PE row;
        returns row 0's copy and buffer-next decisions, its moved-row count and the FIFO fill."""
        R, C, W = self.rows, self.cols, self.acc_width
        # Tile buffer: loaded from the accumulators, then shifted up one C row per cycle into the
        # output skid FIFO (hw.stream_unit.skid_output) while the FIFO has room. Every buffer
        # enable is a register; o.ready only steers the FIFO, never every buffer bit.
        # `copy` (accumulators -> buffer) and `move` (buffer row 0 -> FIFO) are computed one cycle
        # ahead from next-state values and registered once per PE for that PE's acc_width buffer
        # bits (hw.fanout). The small state machine deciding them is itself replicated per PE
        # row: each row's copy decides for its own `cols` PEs (one decision would reach across
        # the whole array).
        # The copies see the same inputs and so step identically; row 0's drives the FIFO and the
        # credits.
        buf = [[Signal(signed(W), name=f"buf_{i}_{j}", reset_less=True) for j in range(C)]
               for i in range(R)]
        move_ctl = [Signal(name=f"move_ctl_{g}") for g in range(R)]
        move_next = [Signal(name=f"move_next_{g}") for g in range(R)]
        row0 = Signal(data.ArrayLayout(signed(W), C))
        m.d.comb += [row0[j].eq(buf[0][j]) for j in range(C)]
        # o.valid is a register: the consumer's logic starts at a flip-flop
        fill, push, pop = skid_output(m, move_ctl[0], Value.cast(row0), self.o, OUT_FIFO, banks=C,
                                      pipe_valid_next=move_next[0])
        # Room for one more `move`, as a register of the fill alone, so that no adder lies
        # between o.ready and the move decision: a fill of at most cap - 3 leaves room for a move
        # at each of the next two edges and the one decided this cycle. The bound ignores this
        # cycle's pop and whether a move is in flight (conservative: the FIFO holds one row less).
        # Written as matches, not a compare: no carry chain.
        room = Signal(init=1, name="fifo_room")
        m.d.sync += room.eq(~fill.matches(*range(OUT_FIFO - 2, OUT_FIFO + 1)))

        copy_ctls, buf_nexts = [], []
        for g in range(R):
            cap = Signal(name=f"acc_done_{g}")      # the accumulators hold a finished tile
            buf_full = Signal(name=f"buf_full_{g}")  # the buffer holds rows not yet in the FIFO
            copy_ctl = Signal(name=f"copy_ctl_{g}")
            row = Signal(range(max(R, 2)), name=f"drain_row_{g}")
            last_row = Signal(name=f"drain_last_row_{g}")  # row == R - 1 (fewer LUT inputs)
            cap_next, buf_next = Signal(name=f"cap_next_{g}"), Signal(name=f"buf_next_{g}")
            copy_next = Signal(name=f"copy_next_{g}")
            m.d.comb += cap_next.eq(lv[E] | (cap & ~copy_ctl))
            with m.If(copy_ctl):
                m.d.comb += buf_next.eq(1)
                m.d.sync += [row.eq(0), last_row.eq(R == 1)]
            with m.Elif(move_ctl[g]):
                m.d.sync += [row.eq(row + 1), last_row.eq(row == R - 2)]
                m.d.comb += buf_next.eq(~last_row)
            with m.Else():
                m.d.comb += buf_next.eq(buf_full)
            m.d.comb += [copy_next.eq(cap_next & ~buf_next),
                         move_next[g].eq(buf_next & room)]  # (copy_next implies ~buf_next)
            m.d.sync += [cap.eq(cap_next), buf_full.eq(buf_next),
                         copy_ctl.eq(copy_next), move_ctl[g].eq(move_next[g])]
            copy_pe = replicated_reg(m, platform, copy_next, C, f"copy{g}")
            move_pe = replicated_reg(m, platform, move_next[g], C, f"move{g}")
            for j in range(C):
                with m.If(copy_pe[j]):
                    m.d.sync += buf[g][j].eq(accs[g][j])
                with m.Elif(move_pe[j]):
                    if g < R - 1:  # the last row is refilled only by `copy`
                        m.d.sync += buf[g][j].eq(buf[g + 1][j])
            copy_ctls.append(copy_ctl)
            buf_nexts.append(buf_next)
            if g == 0:
                moved = row  # row 0's rows moved since its copy
        return copy_ctls, buf_nexts, moved, fill

    def _credits(self, m: Module, fire, p, ready, copy_ctls, buf_nexts, moved, fill, E: int) -> None:
        """`ready`: the transfers admitted against the tiles in flight."""
        R = self.rows
        # Credits (from row 0's copy): tiles whose `last` was accepted and that are not yet in the
        # buffer, plus the buffered tile; admit transfers while fewer than two, or with one
        # waiting in the accumulators when the buffer will be free before a transfer admitted
        # now reaches them (E cycles): at most E - 1 rows left to move, and FIFO room for all
        # of them whatever the consumer does (so tiles of K < rows + E follow each other).
        pending = Signal(range(3), name="tiles_pending")
        pending_next = Signal.like(pending)
        early = Signal(name="early_admit")
        if OUT_FIFO - 3 - R >= 0:  # (an array of more than 13 rows never admits early)
            # with R < E every buffered row leaves in time; a power-of-two R's row count wraps
            # to 0 on the last move, another one's still holds R in the cycle of the copy
            terms = ([moved >= R - E + 1] if R > E - 1 else []) + [fill <= OUT_FIFO - 3 - R]
            if R & (R - 1):
                terms.append(~copy_ctls[0])
            m.d.comb += early.eq(reduce(operator.and_, terms))
        # both outcomes of this cycle's `last` are formed ahead and chosen by it: the transfer's
        # handshake arrives from across the die, late in the cycle
        def admit(pn):
            return ((pn + buf_nexts[0]) < 2) | ((pn == 1) & buf_nexts[0] & early)

        ends = fire & p.last
        kept, ended = ((pending + k - copy_ctls[0])[:len(pending)] for k in (0, 1))
        m.d.comb += pending_next.eq(Mux(ends, ended, kept))
        m.d.sync += [pending.eq(pending_next), ready.eq(Mux(ends, admit(ended), admit(kept)))]


class Mac(MacArray):
    """A single MAC: the 1 x 1 array (dot products of length K, one C value per `last`)."""

    def __init__(self, a_width: int = 8, b_width: int = 16, acc_width: int = 32) -> None:
        super().__init__(1, 1, a_width, b_width, acc_width)
