# amaranth: UnusedElaboratable=no
"""The core's command sequencer (`sequencer.CommandSequencer`) alone, on a program in a simulated
command scratchpad, run twice (a START after the END): the commands are run in order, each one in
`cmd` from its DECODE (`launch`) on; the GEMM starts and the pool start come with their ops'
launches and in no other cycle; after `drain_done` each command waits for the flush that
`Flush` documents for its op and chunk flags; END raises `done`."""
import numpy as np

from hw.engine.compiler import pack_command
from hw.engine.core import command_flush
from hw.engine.memory import READ_LATENCY
from hw.engine.params import (
    CMD_WORD_BITS, OP_END, OP_POOL, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, EngineParams,
)
from hw.engine.program import bus_words
from hw.engine.sequencer import GEMM_COPIES, CommandSequencer
from sim.testing import simulate

P = EngineParams()
FLUSH = command_flush(P)
RUNS = 2


def _program(rng) -> list[dict]:
    """Every op, and the chunk flags that choose another flush, with random loop fields."""
    ops = [OP_SCALE_RELU, OP_SGD, OP_POOL, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SCALE_RELU,
           OP_SCALE_RELU]
    flags = [{}, {}, {}, {}, {}, {"k_hold": 1}, {"p_out": 1}, {"p_in": 1}]
    return [{"op": op, **f, "k_len": int(rng.integers(1, 60000)), "m_len": int(rng.integers(1, 60000)),
             "n_len": int(rng.integers(1, 60000)), "a_base": int(rng.integers(0, 65536)),
             "b_sk": int(rng.integers(0, 65536)), "sc_sf": int(rng.integers(1, P.max_scale))}
            for op, f in zip(ops, flags)] + [{"op": OP_END}]


def _flush(c: dict) -> int:
    """The wait `Flush`'s fields document for the command's last writes: none for a chunk that
    ends no tile, the partial sums' for p_out, the SGD and ReLU-backward pipes', the row-wide
    scaling's for a scale_relu without partial sums (`params.row_scaled`), else the full one."""
    if c.get("k_hold"):
        return FLUSH.hold
    if c.get("p_out"):
        return FLUSH.p_out
    if c["op"] == OP_SGD:
        return FLUSH.sgd
    if c["op"] == OP_RELU_BWD:
        return FLUSH.relu_bwd
    if c["op"] == OP_SCALE_RELU and not c.get("p_in"):
        return FLUSH.rows
    return FLUSH.full


def test_commands_run_in_order_with_their_flushes():
    rng = np.random.default_rng(7)
    prog = _program(rng)
    packed = [pack_command(P, c) for c in prog]
    cmem = [w for v in packed for w in bus_words(v, P.cmd_words)]
    assert all(0 <= w < 1 << CMD_WORD_BITS for w in cmem)
    dut = CommandSequencer(P, FLUSH)
    launches = []  # (cycle, cmd, gemm, pool) at each launch
    stray = []  # cycles with a GEMM or pool start and no launch
    ends, dones = [], []  # drain_done cycles, done cycles

    async def bench(ctx):
        addrs, run_left, cyc = [], None, 0
        for _ in range(RUNS):
            for k in range(4000):
                ctx.set(dut.start, int(k == 2))
                addrs.append(ctx.get(dut.cm_addr))
                a = addrs[-1 - READ_LATENCY] if len(addrs) > READ_LATENCY else 0
                ctx.set(dut.cm_data, cmem[a] if a < len(cmem) else 0)
                ctx.set(dut.drain_done, int(run_left == 0))
                if run_left == 0:
                    ends.append(cyc)
                if run_left is not None:
                    run_left = None if run_left == 0 else run_left - 1
                if ctx.get(dut.launch):
                    launches.append((cyc, ctx.get(dut.cmd.as_value()), ctx.get(dut.gemm), ctx.get(dut.pool)))
                    run_left = int(rng.integers(1, 40)) if len(launches) % len(prog) else None
                elif ctx.get(dut.gemm) or ctx.get(dut.pool):
                    stray.append(cyc)
                await ctx.tick()
                cyc += 1
                if k > 2 and ctx.get(dut.done):  # (held from the run before until START)
                    dones.append(cyc)
                    break

    simulate(dut, bench)

    assert [v for _, v, *_ in launches] == packed * RUNS  # every command, in order, END last
    assert not stray
    for c, (_, _, gemm, pool) in zip(prog * RUNS, launches):
        is_gemm = c["op"] not in (OP_END, OP_POOL)
        assert (gemm, pool) == ((1 << GEMM_COPIES) - 1 if is_gemm else 0, int(c["op"] == OP_POOL))
    assert len(dones) == RUNS and all(d > launches[(r + 1) * len(prog) - 1][0] for r, d in enumerate(dones))
    # drain_done -> the next launch: the command's own flush plus a fixed number of cycles
    flushes = [_flush(c) for c in prog[:-1]] * RUNS
    assert len(ends) == len(flushes) and len(set(flushes)) == 6
    nexts = [cy for k, (cy, *_) in enumerate(launches) if k % len(prog)]
    gaps = [n - e - f for n, e, f in zip(nexts, ends, flushes)]
    assert len(set(gaps)) == 1, gaps
