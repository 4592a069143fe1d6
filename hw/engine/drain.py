"""The core's drain: C rows out of the MAC array, the (m tile, n tile, row) they belong to and the
output slots' word addresses of each row.

A row that leaves the array (`o_fire`) is handled from registers one cycle later (`row_v`,
`row_data`): the drain counters, the serializer and the ReLU-backward path never see the array's
output-FIFO logic. A serial op's row (scale, loss, update: one element per cycle) is followed by
L - 1 cycles in which the array's `ready` is low: the serializer takes one row every L cycles.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import replicated_reg

from .array import row_signature
from .params import ADDR_W, EngineParams, command_layout
from .pipeline import data_reg, last_tile

ROW_SLOTS = (1, 2, 3)  # the "row" output slots, whose addresses follow the drained rows


class RowDrain(wiring.Component):
    """`i`: the array's C rows (`array.row_signature`); `start` (copies: 0 the counters, 1-3 slot
    s's address registers) reloads for the command `cmd`, `launch` marks its DECODE cycle, `serial`
    its op kind. Per drained row (`row_v`, `row_data`): its PMEM row `row_n` (the command's
    p_base + its index in the command), its m index `m_row`, n tile `nt`, the o0
    and o4 words of its first element (`col_addr`, `tcol_addr`) and the row slots' words
    (`row_addr1..3`); `o_fire` a cycle earlier. `row_lanes`: `row_data` again, each element in
    flip-flops of its own, for the row-wide scaling, whose lanes lie apart across the die.
    `done`: the command's last row has drained."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        rows = row_signature(p)
        super().__init__({
            "cmd": In(command_layout(p)), "start": In(4), "launch": In(1), "serial": In(1),
            "i": In(rows),
            "o_fire": Out(1), "row_v": Out(1), "row_data": Out(rows.members["payload"].shape),
            "row_lanes": Out(rows.members["payload"].shape),
            "row_n": Out(ADDR_W), "m_row": Out(ADDR_W + 4), "nt": Out(ADDR_W), "col_addr": Out(ADDR_W),
            "tcol_addr": Out(ADDR_W), "row_addr1": Out(ADDR_W), "row_addr2": Out(ADDR_W),
            "row_addr3": Out(ADDR_W), "done": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p, cmd = self.p, self.cmd
        L, LB = p.lanes, p.lane_bits
        slots = {1: cmd.o1, 2: cmd.o2, 3: cmd.o3}
        mt_d, nt_d, r_d = data_reg(ADDR_W), data_reg(ADDR_W), data_reg(LB)
        n_last, m_last = data_reg(ADDR_W, name="n_last"), data_reg(ADDR_W, name="m_last")
        r_last = data_reg()  # r_d == L - 1, as a register
        r_pen = data_reg()  # r_d == L - 2, as a register
        r_mt = {s: data_reg(ADDR_W, name=f"r_mt{s}") for s in ROW_SLOTS}  # row 0 of m tile, nt = 0
        tile0 = {s: data_reg(ADDR_W, name=f"tile0_{s}") for s in ROW_SLOTS}  # row 0 of (mt, nt)
        # row_addr[s] = r_mt[s] + r*stride_s + nt: kept in a register, updated per drained row
        row_addr = {s: data_reg(ADDR_W, name=f"row_addr{s}") for s in ROW_SLOTS}
        c_mt, t_nt = data_reg(ADDR_W), data_reg(ADDR_W)
        # a row slot's step per m tile: L rows, or (conv forward: m tiles are pixels, channels
        # innermost) the n tiles of one pixel. It lags `cmd` by two register levels (no enable):
        # it is read only at an m tile's last row, far more than two cycles after the DECODE,
        # and `cmd` holds while its rows drain, so no compare or mux behind the command register's
        # die-wide nets sits in front of the m-tile adders.
        m_step = {s: data_reg(ADDR_W, name=f"m_step{s}") for s in ROW_SLOTS}
        conv_m, n_tiles = data_reg(name="conv_m"), data_reg(ADDR_W, name="n_tiles")
        m.d.sync += [conv_m.eq(cmd.cv_mw != 0), n_tiles.eq(last_tile(cmd.n_len, LB) + 1)]
        for s in ROW_SLOTS:
            stride = data_reg(ADDR_W, name=f"m_stride{s}")
            m.d.sync += [stride.eq(slots[s].stride << LB),
                         m_step[s].eq(Mux(conv_m, n_tiles, stride))]
        row_n = data_reg(ADDR_W)  # p_base + rows drained so far (a chunk's partial sums' PMEM row)
        done = Signal()
        m.d.comb += [self.col_addr.eq(c_mt + (nt_d << LB)), self.tcol_addr.eq(t_nt + mt_d),
                     self.m_row.eq((mt_d << LB) | r_d), self.nt.eq(nt_d), self.done.eq(done),
                     self.row_n.eq(row_n)]
        m.d.comb += [getattr(self, f"row_addr{s}").eq(row_addr[s]) for s in ROW_SLOTS]
        with m.If(self.start[0]):
            m.d.sync += [n_last.eq(last_tile(cmd.n_len, LB)), m_last.eq(last_tile(cmd.m_len, LB)),
                         mt_d.eq(0), nt_d.eq(0), r_d.eq(0), r_pen.eq(0), done.eq(0),  # (L >= 4)
                         row_n.eq(cmd.p_base),
                         c_mt.eq(cmd.o0.base), t_nt.eq(cmd.o4.base)]
        for s in ROW_SLOTS:
            with m.If(self.start[s]):
                m.d.sync += [x[s].eq(slots[s].base) for x in (r_mt, row_addr, tile0)]
        # "last tile" flags one cycle behind the counters: a counter changes only on a tile's
        # last row, and the flag is next read L >= 2 drained rows later
        nt_d_last, mt_d_last = data_reg(), data_reg()
        m.d.sync += [nt_d_last.eq(nt_d == n_last), mt_d_last.eq(mt_d == m_last)]

        # rows through one register; `accept` (the array's o.ready) is a register
        o_fire, row_v = Signal(), Signal()
        accept = Signal(init=1)
        acc_cnt = Signal(LB)
        m.d.comb += [self.i.ready.eq(accept), o_fire.eq(self.i.valid & accept),
                     self.o_fire.eq(o_fire), self.row_v.eq(row_v)]
        row_data = data_reg(self.row_data.shape())
        m.d.sync += [row_v.eq(o_fire), row_data.eq(self.i.payload)]
        m.d.comb += self.row_data.eq(row_data)
        m.d.comb += [self.row_lanes[j].eq(replicated_reg(m, platform, self.i.payload[j], 1,
                                                         f"row_lane{j}")[0])
                     for j in range(L)]
        with m.If(o_fire & self.serial):
            m.d.sync += [accept.eq(0), acc_cnt.eq(L - 1)]
        with m.Elif(acc_cnt != 0):
            m.d.sync += [acc_cnt.eq(acc_cnt - 1), accept.eq(acc_cnt == 1)]

        # The row's case (next row / next n tile / next m tile) selects the next value of ~200
        # address and counter bits: it is decided one cycle ahead, from o_fire and next-state
        # values, and registered once per slot group (hw.fanout), so those muxes see registers
        # rather than a decode with ~80 loads per net. nt_d_last at the row is nt_d == n_last
        # one cycle earlier.
        r_last_next = Signal()
        m.d.comb += r_last_next.eq(Mux(self.launch, 0, Mux(row_v, r_pen, r_last)))
        m.d.sync += r_last.eq(r_last_next)
        groups = (0, *ROW_SLOTS)  # 0: the counters, s: slot s's address registers
        row_g = dict(zip(groups, replicated_reg(m, platform, o_fire, len(groups), "row_g")))
        tile_g = dict(zip(groups, replicated_reg(m, platform, o_fire & r_last_next, len(groups),
                                                 "tile_g")))
        # nt_d == n_last as its registered flag: nt_d changed at least three cycles before a
        # tile's last row leaves the array (L >= 4 rows per tile)
        mt_g = dict(zip(groups, replicated_reg(m, platform, o_fire & r_last_next & nt_d_last,
                                               len(groups), "mt_g")))
        with m.If(row_g[0]):
            m.d.sync += [r_d.eq(Mux(tile_g[0], 0, r_d + 1)), row_n.eq(row_n + 1),
                         r_pen.eq(~tile_g[0] & (r_d == L - 3))]
        with m.If(mt_g[0]):
            m.d.sync += [nt_d.eq(0), t_nt.eq(cmd.o4.base), mt_d.eq(mt_d + 1),
                         c_mt.eq(c_mt + cmd.o0.stride)]
        with m.Elif(tile_g[0]):
            m.d.sync += [nt_d.eq(nt_d + 1), t_nt.eq(t_nt + (cmd.o4.stride << LB))]
        for s in ROW_SLOTS:
            with m.If(mt_g[s]):
                nxt = r_mt[s] + m_step[s]
                m.d.sync += [r_mt[s].eq(nxt), tile0[s].eq(nxt), row_addr[s].eq(nxt)]
            with m.Elif(tile_g[s]):
                m.d.sync += [tile0[s].eq(tile0[s] + 1), row_addr[s].eq(tile0[s] + 1)]
            with m.Elif(row_g[s]):
                m.d.sync += row_addr[s].eq(row_addr[s] + slots[s].stride)
        with m.If(row_v & r_last & nt_d_last & mt_d_last):
            m.d.sync += done.eq(1)
        return m
