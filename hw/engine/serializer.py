"""The core's serializer: a C row of a serial op (scale, loss, update) -> one element per cycle
with the output slots' word addresses, for the elementwise pipelines (`hw.engine.outputs`,
`hw.sgd`). A tile drains in rows x cols cycles, hidden under the next tile's K >= rows x cols
accumulation beats."""
from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import replicated_reg

from .params import ADDR_W, EngineParams, command_layout
from .pipeline import data_reg

# what the serializer takes of each drained row from `hw.engine.drain.RowDrain`, by name
DRAIN_FIELDS = ("row_n", "m_row", "nt", "col_addr", "tcol_addr", "row_addr1", "row_addr2", "row_addr3")
SER_GROUPS = 4  # copies of the row load / shift enables: one per slice of the row, one more for the addresses


def element_layout(p: EngineParams) -> data.StructLayout:
    """One C element on its way to the output units: value, lane j (n % L), row r (m % L), the
    word addresses of slots o0..o4 (`params.command_layout`) and of its partial sum in PMEM."""
    return data.StructLayout({"z": signed(p.acc_bits), "j": p.lane_bits, "r": p.lane_bits,
                              "a": data.ArrayLayout(ADDR_W, 5), "p": ADDR_W})


class RowSerializer(wiring.Component):
    """`load` (a serial op's row leaves the array; `row` and the addresses follow a cycle later, as
    `hw.engine.drain.RowDrain` gives them) -> `valid` / `e` for each of the row's L elements,
    `valid` low for the padding outside `cmd`'s m_len x n_len."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        L = p.lanes
        super().__init__({
            "cmd": In(command_layout(p)), "load": In(1),
            "row": In(data.ArrayLayout(signed(p.acc_bits), L)), "row_n": In(ADDR_W),
            "m_row": In(ADDR_W + 4),
            "nt": In(ADDR_W), "col_addr": In(ADDR_W), "tcol_addr": In(ADDR_W),
            "row_addr1": In(ADDR_W), "row_addr2": In(ADDR_W), "row_addr3": In(ADDR_W),
            "valid": Out(1), "e": Out(element_layout(p)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p, cmd = self.p, self.cmd
        L, LB = p.lanes, p.lane_bits
        ser_row = data_reg(data.ArrayLayout(signed(p.acc_bits), L))
        ser_m, ser_nt, ser_p = data_reg(ADDR_W + 4), data_reg(ADDR_W), data_reg(ADDR_W)
        ser_col, ser_tcol = data_reg(ADDR_W), data_reg(ADDR_W)
        ser_rowa = {s: data_reg(ADDR_W, name=f"ser_row{s}") for s in (1, 2, 3)}
        # "a serial op's row arrives" and "serializing" drive ~350 enables: both per group
        # (hw.fanout), SER_GROUPS slices of the row, then the addresses and counters. Each group
        # keeps its own busy flag and element count, fed only by its own load copy, so that no
        # group's enable waits on a register placed beside another group.
        ser_ld = replicated_reg(m, platform, self.load, SER_GROUPS + 1, "ser_load")
        ser_on, counts = zip(*(self._busy(m, ser_ld[g], f"ser_busy{g}") for g in range(SER_GROUPS + 1)))
        ser_busy, ser_j = ser_on[SER_GROUPS], counts[SER_GROUPS]  # the addresses' group
        per = L // SER_GROUPS
        for g in range(SER_GROUPS + 1):
            lanes = range(g * per, (g + 1) * per)
            with m.If(ser_ld[g]):
                if g < SER_GROUPS:
                    m.d.sync += [ser_row[j].eq(self.row[j]) for j in lanes]
                else:
                    m.d.sync += [ser_m.eq(self.m_row), ser_nt.eq(self.nt), ser_col.eq(self.col_addr),
                                 ser_tcol.eq(self.tcol_addr),
                                 ser_p.eq(self.row_n << LB)]
                    m.d.sync += [ser_rowa[s].eq(getattr(self, f"row_addr{s}")) for s in (1, 2, 3)]
            with m.Elif(ser_on[g]):
                if g < SER_GROUPS:
                    m.d.sync += [ser_row[j].eq(ser_row[j + 1]) for j in lanes if j < L - 1]
                else:
                    m.d.sync += [ser_col.eq(ser_col + 1), ser_p.eq(ser_p + 1),
                                 ser_tcol.eq(ser_tcol + cmd.o4.stride)]
        n = Signal(ADDR_W + 4)
        m.d.comb += n.eq((ser_nt << LB) | ser_j)
        m.d.comb += [self.valid.eq(ser_busy & (ser_m < cmd.m_len) & (n < cmd.n_len)),
                     self.e.z.eq(ser_row[0]), self.e.j.eq(ser_j), self.e.r.eq(ser_m[:LB]),
                     self.e.a[0].eq(ser_col), self.e.a[4].eq(ser_tcol), self.e.p.eq(ser_p)]
        m.d.comb += [self.e.a[s].eq(ser_rowa[s]) for s in (1, 2, 3)]
        return m

    def _busy(self, m: Module, load: Signal, name: str) -> tuple[Signal, Signal]:
        """High for the L cycles after `load`: one group's serializing flag, and its count of the
        row's elements (0..L-1)."""
        busy, count = Signal(name=name), data_reg(self.p.lane_bits, name=f"{name}_count")
        m.d.sync += busy.eq(load | (busy & (count != self.p.lanes - 1)))
        with m.If(load):
            m.d.sync += count.eq(0)
        with m.Elif(busy):
            m.d.sync += count.eq(count + 1)
        return busy, count
