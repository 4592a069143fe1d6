# amaranth: UnusedElaboratable=no
"""hw.engine.pipeline.Countdown against the loop it counts: after restart(n) and i steps, `last`
is i == n - 1 and `pen` is i == n - 2, modulo the counter's range (so both are clear once stepped
past the end, until the counter wraps), for every length of its width (n = 1 and 2 start at the
flags, 0 is the full range) and any pattern of steps, restarts and idle cycles; `last_tile_is`
against `last_tile` for every length of 10 bits."""
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.engine.pipeline import Countdown, last_tile, last_tile_is
from sim.testing import clocked

W = 4


class _Loop(Elaboratable):
    def __init__(self) -> None:
        self.restart, self.step, self.length = Signal(), Signal(), Signal(W)
        self.flags = Signal(2)

    def elaborate(self, platform):
        m = Module()
        c = Countdown(W, "c")
        with m.If(self.restart):
            m.d.sync += c.restart(self.length)
        with m.Elif(self.step):
            m.d.sync += c.step()
        m.d.comb += self.flags.eq(Cat(c.last, c.pen))
        return m


def _run(ops) -> list[int]:
    """(last | pen << 1) after each (op, length) cycle."""
    top = _Loop()
    return clocked(top, [[(top.restart, op == "restart"), (top.step, op == "step"), (top.length, n)]
                         for op, n in ops], top.flags)


def _expected(ops) -> list[int]:
    """The flags after each cycle from the loop index i of a loop of n values (`ops` starts with
    a restart: the flags are reset-less)."""
    out, n, i = [], None, 0
    for op, length in ops:
        if op == "restart":
            n, i = length, 0
        elif op == "step":
            i += 1
        left = (n - 1 - i) % (1 << W)
        out.append(int(left == 0) | int(left == 1) << 1)
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, (1 << W) - 1),
       st.lists(st.tuples(st.sampled_from(["restart", "step", "step", "step", "idle"]),
                          st.integers(0, (1 << W) - 1)), max_size=60))
def test_countdown_flags_follow_the_loop(first, ops):
    ops = [("restart", first), *ops]
    seen, want = _run(ops), _expected(ops)
    assert len(seen) == len(ops) and seen == want, list(zip(ops, seen, want))


def test_countdown_reaches_both_flags():
    """A loop of 3 stepped to its end: pen then last rise, once each, and clear past the end."""
    assert _run([("restart", 3), ("step", 0), ("step", 0), ("step", 0)]) == [0, 0b10, 0b01, 0]


def test_last_tile_is_compares_without_a_subtractor():
    length, m = Signal(10), Module()
    pairs = [(lb, c, Signal(name=f"a{lb}_{c}"), Signal(name=f"b{lb}_{c}"))
             for lb in (2, 3, 4) for c in range(3)]
    for lb, c, a, b in pairs:
        m.d.comb += [a.eq(last_tile(length, lb) == c), b.eq(last_tile_is(length, lb, c))]
    seen = []

    async def bench(ctx):
        for v in range(1 << len(length)):
            ctx.set(length, v)
            seen.extend((v, lb, c, ctx.get(a), ctx.get(b)) for lb, c, a, b in pairs)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) == 9 << 10 and sum(a for *_, a, _ in seen) == 3 * (4 + 8 + 16)
    assert [r for r in seen if r[3] != r[4]] == []
