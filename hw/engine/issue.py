"""The core's operand issue: loop counters (mt, nt, k) -> A and B word addresses -> the words read
from the scratchpads -> one beat per cycle into the MAC array (K beats per C tile).

The pipeline is free-running (nothing stalls a register): stage 1 is the memory address register,
stage RL the memory output, stage RL + 1 the operand registers, then a skid FIFO into the array
(`hw.stream_unit.skid_output`); a beat is issued only with a credit (fewer than `cap` beats
between issue and the array). Loop-end tests are registered flags, not comparators in front of
the address adders.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.fanout import replicated_reg
from hw.stream_unit import skid_capacity, skid_output

from .array import beat_signature
from .memory import READ_LATENCY
from .params import ADDR_W, CV_BITS, CV_N0_BITS, EngineParams, command_layout
from .pipeline import Countdown, data_reg, delayed, last_tile, last_tile_is


class OperandIssue(wiring.Component):
    """`cmd`'s operand stream: `start` (the GEMM's DECODE cycle, two copies: 0 the counters, 1 the
    issue flag) reloads the loops; `a_addr` / `b_addr` go to the A and B scratchpads, whose words
    come back `READ_LATENCY` cycles later on `ac` / `ar` and `wm` / `wt` / `dm`; `o` is the MAC
    array's input stream (`array.beat_signature`); `idle`: every beat of the command is issued.
    A chunk of K (`cmd.k_cont`, `cmd.k_hold`) neither starts nor ends its C tile."""

    def __init__(self, p: EngineParams) -> None:
        self.p = p
        L = p.lanes
        beat = beat_signature(p)
        super().__init__({
            "cmd": In(command_layout(p)), "start": In(2),
            "a_addr": Out(ADDR_W), "b_addr": Out(ADDR_W),
            "ac": In(L * p.act_bits), "ar": In(L * p.act_bits),
            "wm": In(L * p.weight_bits), "wt": In(L * p.weight_bits), "dm": In(L * p.delta_bits),
            "o": Out(beat), "idle": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p, cmd = self.p, self.cmd
        start, start_issue = self.start[0], self.start[1]

        # down-counters whose "at the end" flags are registers
        k_last, n_last = data_reg(ADDR_W, name="k_last"), data_reg(ADDR_W, name="n_last")
        k_rem, nt_rem, mt_rem = (data_reg(ADDR_W, name=n) for n in ("k_rem", "nt_rem", "mt_rem"))
        k_end, nt_end, mt_end = data_reg(), data_reg(), data_reg()
        k_one, n_one = data_reg(), data_reg()  # a reloaded loop of length 1 is at its end at once
        k_pen, nt_pen = data_reg(), data_reg()  # k_rem == 1, nt_rem == 1, as registers
        k_two, n_two = data_reg(), data_reg()  # ... of a reloaded loop
        k_first = data_reg()
        issuing = Signal()
        a_tile, b_tile = data_reg(ADDR_W, name="a_tile"), data_reg(ADDR_W, name="b_tile")
        # Operand word addresses live in registers (the adders sit before them, not between a
        # register and the memories): a = a_tile + k*a_sk, b = b_tile + k*b_sk.
        a_addr, b_addr = data_reg(ADDR_W), data_reg(ADDR_W)
        m.d.comb += [self.a_addr.eq(a_addr), self.b_addr.eq(b_addr)]
        LB = p.lane_bits
        m_last_c, n_last_c = last_tile(cmd.m_len, LB), last_tile(cmd.n_len, LB)
        # the loops' length flags from compares of the lengths (no subtractor in front of them)
        k_one_c, k_two_c = cmd.k_len == 1, cmd.k_len == 2
        n_one_c, n_two_c = last_tile_is(cmd.n_len, LB, 0), last_tile_is(cmd.n_len, LB, 1)
        with m.If(start):
            m.d.sync += [k_last.eq(cmd.k_len - 1), n_last.eq(n_last_c),
                         k_rem.eq(cmd.k_len - 1), nt_rem.eq(n_last_c),
                         mt_rem.eq(m_last_c), mt_end.eq(last_tile_is(cmd.m_len, LB, 0)),
                         k_one.eq(k_one_c), n_one.eq(n_one_c),
                         k_pen.eq(k_two_c), nt_pen.eq(n_two_c),
                         k_two.eq(k_two_c), n_two.eq(n_two_c),
                         k_first.eq(1), a_tile.eq(cmd.a_base), a_addr.eq(cmd.a_base),
                         b_tile.eq(cmd.b_base), b_addr.eq(cmd.b_base)]

        # the command a cycle late, registered beside the walk's adders (the sequencer's command
        # register feeds every unit across the die): it changes only at a DECODE, and the walk
        # reads it only after its start cycle, which reads the port
        run = data_reg(command_layout(p), name="issue_cmd")
        m.d.sync += run.eq(cmd)

        # issue = issuing & (a credit), decided a cycle ahead from both next values, so the ~150
        # issue-side enables hang off a register
        issue, issue_n = Signal(), Signal()
        # The loop-end flags' next values, so that `issue`, `k_end` and "k and n at their ends"
        # are registered once per group of the ~100 address and counter bits they select
        # (hw.fanout): 0 the counters, 1 the A addresses, 2 the B addresses; the window and
        # pool-map counters take their cases (a beat ends a C tile, and the n loop too, or not)
        # as registers of their own, so that no mux waits on a decode of k_end & nt_end.
        k_end_n, nt_end_n = Signal(), Signal()
        m.d.comb += [k_end_n.eq(k_end), nt_end_n.eq(nt_end)]
        with m.If(start):
            m.d.comb += [k_end_n.eq(k_one_c), nt_end_n.eq(n_one_c)]
        with m.If(issue):
            m.d.comb += k_end_n.eq(Mux(k_end, k_one, k_pen))
            with m.If(k_end):
                m.d.comb += nt_end_n.eq(Mux(nt_end, n_one, nt_pen))
        m.d.sync += [k_end.eq(k_end_n), nt_end.eq(nt_end_n)]
        issue_g = replicated_reg(m, platform, issue_n, 3, "issue")
        k_end_g = replicated_reg(m, platform, k_end_n, 3, "k_end")
        kn_end_g = replicated_reg(m, platform, k_end_n & nt_end_n, 3, "kn_end")
        tile, = replicated_reg(m, platform, issue_n & k_end_n, 1, "tile")
        kn_tile = replicated_reg(m, platform, issue_n & k_end_n & nt_end_n, 2, "kn_tile")
        k_step, = replicated_reg(m, platform, issue_n & ~k_end_n, 1, "k_step")
        n_step, = replicated_reg(m, platform, issue_n & k_end_n & ~nt_end_n, 1, "n_step")
        with m.If(issue_g[0]):
            m.d.sync += [k_first.eq(k_end_g[0]), k_rem.eq(k_rem - 1), k_pen.eq(k_rem == 2)]
            with m.If(k_end_g[0]):
                m.d.sync += [k_rem.eq(k_last), k_pen.eq(k_two)]
                with m.If(kn_end_g[0]):
                    m.d.sync += [nt_rem.eq(n_last), nt_pen.eq(n_two), mt_rem.eq(mt_rem - 1),
                                 mt_end.eq(mt_rem == 1)]
                with m.Else():
                    m.d.sync += [nt_rem.eq(nt_rem - 1), nt_pen.eq(nt_rem == 2)]
        inb, row_end = self._window(m, run, start, tile, kn_tile[0], k_step)
        b_next = self._pool_map(m, run, b_tile, start, kn_tile[1], n_step)
        with m.If(issue_g[1]):
            # both steps added, the row end choosing between the sums (not in front of the adder)
            m.d.sync += a_addr.eq(Mux(row_end, a_addr + run.a_skr, a_addr + run.a_sk))
            with m.If(k_end_g[1]):
                with m.If(kn_end_g[1]):
                    m.d.sync += [a_tile.eq(a_tile + run.a_sm), a_addr.eq(a_tile + run.a_sm)]
                with m.Else():
                    m.d.sync += a_addr.eq(a_tile)
        with m.If(issue_g[2]):
            m.d.sync += b_addr.eq(b_addr + run.b_sk)
            with m.If(k_end_g[2]):
                with m.If(kn_end_g[2]):
                    m.d.sync += [b_tile.eq(run.b_base), b_addr.eq(run.b_base)]
                with m.Else():
                    m.d.sync += [b_tile.eq(b_next), b_addr.eq(b_next)]

        self._beats(m, issue, issue_n, issuing, k_first, k_end, nt_end, mt_end, inb, start_issue)
        return m

    def _beats(self, m: Module, issue, issue_n, issuing, k_first, k_end, nt_end, mt_end, inb,
               start_issue) -> None:
        """The beats through the memory read to the array (`o`), and `issue_n`: the next
        issue, from the walk and the credits of the beats in flight."""
        cmd, RL = self.cmd, READ_LATENCY
        # beat flags through the memory read: valid, first and last of a C tile's K beats
        v = delayed(m, issue, RL + 1, "v", False)
        first = delayed(m, k_first, RL + 1, "f")
        last = delayed(m, k_end, RL + 1, "l")

        beat = self._operands(m, delayed(m, inb, RL, "inb"))
        m.d.comb += [beat.first.eq(first & ~cmd.k_cont), beat.last.eq(last & ~cmd.k_hold)]
        cap = skid_capacity(RL + 2)
        skid_output(m, v, beat.as_value(), self.o, cap)

        # a beat the array accepted frees its credit a cycle later, so the array's ready does not
        # reach `issue` and its copies through the credit adder: one more beat in flight at most,
        # which the skid FIFO holds (cap >= RL + 3)
        assert cap >= RL + 3
        took = delayed(m, self.o.valid & self.o.ready, 1, "mac_took", False)
        in_flight = Signal(range(cap + 1))
        in_next = Signal.like(in_flight)
        issuing_nx = Signal()
        m.d.comb += [in_next.eq(in_flight + issue - took),
                     issuing_nx.eq(Mux(start_issue, 1, issuing & ~(issue & k_end & nt_end & mt_end)))]
        m.d.comb += issue_n.eq(issuing_nx & ~in_next[-1])  # cap is a power of two: top bit = full
        m.d.sync += [in_flight.eq(in_next), issuing.eq(issuing_nx), issue.eq(issue_n)]
        m.d.comb += self.idle.eq(~issuing)

    def _window(self, m: Module, run, start, tile, kn_tile, k_step):
        """A conv command's source pixel (`params.command_layout`): (sx, sy) is the pixel of the
        beat at the A address register, (mx, my) the first pixel of the m tile's window.
        Returns (the pixel lies inside the image, the beat ends a row of the window). `run`:
        the command after its start cycle; the beat issued ends a C tile (`tile`), and its n
        loop (`kn_tile`), or not (`k_step`)."""
        cmd = self.cmd
        PW = CV_BITS + 3  # signed: window offsets below zero, sums above the image
        sx, sy, mx, my = (data_reg(signed(PW), name=n) for n in ("sx", "sy", "mx", "my"))
        c0, c1, c2 = Countdown(CV_N0_BITS, "c0"), Countdown(CV_BITS, "c1"), Countdown(CV_BITS, "c2")
        px = data_reg(CV_BITS)  # m tiles left in the output row

        def window(c):
            return [*c0.restart(c.cv_n0), *c1.restart(c.cv_n1), *c2.restart(c.cv_n2)]

        mw = data_reg(name="win_mw")  # run.cv_mw != 0, as a register
        with m.If(start):
            m.d.sync += [sx.eq(cmd.cv_x0), sy.eq(cmd.cv_y0), mx.eq(cmd.cv_x0), my.eq(cmd.cv_y0),
                         *window(cmd), px.eq(cmd.cv_mw - 1), mw.eq(cmd.cv_mw != 0)]
        row_end = Signal()
        m.d.comb += row_end.eq(run.conv & c0.last & c1.last)
        with m.If(tile):  # the next C tile: its window from the start
            m.d.sync += [*window(run), sx.eq(mx), sy.eq(my)]
            with m.If(kn_tile & mw):  # the next m tile is the next output pixel
                with m.If(px == 0):
                    m.d.sync += [px.eq(run.cv_mw - 1), mx.eq(run.cv_x0), my.eq(my + 1),
                                 sx.eq(run.cv_x0), sy.eq(my + 1)]
                with m.Else():
                    m.d.sync += [px.eq(px - 1), mx.eq(mx + 1), sx.eq(mx + 1)]
        with m.Elif(k_step & ~c0.last):
            m.d.sync += c0.step()
        with m.Elif(k_step):
            m.d.sync += [*c0.restart(run.cv_n0), sx.eq(sx + 1), *c1.step()]
            with m.If(c1.last):
                m.d.sync += [*c1.restart(run.cv_n1), sx.eq(mx), sy.eq(sy + 1), *c2.step()]
                with m.If(c2.last):
                    m.d.sync += [*c2.restart(run.cv_n2), sy.eq(my)]
        inb = Signal()
        m.d.comb += inb.eq(~run.conv | ((sx >= 0) & (sx < run.cv_w) & (sy >= 0) & (sy < run.cv_h)))
        return inb, row_end

    def _pool_map(self, m: Module, run, b_tile, start, again, advance):
        """The B tile of the next n tile: the next word, or (`cmd.bpool`) the word of the next
        pixel's pooling window (`params.command_layout`); back to the first n tile at `start`
        (from the port) and `again` (from `run`, the command after its start cycle), `advance`
        when the n tile ends. The walk's tests are registered flags and pix + cw a register, so
        that the choice is muxes behind registers (it feeds the B address)."""
        # words of the pixel and pixels of the row left, and the pixel's place in its window
        # (a window starts in its padding: -cv_x0, -cv_y0)
        ct, x = Countdown(CV_N0_BITS, "ct"), Countdown(CV_BITS, "x")
        wx, wy = Countdown(CV_BITS, "wx"), Countdown(CV_BITS, "wy")
        pix, row = data_reg(ADDR_W), data_reg(ADDR_W)  # the window's and its row's first B tile
        pix_cw = data_reg(ADDR_W)  # pix + cw

        def first_pixel(c):  # a row's first pixel: the window's padding
            return wx.restart(c.cv_n1 + c.cv_x0)

        def set_pix(v, c):
            return [pix.eq(v), pix_cw.eq(v + c.cv_n0)]

        def restart(c):
            return [*ct.restart(c.cv_n0), *x.restart(c.cv_w), *first_pixel(c),
                    *wy.restart(c.cv_n2 + c.cv_y0), *set_pix(c.b_base, c), row.eq(c.b_base)]

        b_next = Signal(ADDR_W)
        with m.If(~run.bpool | ~ct.last):
            m.d.comb += b_next.eq(b_tile + 1)
        with m.Elif(~x.last):
            m.d.comb += b_next.eq(Mux(wx.last, pix_cw, pix))
        with m.Else():
            m.d.comb += b_next.eq(Mux(wy.last, pix_cw, row))
        with m.If(start):
            m.d.sync += restart(self.cmd)
        with m.Elif(again):
            m.d.sync += restart(run)
        with m.Elif(advance & ~ct.last):
            m.d.sync += ct.step()
        with m.Elif(advance):
            m.d.sync += ct.restart(run.cv_n0)
            with m.If(~x.last):
                m.d.sync += [*x.step(), *wx.step()]
                with m.If(wx.last):
                    m.d.sync += [*wx.restart(run.cv_n1), *set_pix(pix_cw, run)]
            with m.Else():
                m.d.sync += [*x.restart(run.cv_w), *first_pixel(run), *wy.step()]
                with m.If(wy.last):
                    m.d.sync += [*wy.restart(run.cv_n2), *set_pix(pix_cw, run), row.eq(pix_cw)]
                with m.Else():
                    m.d.sync += set_pix(row, run)
        return b_next

    def _operands(self, m: Module, inb):
        """The beat's A and B lanes from the words the scratchpads return, through the operand
        registers (the source select and sign extension get a stage of their own; an A word
        outside a conv window's image reads zero: `inb`, aligned with the word)."""
        p, cmd, L = self.p, self.cmd, self.p.lanes
        AB, WB, DB = p.act_bits, p.weight_bits, p.delta_bits
        a_q = data_reg(AB * L)
        # a_sel is constant during a command
        m.d.sync += a_q.eq(Mux(inb, Mux(cmd.a_sel, self.ar, self.ac), 0))
        # Cat of signed WB-bit slices would not sign-extend: widen each lane explicitly.
        b_q = data_reg(data.ArrayLayout(signed(DB), L))
        with m.Switch(cmd.b_sel):
            with m.Case(0):
                m.d.sync += [b_q[j].eq(self.wm.word_select(j, WB).as_signed()) for j in range(L)]
            with m.Case(1):
                m.d.sync += [b_q[j].eq(self.wt.word_select(j, WB).as_signed()) for j in range(L)]
            with m.Default():
                m.d.sync += [b_q[j].eq(self.dm.word_select(j, DB).as_signed()) for j in range(L)]
        beat = Signal(self.o.payload.shape())
        m.d.comb += [beat.a[i].eq(a_q.word_select(i, AB).as_signed()) for i in range(L)]
        m.d.comb += [beat.b[j].eq(b_q[j]) for j in range(L)]
        return beat
