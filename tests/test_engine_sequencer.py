# amaranth: UnusedElaboratable=no
"""The core's command sequencer (`sequencer.CommandSequencer`) alone, on a program in a simulated
command scratchpad: the commands are run in order, each one in `cmd` from its DECODE (`launch`) on
and in `incoming` in the cycle before (which the operand issue reads its loop lengths from); the
GEMM and pool starts go with their ops; each command waits for the flush of its own op and chunk
flags after `drain_done`; END raises `done`."""
import numpy as np
from amaranth.sim import Simulator

from hw.engine.compiler import pack_command
from hw.engine.core import command_flush
from hw.engine.memory import READ_LATENCY
from hw.engine.params import (
    CMD_WORD_BITS, OP_END, OP_POOL, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, EngineParams,
)
from hw.engine.program import bus_words
from hw.engine.sequencer import GEMM_COPIES, CommandSequencer

P = EngineParams()
FLUSH = command_flush(P)


def _program(rng) -> list[dict]:
    """Every op, and the chunk flags that choose another flush, with random loop fields."""
    ops = [OP_SCALE_RELU, OP_SGD, OP_POOL, OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SCALE_RELU,
           OP_SCALE_RELU]
    flags = [{}, {}, {}, {}, {}, {"k_hold": 1}, {"p_out": 1}, {"p_in": 1}]
    return [{"op": op, **f, "k_len": int(rng.integers(1, 60000)), "m_len": int(rng.integers(1, 60000)),
             "n_len": int(rng.integers(1, 60000)), "a_base": int(rng.integers(0, 65536)),
             "b_sk": int(rng.integers(0, 65536)), "sc_sf": int(rng.integers(1, P.max_scale))}
            for op, f in zip(ops, flags)] + [{"op": OP_END}]


def test_commands_run_in_order_with_their_flushes():
    rng = np.random.default_rng(7)
    prog = _program(rng)
    packed = [pack_command(P, c) for c in prog]
    cmem = [w for v in packed for w in bus_words(v, P.cmd_words)]
    assert all(0 <= w < 1 << CMD_WORD_BITS for w in cmem)
    dut = CommandSequencer(P, FLUSH)
    launches = []  # (cycle, cmd, incoming the cycle before, gemm, pool)
    ends = []  # drain_done cycles
    done_at = []

    async def bench(ctx):
        addrs, prev_incoming, run_left = [], None, None
        for cyc in range(4000):
            ctx.set(dut.start, int(cyc == 2))
            addrs.append(ctx.get(dut.cm_addr))
            a = addrs[-1 - READ_LATENCY] if len(addrs) > READ_LATENCY else 0
            ctx.set(dut.cm_data, cmem[a] if a < len(cmem) else 0)
            done_now = run_left == 0
            ctx.set(dut.drain_done, int(done_now))
            if done_now:
                ends.append(cyc)
                run_left = None
            elif run_left is not None:
                run_left -= 1
            if ctx.get(dut.launch):
                launches.append((cyc, ctx.get(dut.cmd.as_value()), prev_incoming,
                                 ctx.get(dut.gemm), ctx.get(dut.pool)))
                run_left = int(rng.integers(1, 40)) if len(launches) < len(prog) else None
            if ctx.get(dut.done):
                done_at.append(cyc)
                break
            prev_incoming = ctx.get(dut.incoming.as_value())
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    assert [v for _, v, *_ in launches] == packed  # every command, in order, END last
    assert all(inc == v for _, v, inc, *_ in launches)
    for c, (_, _, _, gemm, pool) in zip(prog, launches):
        is_gemm = c["op"] not in (OP_END, OP_POOL)
        assert (gemm, pool) == ((1 << GEMM_COPIES) - 1 if is_gemm else 0, int(c["op"] == OP_POOL))
    assert done_at and done_at[0] > launches[-1][0]
    # drain_done -> the next launch: the command's own flush plus a fixed number of cycles
    assert len(ends) == len(prog) - 1
    flushes = [FLUSH.of(c.get("k_hold", 0), c.get("p_in", 0), c.get("p_out", 0), c["op"]) for c in prog[:-1]]
    assert len(set(flushes)) >= 4
    gaps = [launches[i + 1][0] - ends[i] - f for i, f in enumerate(flushes)]
    assert len(set(gaps)) == 1, gaps
