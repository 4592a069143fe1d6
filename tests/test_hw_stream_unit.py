# amaranth: UnusedElaboratable=no
"""hw.stream_unit: PipelinedUnit with always_ready=True (the bare pipe the training engine uses),
and CreditFIFO against the FIFO it stands in for.

It must be cycle-for-cycle the unit with a consumer that is always ready (same valid sequence,
same outputs, same latency), bit-exact against the golden model, and carry no skid FIFO. The
back-pressured variant is covered by the cocotb benches (tests/test_hw_*.py).
"""
import numpy as np
import pytest
from amaranth import Cat, Elaboratable, Fragment, Module, Mux, Signal, Value
from amaranth.lib.fifo import SyncFIFOBuffered
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hw.relu import NitroReluForward
from hw.scaling import NitroScaling
from hw.stream_unit import CreditFIFO
from model.layers import nitro_relu_forward, nitro_scaling
from sim.testing import clocked, simulate

rng = np.random.default_rng(5)
CORNERS_32 = [-(1 << 31), -(1 << 31) + 1, -1, 0, 1, (1 << 31) - 1, 127 * 784 * 256, -127 * 784 * 256 - 1]
CASES = {
    "relu_fwd": (lambda **kw: NitroReluForward(4, **kw), np.arange(-128, 128),
                 lambda x: nitro_relu_forward(x, 4)),
    "scaling": (lambda **kw: NitroScaling(784 * 256, **kw),
                np.concatenate([CORNERS_32, rng.integers(-(1 << 31), 1 << 31, 200)]),
                lambda x: nitro_scaling(x, 784 * 256)),
}


def _run(unit, xs: np.ndarray, valid: np.ndarray) -> list[int]:
    """Cat(o.valid, o.payload) after every clock edge; input k is presented while valid[k]."""
    it = iter(xs.tolist())
    cycles = []
    for v in valid:
        ins = [(unit.i.valid, int(v))] + ([(unit.i.payload, next(it))] if v else [])
        if not unit.o.signature.always_ready:
            ins.append((unit.o.ready, 1))
        cycles.append(ins)
    cycles += [[(unit.i.valid, 0)]] * (unit.latency + 2)
    return clocked(unit, cycles, Cat(unit.o.valid, unit.o.payload))


@pytest.mark.parametrize("name", CASES)
def test_always_ready_is_the_unit_with_a_ready_consumer(name):
    make, xs, golden = CASES[name]
    valid = np.ones(len(xs) + 40, dtype=bool)
    valid[rng.choice(len(valid), 40, replace=False)] = False  # bubbles
    bare, full = make(always_ready=True), make()
    assert bare.i.signature.always_ready and bare.o.signature.always_ready
    seen = _run(bare, xs, valid)
    assert seen == _run(full, xs, valid)
    width = len(Value.cast(bare.o.payload))
    out_v = [s & 1 for s in seen]
    got = [s >> 1 for s in seen if s & 1]
    got = [g - (1 << width) if g >> (width - 1) else g for g in got]
    assert got == golden(xs).tolist()
    # the first output leaves `latency` edges after the first transfer
    assert out_v.index(1) == int(np.argmax(valid)) + bare.latency - 1


def _submodules(unit) -> list[str]:
    return [name for _, name, _ in Fragment.get(unit, None).subfragments]


def test_always_ready_has_no_skid_fifo():
    assert "skid" in _submodules(NitroReluForward(4))
    assert "skid" not in _submodules(NitroReluForward(4, always_ready=True))


def test_always_ready_must_be_a_bool():
    with pytest.raises(TypeError, match="always_ready"):
        NitroReluForward(4, always_ready=1)


class _FifoPair(Elaboratable):
    """CreditFIFO(depth) beside the amaranth FIFO of the same capacity and timing
    (SyncFIFOBuffered(depth + 1)), on the same inputs."""

    def __init__(self, width: int, depth: int, banks: int) -> None:
        self.credit = CreditFIFO(width, depth, banks)
        self.ref = SyncFIFOBuffered(width=width, depth=depth + 1)
        self.capacity = depth + 1
        self.w_en, self.w_data, self.r_en = Signal(), Signal(width), Signal()
        self.seen = Signal(2 * (width + 1))

    def elaborate(self, platform):
        m = Module()
        m.submodules.credit, m.submodules.ref = self.credit, self.ref
        for f in (self.credit, self.ref):
            m.d.comb += [f.w_en.eq(self.w_en), f.w_data.eq(self.w_data), f.r_en.eq(self.r_en)]
        # the data counts only while it is valid
        m.d.comb += self.seen.eq(Cat(*(Cat(f.r_rdy, Mux(f.r_rdy, f.r_data, 0))
                                       for f in (self.credit, self.ref))))
        return m


def _run_pair(pair: _FifoPair, ops) -> tuple[list[int], int, int]:
    """Each (write, read, data) op one cycle; a write only while the writer holds a credit (a
    word read frees one). Returns `seen` after every edge, the writes made and the cycles in
    which the credit FIFO's memory gave up a word (`popped`)."""

    out, writes, pops = [], 0, 0

    async def bench(ctx):
        nonlocal writes, pops
        held = 0
        for w, r, d in ops:
            w = w and held < pair.capacity
            ctx.set(pair.w_en, int(w)), ctx.set(pair.w_data, d), ctx.set(pair.r_en, int(r))
            read = r and ctx.get(pair.ref.r_rdy)
            pops += ctx.get(pair.credit.popped)
            await ctx.tick()
            held += w - read
            writes += w
            out.append(ctx.get(pair.seen))

    simulate(pair, bench)
    return out, writes, pops


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(8, 2, 1), (12, 4, 3), (16, 16, 2), (16, 16, 4)]),
       st.lists(st.tuples(st.sampled_from([True, True, False]), st.booleans(), st.integers(0, 255)),
                min_size=1, max_size=80))
def test_credit_fifo_matches_amaranth_fifo(shape, ops):
    """Any writes a credit-holding writer may make (never past the capacity) and any reads:
    r_rdy and the valid r_data equal the amaranth FIFO's after every edge."""
    pair = _FifoPair(*shape)
    seen, writes, _ = _run_pair(pair, ops)
    assume(writes)  # an example that wrote nothing compares two empty FIFOs
    half = 1 << (shape[0] + 1)
    assert [s % half for s in seen] == [s // half for s in seen]


def test_credit_fifo_fills_and_drains():
    """Written to capacity with no reads, then drained: every word out in order, each FIFO's
    r_rdy the same throughout; every word leaves the memory once (`popped`)."""
    pair = _FifoPair(8, 4, 2)
    ops = [(True, False, 10 + k) for k in range(8)] + [(False, True, 0)] * 8
    seen, writes, pops = _run_pair(pair, ops)
    half = 1 << 9
    assert writes == pops == pair.capacity
    assert [s % half for s in seen] == [s // half for s in seen]
    words = [(s >> 1) & 0xFF for s in seen[7:] if s & 1]  # seen[7]: before the first read
    assert words == list(range(10, 10 + pair.capacity))


def test_credit_fifo_rounds_its_depth_up():
    """A depth that is not a power of two gets the next one; one word deep has no address."""
    assert CreditFIFO(8, 48).depth == 64 and CreditFIFO(8, 2).depth == 2
    with pytest.raises(ValueError, match="depth 1 < 2"):
        CreditFIFO(8, 1)
    with pytest.raises(ValueError, match="not in 0 equal banks"):
        CreditFIFO(8, 4, banks=0)
