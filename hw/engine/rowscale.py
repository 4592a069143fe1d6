"""The core's row-wide scaling: a scale_relu command without partial sums (`params.row_scaled`)
takes whole C rows, one per cycle, through L lanes of scaling and NITRO-ReLU, instead of the
serializer's one element per cycle. A C tile then leaves in L cycles rather than L x L, so a GEMM
with K < L x L (a first convolution's 9 taps) does not wait for its outputs.

s and a of a row go to its row-layout words (SMEM, AMEM_R) at once. AMEM_C holds lanes along M,
so a tile's a values reach it as columns: the tile's rows are kept in registers and, after its
last row, written one column word per cycle in the next L cycles, while the next tile's rows
come in (a tile takes at least L cycles to drain).
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import replicated_reg
from hw.relu import NitroReluForward
from hw.scaling import ScaleClip

from .latencies import PipeLatencies
from .params import ADDR_W, EngineParams, command_layout
from .pipeline import data_reg, delayed

WRITES = ("amem_c", "amem_r", "smem")  # the scratchpads it writes


class ScaleRelu(wiring.Component):
    """`lanes` elements per cycle: s = clip(tdiv(z, sf)) (`hw.scaling.ScaleClip`, sf at run time),
    then a = NITRO-ReLU(s). `s_clip` leaves `clip` cycles after z, `s` and `a` `latency` cycles
    after z (`PipeLatencies`); sf is taken a cycle before z (the command's, set long before its
    first z). The serial pipe (`outputs.ScalePipeline`) is one lane of it, `RowScale` L."""

    def __init__(self, p: EngineParams, lanes: int) -> None:
        self.p, self.lanes = p, lanes
        self.scalers = [ScaleClip(p.acc_bits, p.max_scale, always_ready=True) for _ in range(lanes)]
        self.relus = [NitroReluForward(p.slope_inv, always_ready=True) for _ in range(lanes)]
        lat = PipeLatencies.of(p)
        assert (self.scalers[0].latency, self.relus[0].latency + 1) == (lat.clip, lat.out)
        self.clip_latency, self.out_latency, self.latency = lat.clip, lat.out, lat.scale
        act = data.ArrayLayout(signed(p.act_bits), lanes)
        super().__init__({
            "z": In(data.ArrayLayout(signed(p.acc_bits), lanes)),
            "sf": In(p.max_scale.bit_length()),
            "s_clip": Out(act), "s": Out(act), "a": Out(act),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        # sf is the command's and holds through it, and a command's first z comes long after
        # its register loads (DECODE, then the array's latency at least): a copy per lane in
        # front of the lane's own sf register costs no cycle and halves the wire from the
        # command register to lanes that lie far apart.
        sfs = replicated_reg(m, platform, self.sf, self.lanes, "sf_lane")
        for j, (sc, relu) in enumerate(zip(self.scalers, self.relus)):
            m.submodules[f"scaler{j}"], m.submodules[f"relu{j}"] = sc, relu
            m.d.comb += [sc.i.valid.eq(1), sc.i.payload.z.eq(self.z[j]),
                         sc.i.payload.sf.eq(sfs[j]), self.s_clip[j].eq(sc.o.payload),
                         relu.i.valid.eq(1), relu.i.payload.eq(sc.o.payload)]
            m.d.comb += [self.s[j].eq(delayed(m, sc.o.payload, self.out_latency, f"s{j}_out")),
                         self.a[j].eq(delayed(m, relu.o.payload, 1, f"a{j}_out"))]
        return m


class RowScale(wiring.Component):
    """`valid` (a drained row of a row-scaled command) with the row's `row`, index `m_row`, n tile
    `nt`, o0 word of its first element `col_addr` and o1 / o2 words `row_addr1` / `row_addr2`
    (`hw.engine.drain.RowDrain`'s) -> NAME_wr_* for the scratchpads in `WRITES`: SMEM and AMEM_R
    `latency` cycles after the row, AMEM_C a tile's columns in the L cycles after its last row.
    Elements outside the command's m_len x n_len are not written."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        L = p.lanes
        self.lanes = ScaleRelu(p, L)
        self.latency = self.lanes.latency
        ports = {"cmd": In(command_layout(p)), "valid": In(1),
                 "row": In(data.ArrayLayout(signed(p.acc_bits), L)), "m_row": In(ADDR_W + 4),
                 "nt": In(ADDR_W), "col_addr": In(ADDR_W), "row_addr1": In(ADDR_W),
                 "row_addr2": In(ADDR_W)}
        for name in WRITES:
            ports |= {f"{name}_wr_addr": Out(ADDR_W), f"{name}_wr_data": Out(L * p.act_bits),
                      f"{name}_wr_en": Out(L)}
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        p, cmd, lat = self.p, self.cmd, self.latency
        L, LB, AB = p.lanes, p.lane_bits, p.act_bits
        m.submodules.lanes = lanes = self.lanes
        m.d.comb += [lanes.z.eq(self.row), lanes.sf.eq(cmd.sc_sf)]

        # the row's place, carried beside the lanes: in m_len, its lanes in n_len, its tile's last
        m_ok, n_rem, n_mask = data_reg(), data_reg(ADDR_W + 4), data_reg(L)
        m.d.sync += [m_ok.eq(self.m_row < cmd.m_len), n_rem.eq(cmd.n_len - (self.nt << LB)),
                     n_mask.eq(Mux(n_rem >= L, (1 << L) - 1,
                                   ((1 << n_rem[:LB]) - 1)[:L]))]
        # a row's valid and "its tile's last", a cycle before its s and a leave the lanes
        valid_p = delayed(m, self.valid, lat - 1, "rs_valid", False)
        last_p = delayed(m, self.m_row[:LB] == L - 1, lat - 1, "rs_last")
        valid, last = delayed(m, valid_p, 1, "rs_valid_q", False), delayed(m, last_p, 1, "rs_last_q")
        m_ok = delayed(m, m_ok, lat - 1, "rs_m_ok")
        n_mask = delayed(m, n_mask, lat - 2, "rs_n_mask")
        col_addr = delayed(m, self.col_addr, lat, "rs_col")
        row_addr1 = delayed(m, self.row_addr1, lat, "rs_row1")
        row_addr2 = delayed(m, self.row_addr2, lat, "rs_row2")

        en = Mux(valid & m_ok, n_mask, 0)
        m.d.comb += [self.amem_r_wr_addr.eq(row_addr1), self.amem_r_wr_data.eq(lanes.a),
                     self.amem_r_wr_en.eq(en), self.smem_wr_addr.eq(row_addr2),
                     self.smem_wr_data.eq(lanes.s), self.smem_wr_en.eq(en)]

        # AMEM_C: the tile's first L - 1 rows shift through `held`; its last row loads the
        # column words `cols` (word j: lane r = row r's element j). The enables are registers,
        # a copy per lane and one for the rest (~600 flip-flops across the row's lanes): `move`
        # a row arrives, `load` it is a tile's last, `shift` columns are still to write.
        held = [data_reg(data.ArrayLayout(signed(AB), L), name=f"rs_held{r}") for r in range(L - 1)]
        held_ok = data_reg(L - 1)
        cols = [data_reg(L * AB, name=f"rs_col{j}") for j in range(L)]
        col_lanes, col_n = data_reg(L), data_reg(L)  # lanes (rows) in m_len; columns in n_len
        col_at = data_reg(ADDR_W)
        left = Signal(range(L + 1))  # columns still to write
        move = replicated_reg(m, platform, valid_p, L + 1, "rs_move")
        load = replicated_reg(m, platform, valid_p & last_p, L + 1, "rs_load")
        shift = replicated_reg(m, platform, (valid & last) | left[1:].any(), L + 1, "rs_shift")
        for j in range(L):
            with m.If(move[j]):
                m.d.sync += [held[r][j].eq(held[r + 1][j]) for r in range(L - 2)]
                m.d.sync += held[L - 2][j].eq(lanes.a[j])
            with m.If(load[j]):
                m.d.sync += cols[j].eq(Cat(*(t[j] for t in [*held, lanes.a])))
            if j < L - 1:  # the last column word is only loaded
                with m.Elif(shift[j]):
                    m.d.sync += cols[j].eq(cols[j + 1])
        with m.If(move[L]):
            m.d.sync += held_ok.eq(Cat(held_ok[1:], m_ok))
        with m.If(load[L]):
            m.d.sync += [col_lanes.eq(Cat(held_ok, m_ok)), col_n.eq(n_mask), col_at.eq(col_addr),
                         left.eq(L)]
        with m.Elif(shift[L]):
            m.d.sync += [col_n.eq(col_n[1:]), col_at.eq(col_at + 1), left.eq(left - 1)]
        m.d.comb += [self.amem_c_wr_addr.eq(col_at), self.amem_c_wr_data.eq(cols[0]),
                     self.amem_c_wr_en.eq(Mux(shift[L] & col_n[0], col_lanes, 0))]
        return m
