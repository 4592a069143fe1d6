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

With `drop` the command is dropout (spec 2.8) over 1x1 windows: the marking pass reads the mask
(o2, laid out as the source; a position is kept where its byte is not 0) instead of s, and each
lane's word x is written as tdiv(x * keep * R, 1000) = sign(x) * (|x| * d_mult >> DROP_SHIFT),
DROP_STAGES cycles later than a pooled word; nothing is marked.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.dsp import registered_mul
from hw.fanout import replicated_reg

from .memory import READ_LATENCY
from .params import (
    ADDR_W, CV_BITS, CV_N0_BITS, DROP_MULT_BITS, DROP_SHIFT, EngineParams, command_layout,
)
from .pipeline import Countdown, data_reg, delayed

MASK = -128  # s of a position whose delta is dropped
PW = CV_BITS + 3  # signed pixel coordinates: the padding below zero
WIN = 2 * CV_BITS  # window positions (kh x kw)
DROP_STAGES = 3  # |x| and the keep bit, the product, the word


@dataclass
class _Walk:
    """The window walk's registers and strobes the data side reads (`PoolUnit._walk`)."""

    addr: Signal  # the source (or s) word being read
    dst: Signal  # the pooled word's destination
    iy: Signal  # the position's pixel
    ix: Signal
    ky: Countdown  # its place in the window (the row and column ends registered)
    kx: Countdown
    pos: Signal  # its index, row-major
    mk_copy: Signal  # s -> its marked copy
    issue: Signal  # a source word is read
    last: Signal  # the position is its window's last (a register kept with ky and kx)
    marking: Signal  # s is read for the marked copy
    inside: Signal  # the position lies in the image (else padding)


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
        AB = self.p.act_bits
        # the command's fields as latched at its start: registers beside the walk's adders, not
        # the sequencer's command register, which every unit reads across the die
        cmd = data_reg(command_layout(self.p), name="pool_cmd")
        w = _Walk(
            addr=data_reg(ADDR_W, name="addr"), dst=data_reg(ADDR_W, name="dst"),
            iy=data_reg(signed(PW), name="iy"), ix=data_reg(signed(PW), name="ix"),
            ky=Countdown(CV_BITS, "ky"), kx=Countdown(CV_BITS, "kx"),
            pos=data_reg(WIN, name="pos"), mk_copy=data_reg(ADDR_W, name="mk_copy"),
            issue=Signal(name="issue"), last=data_reg(name="last"),
            marking=Signal(name="marking"), inside=Signal(name="inside"))
        m.d.comb += [w.inside.eq((w.iy >= 0) & (w.iy < cmd.cv_h) & (w.ix >= 0) & (w.ix < cmd.cv_w)),
                     self.rd_addr.eq(w.addr), self.s_addr.eq(w.addr)]
        self._walk(m, w, cmd)
        # the words come back READ_LATENCY cycles after their address, are registered on arrival
        # (`nxt`) and once more (`cur`, the word reduced): lane-wise first maximum, the padding
        # reading 0
        L, DL = self.p.lanes, READ_LATENCY + 2
        # each position's index DL cycles after its read, a copy per lane: the arg-max registers
        # take it and the marked copy compares with it in every lane, across the scratchpad's width
        pos = self._per_lane(m, platform, w.pos, DL, "pool_pos")
        best, arg = self._running_max(m, platform, w, DL, pos)
        s_rd = delayed(m, self.s_data, 2, "s_q")
        # the pooled word: written in the cycle its window's last word has been reduced (the next
        # window's first word replaces `best` only at the end of that cycle)
        wr_v = delayed(m, w.issue & w.last, DL + 1, "pool_wr", False)
        wr_at = delayed(m, w.dst, DL + 1, "pool_dst")
        # dropout: the word (a 1x1 window's) with its mask, which the marking pass read a cycle
        # after it, DROP_STAGES cycles on
        dropped = self._dropout(m, platform, best, s_rd, cmd)
        drop_v = delayed(m, wr_v, DROP_STAGES, "drop_wr", False)
        drop_at = delayed(m, wr_at, DROP_STAGES, "drop_dst")
        m.d.comb += [self.wr_addr.eq(Mux(cmd.drop, drop_at, wr_at)),
                     self.wr_data.eq(Mux(cmd.drop, dropped, best.as_value())),
                     self.wr_en.eq(Mux(Mux(cmd.drop, drop_v, wr_v), (1 << L) - 1, 0))]
        # the marked copy of s: each position's word DL cycles after its read, MASK in the
        # lanes whose arg-max is elsewhere. Each lane's compare is registered where its arg-max
        # is (`hit`: arg is final only in that cycle), the word formed a cycle later, so that no
        # compare drives the word registers' synchronous set/reset across the die.
        mk_v = delayed(m, w.marking & w.inside & ~cmd.drop, DL + 1, "mark_v", False)
        mk_at = delayed(m, w.addr + w.mk_copy, DL + 2, "mark_addr")
        s_mk = delayed(m, s_rd, 1, "s_mk")
        hit = Signal(L, name="mark_hit")
        mk_en, mk_data = Signal(L, name="mark_en"), data_reg(L * AB, name="mark_data")
        m.d.sync += [hit.eq(Cat(*(arg[j] == pos[j] for j in range(L)))),
                     mk_en.eq(Mux(mk_v, (1 << L) - 1, 0)),
                     mk_data.eq(Cat(*(Mux(hit[j], s_mk.word_select(j, AB), Const(MASK & 0xFF, AB))
                                      for j in range(L))))]
        m.d.comb += [self.mk_addr.eq(mk_at), self.mk_en.eq(mk_en), self.mk_data.eq(mk_data)]
        return m

    def _dropout(self, m: Module, platform, best, s_rd, cmd):
        """Each lane's word x kept where its mask byte is not 0 and rescaled: sign(x) * (|x| *
        d_mult >> DROP_SHIFT), registered in DROP_STAGES steps (|x| and d_mult in the operand
        registers of the lane's own DSP, `hw.dsp.registered_mul`: a product without them is a
        combinational DSP path, too slow for the engine's clock)."""
        L, AB = self.p.lanes, self.p.act_bits
        word = data_reg(L * AB, name="drop_word")
        for j in range(L):
            x = best[j]
            prod = registered_mul(m, platform, Mux(x < 0, -x, x)[:AB], cmd.d_mult[:DROP_MULT_BITS],
                                  f"drop{j}")
            neg, keep, neg2, keep2 = data_reg(), data_reg(), data_reg(), data_reg()
            m.d.sync += [neg.eq(x < 0), keep.eq(s_rd.word_select(j, AB) != 0),
                         neg2.eq(neg), keep2.eq(keep)]
            q = prod[DROP_SHIFT:DROP_SHIFT + AB]
            m.d.sync += word.word_select(j, AB).eq(Mux(keep2, Mux(neg2, -q, q), 0))
        return word

    def _per_lane(self, m: Module, platform, v, n: int, name: str, reset_less: bool = True) -> list:
        """`v` delayed by n cycles, its last register a copy per lane (`hw.fanout`: the lanes lie
        across the scratchpads' width, and identical registers would be merged into one)."""
        return replicated_reg(m, platform, delayed(m, v, n - 1, name, reset_less), self.p.lanes, name)

    def _running_max(self, m: Module, platform, w: _Walk, DL: int, pos: list):
        """(best, arg) of each lane: the window's first maximum so far and its position (`pos`,
        the lane's copy of the index). Both ways the next word can compare (with `best` as it is,
        and with the word now reduced, which replaces `best` when taken) are registered a cycle
        ahead, so what each lane's enables wait on is one choice between two flip-flops, not a
        compare; the word's valid and first flags are a copy per lane too."""
        L, AB = self.p.lanes, self.p.act_bits
        # each lane's word registered with its padding already 0 (`inside` a cycle earlier), so
        # that the compares below start at flip-flops
        inb = self._per_lane(m, platform, w.inside, DL - 2, "pool_in")
        nxt = [data_reg(signed(AB), name=f"rd_q{j}") for j in range(L)]
        m.d.sync += [nxt[j].eq(Mux(inb[j], self.rd_data.word_select(j, AB), 0)) for j in range(L)]
        cur = data_reg(data.ArrayLayout(signed(AB), L), name="pool_cur")
        m.d.sync += [cur[j].eq(nxt[j]) for j in range(L)]
        v = self._per_lane(m, platform, w.issue, DL, "pool_v", reset_less=False)
        f = self._per_lane(m, platform, w.pos == 0, DL, "pool_f")
        best = data_reg(data.ArrayLayout(signed(AB), L), name="pool_best")
        arg = data_reg(data.ArrayLayout(WIN, L), name="pool_arg")
        for j in range(L):
            # registered a cycle ahead
            over_best, over_cur = Signal(name=f"over_best{j}"), Signal(name=f"over_cur{j}")
            took = Signal(name=f"took{j}")
            take = v[j] & (f[j] | Mux(took, over_cur, over_best))
            m.d.sync += [over_best.eq(nxt[j] > best[j]), over_cur.eq(nxt[j] > cur[j]), took.eq(take)]
            with m.If(take):
                m.d.sync += [best[j].eq(cur[j]), arg[j].eq(pos[j])]
        return best, arg

    def _walk(self, m: Module, w: _Walk, cmd) -> None:
        """The command's loops: blocks, output rows, pixels, words; per word the window's
        positions (issue), then with `conv` the positions again for the marked copy of s
        (marking), back to back: the window's arg-max is complete when the first word of s
        arrives, and the next window's first word reaches the max registers after the last word
        of s. The writes trail the reads by the read latency (flushing). Every loop's "at its
        last value" is a register, and so are "the window's last read moves on" (`adv`) and "the
        window's last read starts its marked copy" (`mark`), formed from the next values of
        `walking`, the position's "last of its window" and `fin` (marking, or issuing without
        `conv`): the ~50 enables of a step to the next word, pixel, row or block decode a few
        flip-flops. `cmd`: the command as latched at its start (the start cycle reads the port)."""
        RL = READ_LATENCY
        blk, oy = Countdown(ADDR_W + 4, "blk"), Countdown(ADDR_W, "oy")
        ox, c = Countdown(CV_BITS, "ox"), Countdown(CV_N0_BITS, "c")
        win0 = data_reg(ADDR_W, name="win0")  # the window's first source word (its pixel's first + c)
        # the first source word of the next pixel, output row and block, kept ahead (each the
        # current one's plus its step): the walk's address takes registers, not adders
        npx, nrow, nblk = (data_reg(ADDR_W, name=n) for n in ("next_pix", "next_row", "next_blk"))
        dst_blk = data_reg(ADDR_W)
        iy0, ix0 = data_reg(signed(PW)), data_reg(signed(PW))  # the window's top-left pixel
        wait = data_reg(range(RL + 5 + DROP_STAGES))
        mk_off = data_reg(ADDR_W)  # source -> s
        active, done, walking, marking, flushing = (
            Signal(name=n) for n in ("active", "done", "walking", "marking", "flushing"))
        fin = data_reg(name="fin")
        m.d.comb += [self.active.eq(active), self.done.eq(done),
                     w.issue.eq(walking & ~marking), w.marking.eq(walking & marking)]
        # walking, last and fin are assigned only through their next values (below, the last
        # assignment winning as in the sync domain), which `adv` and `mark` are registered from
        walking_n, last_n, fin_n = Signal(), Signal(), Signal()
        m.d.comb += [walking_n.eq(walking), last_n.eq(w.last), fin_n.eq(fin)]
        m.d.sync += [walking.eq(walking_n), w.last.eq(last_n), fin.eq(fin_n)]
        adv, mark = Signal(name="adv"), Signal(name="mark")
        m.d.sync += [adv.eq(walking_n & last_n & fin_n), mark.eq(walking_n & last_n & ~fin_n)]

        def start(base, y0, x0, c=cmd):
            m.d.sync += [w.addr.eq(base), win0.eq(base), w.iy.eq(y0), w.ix.eq(x0), w.pos.eq(0),
                         *w.ky.restart(c.cv_n2), *w.kx.restart(c.cv_n1)]
            m.d.comb += last_n.eq((c.cv_n1 == 1) & (c.cv_n2 == 1))

        n1_one = cmd.cv_n1 == 1

        def step():  # the next window position, row-major
            m.d.sync += [w.pos.eq(w.pos + 1), *w.kx.step(), w.ix.eq(w.ix + 1),
                         w.addr.eq(w.addr + cmd.cv_n0)]
            m.d.comb += last_n.eq(w.kx.pen & w.ky.last)
            with m.If(w.kx.last):
                m.d.sync += [*w.kx.restart(cmd.cv_n1), *w.ky.step(), w.ix.eq(ix0),
                             w.iy.eq(w.iy + 1), w.addr.eq(w.addr + cmd.a_sk)]
                m.d.comb += last_n.eq(n1_one & w.ky.pen)

        def advance():  # the next word, pixel, output row, block: its window from the start
            m.d.sync += [*c.step(), w.dst.eq(w.dst + 1), marking.eq(0)]
            m.d.comb += fin_n.eq(~cmd.conv)
            start(win0 + 1, iy0, ix0)
            with m.If(c.last):
                m.d.sync += [*c.restart(cmd.cv_n0), *ox.step(),
                             npx.eq(npx + cmd.a_skr), ix0.eq(ix0 + cmd.cv_n1)]
                start(npx, iy0, ix0 + cmd.cv_n1)
                with m.If(ox.last):
                    m.d.sync += [*ox.restart(cmd.cv_mw), *oy.step(),
                                 nrow.eq(nrow + cmd.b_sk), npx.eq(nrow + cmd.a_skr),
                                 ix0.eq(cmd.cv_x0), iy0.eq(iy0 + cmd.cv_n2)]
                    start(nrow, iy0 + cmd.cv_n2, cmd.cv_x0)
                    with m.If(oy.last):
                        ndst = dst_blk + cmd.o0.stride
                        m.d.sync += [*oy.restart(cmd.k_len), *blk.step(),
                                     nblk.eq(nblk + cmd.a_sm), nrow.eq(nblk + cmd.b_sk),
                                     npx.eq(nblk + cmd.a_skr), dst_blk.eq(ndst),
                                     w.dst.eq(ndst), iy0.eq(cmd.cv_y0)]
                        start(nblk, cmd.cv_y0, cmd.cv_x0)
                        with m.If(blk.last):
                            m.d.sync += [flushing.eq(1),
                                         wait.eq(Mux(cmd.drop, RL + 4 + DROP_STAGES, RL + 4))]
                            m.d.comb += walking_n.eq(0)

        with m.If(walking):  # one source (issue) or s (marking) word per cycle
            step()
            with m.If(mark):  # issued a conv window: read s at each position
                start(win0, iy0, ix0)
                m.d.sync += [w.addr.eq(win0 + mk_off), marking.eq(1)]
                m.d.comb += fin_n.eq(1)
            with m.If(adv):
                advance()
        with m.If(flushing):  # the last writes are presented
            m.d.sync += wait.eq(wait - 1)
            with m.If(wait == 0):
                m.d.sync += [flushing.eq(0), active.eq(0), done.eq(1)]
        with m.If(self.start & ~active):
            c0 = self.cmd
            m.d.comb += [walking_n.eq(1), fin_n.eq(~c0.conv)]
            m.d.sync += [cmd.eq(c0), active.eq(1), done.eq(0), marking.eq(0),
                         *blk.restart(c0.m_len),
                         *oy.restart(c0.k_len), *ox.restart(c0.cv_mw),
                         *c.restart(c0.cv_n0),
                         npx.eq(c0.a_base + c0.a_skr), nrow.eq(c0.a_base + c0.b_sk),
                         nblk.eq(c0.a_base + c0.a_sm), dst_blk.eq(c0.o0.base),
                         w.dst.eq(c0.o0.base), iy0.eq(c0.cv_y0), ix0.eq(c0.cv_x0),
                         mk_off.eq(c0.o2.base - c0.a_base),
                         w.mk_copy.eq(c0.o3.base - c0.o2.base)]
            start(c0.a_base, c0.cv_y0, c0.cv_x0, c0)
