"""MAC and MAC array for the NITRO-D GEMMs: narrow (activation / loss-gradient) x wide (weight /
delta) operands, two's-complement accumulation wrapping at acc_width bits (spec 1.2, 9.3).

Dataflow: an outer-product array. Each input transfer carries column k of A (rows values) and row k
of B (cols values); every PE(i, j) does acc += A[i,k] * B[k,j] in the same cycle, so all rows*cols
multipliers are busy on every transfer. `first` restarts the accumulators, `last` ends a tile: the
finished C tile (rows x cols) is copied into an output buffer while the next tile already
accumulates, and leaves as `rows` transfers of one C row each.

Pipeline (why each level exists, for Fmax on ECP5):
    1  input register                     (top-level I/O timing)
    2  per-PE operand registers           (breaks the operand fan-out routing before the DSP)
    3  product register                   (the MULT18X18D output, no carry chain behind it)
    4  accumulator                        (one acc_width-bit carry chain)
    then the tile buffer; first C row valid 5 cycles after the `last` transfer.
Back-pressure: the array stalls only when a finished tile meets a still-draining buffer; the stall
is a function of two registers, not of the output handshake.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .stream_unit import Stages, check_int


class MacArray(wiring.Component):
    """C = A @ B tiles, wrapped to acc_width bits. A: rows x K, a_width bits; B: K x cols, b_width.

    i.payload {a: ArrayLayout(signed(a_width), rows), b: ArrayLayout(signed(b_width), cols),
               first: 1, last: 1}   (one k per transfer; a tile may be a single transfer)
    o.payload ArrayLayout(signed(acc_width), cols)   (C rows 0..rows-1, in order)
    """

    latency = 5  # `last` transfer -> first C row valid

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
        en = Signal()
        st = Stages(m, en)
        buf_full = Signal()
        cap = Signal()  # the accumulators hold a finished tile
        m.d.comb += [en.eq(~(cap & buf_full)), self.i.ready.eq(en)]

        def flags(v, f, last, tag):
            return (st.reg(v, name=f"v{tag}"), st.reg(f, name=f"f{tag}"), st.reg(last, name=f"l{tag}"))

        p = self.i.payload
        # Level 1: input registers. Flags need a reset: a bubble must not look like a transfer.
        v1 = Signal(name="v1")
        with m.If(en):
            m.d.sync += v1.eq(self.i.valid)
        f1, l1 = st.reg(p.first, name="f1"), st.reg(p.last, name="l1")
        a1 = [st.reg(p.a[i], name=f"a1_{i}") for i in range(R)]
        b1 = [st.reg(p.b[j], name=f"b1_{j}") for j in range(C)]
        v2, f2, l2 = st.reg(v1, name="v2"), st.reg(f1, name="f2"), st.reg(l1, name="l2")
        v3, f3, l3 = st.reg(v2, name="v3"), st.reg(f2, name="f3"), st.reg(l2, name="l3")
        v4 = Signal(name="v4")
        l4 = st.reg(l3, name="l4")
        with m.If(en):
            m.d.sync += v4.eq(v3)
        m.d.comb += cap.eq(v4 & l4)

        accs = [[None] * C for _ in range(R)]
        for i in range(R):
            for j in range(C):
                a2 = st.reg(a1[i], name=f"a2_{i}_{j}")   # level 2: private operand copies
                b2 = st.reg(b1[j], name=f"b2_{i}_{j}")
                prod = st.reg((a2 * b2)[:W].as_signed(), signed(W), name=f"p_{i}_{j}")  # level 3
                acc = Signal(signed(W), name=f"acc_{i}_{j}", reset_less=True)          # level 4
                with m.If(en & v3):
                    m.d.sync += acc.eq((Mux(f3, 0, acc) + prod)[:W])
                accs[i][j] = acc

        # Tile buffer: loaded from the accumulators, drained one C row per output transfer by
        # shifting the rows up (a 2:1 mux per bit instead of a rows:1 read mux).
        buf = [[Signal(signed(W), name=f"buf_{i}_{j}", reset_less=True) for j in range(C)]
               for i in range(R)]
        row = Signal(range(max(R, 2)), name="drain_row")
        m.d.comb += self.o.valid.eq(buf_full)
        for j in range(C):
            m.d.comb += self.o.payload[j].eq(buf[0][j])
        with m.If(en & cap):
            m.d.sync += [buf[i][j].eq(accs[i][j]) for i in range(R) for j in range(C)]
            m.d.sync += [buf_full.eq(1), row.eq(0)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += [buf[i][j].eq(buf[i + 1][j]) for i in range(R - 1) for j in range(C)]
            m.d.sync += row.eq(row + 1)
            with m.If(row == R - 1):
                m.d.sync += buf_full.eq(0)
        return m


class Mac(MacArray):
    """A single MAC: the 1 x 1 array (dot products of length K, one C value per `last`)."""

    def __init__(self, a_width: int = 8, b_width: int = 16, acc_width: int = 32) -> None:
        super().__init__(1, 1, a_width, b_width, acc_width)
