"""The core's max-pool unit (OP_POOL): kh x kw windows (stride = kernel) of a scratchpad's words,
lane-wise, into another region of the same scratchpad; optionally copying the stored NITRO-ReLU
inputs s of each window into a marked copy in which every position that is not its lane's
arg-max reads -128.

-128 is a value the clip never produces: the NITRO-ReLU backward's inverse slope of s < -127 is
2^31 - 1 (spec 2.4), so a delta that reaches a marked position through the learning layer's pool
map (`hw.engine.issue`, bpool) becomes 0: exactly the reference's routing of each window's
gradient to its first maximum (into the padding when that maximum is a padded 0: the reference
pads its int8 pools with 0, quirk D9). The padding is never stored: a position outside the image
reads 0.

Command fields (`params.command_layout`), per block (`m_len` blocks, `a_sm` source words apart,
`o0.stride` destination words apart): `k_len` output rows of `cv_mw` pixels of `cv_n0` words;
source image cv_w x cv_h with padding (-cv_x0, -cv_y0); window cv_n1 x cv_n2 (kw x kh). Source
word steps: `a_skr` per output pixel (kw x cv_n0), `b_sk` per output row (kh source rows),
`a_sk` from the end of a window row to the start of the next. `a_base`: the source word of the
first window's top-left position (padding included); `o0.base` the first destination word (the
output is contiguous within a block). With `conv` set, s is read in SMEM at `o2.base` + (the
source word - a_base) and its marked copy written at `o3.base` + (the same), both regions laid
out as the source (their bases at its first window's top-left position).
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .memory import READ_LATENCY
from .params import ADDR_W, CV_BITS, CV_N0_BITS, EngineParams, command_layout
from .pipeline import data_reg, delayed

MASK = -128  # s of a position whose delta is dropped


class PoolUnit(wiring.Component):
    """`start` (the command's DECODE cycle) runs `cmd`; `rd_addr` -> `rd_data` (`READ_LATENCY`
    later) is the source scratchpad's port, `wr_*` its write port, `s_addr` -> `s_data` and `mk_*`
    SMEM's (s and its marked copy); `active` while
    the command runs (the core's port selects), `done` when its last write is presented."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        L, AB = p.lanes, p.act_bits
        super().__init__({
            "cmd": In(command_layout(p)), "start": In(1),
            "rd_addr": Out(ADDR_W), "rd_data": In(L * AB),
            "wr_addr": Out(ADDR_W), "wr_data": Out(L * AB), "wr_en": Out(L),
            "s_addr": Out(ADDR_W), "s_data": In(L * AB),
            "mk_addr": Out(ADDR_W), "mk_data": Out(L * AB), "mk_en": Out(L),
            "active": Out(1), "done": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p, cmd, RL = self.p, self.cmd, READ_LATENCY
        L, AB = p.lanes, p.act_bits
        PW = CV_BITS + 3
        WIN = 2 * CV_BITS  # window positions (kh x kw)
        blk, oy = data_reg(ADDR_W + 4), data_reg(ADDR_W)
        ox, c = data_reg(CV_BITS), data_reg(CV_N0_BITS)
        ky, kx = data_reg(CV_BITS), data_reg(CV_BITS)
        blk_base, row_base, pix_base, addr = (data_reg(ADDR_W, name=n) for n in
                                              ("blk_base", "row_base", "pix_base", "addr"))
        dst_blk, dst = data_reg(ADDR_W), data_reg(ADDR_W)
        iy0, ix0 = data_reg(signed(PW)), data_reg(signed(PW))  # the window's top-left pixel
        iy, ix = data_reg(signed(PW)), data_reg(signed(PW))
        pos = data_reg(WIN)  # window position being issued
        wait = data_reg(range(RL + 2))
        mk_off, mk_copy = data_reg(ADDR_W), data_reg(ADDR_W)  # source -> s, s -> its copy
        active, done = Signal(), Signal()
        m.d.comb += [self.active.eq(active), self.done.eq(done), self.rd_addr.eq(addr)]

        inside = Signal()
        m.d.comb += inside.eq((iy >= 0) & (iy < cmd.cv_h) & (ix >= 0) & (ix < cmd.cv_w))
        issue, first, last, writing, marking = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.comb += [first.eq(pos == 0), last.eq((ky == cmd.cv_n2 - 1) & (kx == cmd.cv_n1 - 1))]

        def window_start(base, y0, x0):
            return [addr.eq(base), iy.eq(y0), ix.eq(x0), ky.eq(0), kx.eq(0), pos.eq(0)]

        with m.FSM(name="pool"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [active.eq(1), done.eq(0), blk.eq(0), oy.eq(0), ox.eq(0), c.eq(0),
                                 blk_base.eq(cmd.a_base), row_base.eq(cmd.a_base),
                                 pix_base.eq(cmd.a_base), dst_blk.eq(cmd.o0.base),
                                 dst.eq(cmd.o0.base), iy0.eq(cmd.cv_y0), ix0.eq(cmd.cv_x0),
                                 mk_off.eq(cmd.o2.base - cmd.a_base),
                                 mk_copy.eq(cmd.o3.base - cmd.o2.base),
                                 *window_start(cmd.a_base, cmd.cv_y0, cmd.cv_x0)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):  # one source word per cycle, row-major over the window
                m.d.comb += issue.eq(1)
                m.d.sync += [pos.eq(pos + 1), kx.eq(kx + 1), ix.eq(ix + 1), addr.eq(addr + cmd.cv_n0)]
                with m.If(kx == cmd.cv_n1 - 1):
                    m.d.sync += [kx.eq(0), ky.eq(ky + 1), ix.eq(ix0), iy.eq(iy + 1),
                                 addr.eq(addr + cmd.a_sk)]
                with m.If(last):
                    m.d.sync += wait.eq(RL + 1)
                    m.next = "REDUCE"
            with m.State("REDUCE"):  # the last word's data reaches the max registers
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += writing.eq(1)
                m.d.sync += window_start(pix_base + c, iy0, ix0)
                with m.If(cmd.conv):
                    m.d.sync += addr.eq(pix_base + c + mk_off)
                    m.next = "MARK"
                with m.Else():
                    m.next = "NEXT"
            with m.State("MARK"):  # read s at each position; its marked copy follows (below)
                m.d.comb += marking.eq(1)
                m.d.sync += [pos.eq(pos + 1), kx.eq(kx + 1), ix.eq(ix + 1), addr.eq(addr + cmd.cv_n0)]
                with m.If(kx == cmd.cv_n1 - 1):
                    m.d.sync += [kx.eq(0), ky.eq(ky + 1), ix.eq(ix0), iy.eq(iy + 1),
                                 addr.eq(addr + cmd.a_sk)]
                with m.If(last):
                    m.next = "NEXT"
            with m.State("NEXT"):  # the next word, pixel, output row, block
                m.next = "ISSUE"
                nxt_c = c + 1
                m.d.sync += [c.eq(nxt_c), dst.eq(dst + 1), *window_start(pix_base + nxt_c, iy0, ix0)]
                with m.If(nxt_c == cmd.cv_n0):
                    npx = pix_base + cmd.a_skr
                    m.d.sync += [c.eq(0), ox.eq(ox + 1), pix_base.eq(npx), ix0.eq(ix0 + cmd.cv_n1),
                                 *window_start(npx, iy0, ix0 + cmd.cv_n1)]
                    with m.If(ox == cmd.cv_mw - 1):
                        nrow = row_base + cmd.b_sk
                        m.d.sync += [ox.eq(0), oy.eq(oy + 1), row_base.eq(nrow), pix_base.eq(nrow),
                                     ix0.eq(cmd.cv_x0), iy0.eq(iy0 + cmd.cv_n2),
                                     *window_start(nrow, iy0 + cmd.cv_n2, cmd.cv_x0)]
                        with m.If(oy == cmd.k_len - 1):
                            nblk = blk_base + cmd.a_sm
                            ndst = dst_blk + cmd.o0.stride
                            m.d.sync += [oy.eq(0), blk.eq(blk + 1), blk_base.eq(nblk),
                                         row_base.eq(nblk), pix_base.eq(nblk), dst_blk.eq(ndst),
                                         dst.eq(ndst), iy0.eq(cmd.cv_y0),
                                         *window_start(nblk, cmd.cv_y0, cmd.cv_x0)]
                            with m.If(blk == cmd.m_len - 1):
                                m.d.sync += [active.eq(0), done.eq(1)]
                                m.next = "IDLE"

        # the words come back RL cycles after their address: lane-wise first maximum, the
        # padding reading 0
        v = delayed(m, issue, RL, "pool_v", False)
        f = delayed(m, first, RL, "pool_f")
        inb = delayed(m, inside, RL, "pool_in")
        idx = delayed(m, pos, RL, "pool_pos")
        best = data_reg(data.ArrayLayout(signed(AB), L))
        arg = data_reg(data.ArrayLayout(WIN, L))
        for j in range(L):
            x = Mux(inb, self.rd_data.word_select(j, AB).as_signed(), 0)
            with m.If(v & (f | (x > best[j]))):
                m.d.sync += [best[j].eq(x), arg[j].eq(idx)]
        m.d.comb += [self.wr_addr.eq(dst), self.wr_data.eq(best.as_value()),
                     self.wr_en.eq(Mux(writing, (1 << L) - 1, 0)), self.s_addr.eq(addr)]
        # the marked copy of s: each position's word RL cycles after its read, MASK in the
        # lanes whose arg-max is elsewhere
        mk_v = delayed(m, marking & inside, RL, "mark_v", False)
        mk_pos = delayed(m, pos, RL, "mark_pos")
        mk_at = delayed(m, addr + mk_copy, RL, "mark_addr")
        m.d.comb += [self.mk_addr.eq(mk_at), self.mk_en.eq(Mux(mk_v, (1 << L) - 1, 0)),
                     self.mk_data.eq(Cat(*(Mux(arg[j] == mk_pos, self.s_data.word_select(j, AB),
                                                Const(MASK & 0xFF, AB)) for j in range(L))))]
        return m
