# amaranth: UnusedElaboratable=no
"""The core's operand issue (`issue.OperandIssue`) alone. The cosim runs it only on the compiler's
programs, where the MAC array holds `ready` low in set patterns. Here each GEMM command's beats
must carry the word addresses that `params.command_layout` documents, in its loop order, with the
tile flags, under random back-pressure (the credit logic filling the skid FIFO to its top). The
loop lengths are taken from `cmd_next` only in the cycle before `start` (the command the sequencer
loads then); in every other cycle `cmd_next` holds noise."""
import numpy as np
from amaranth.sim import Simulator

from hw.engine.compiler import pack_command
from hw.engine.issue import OperandIssue
from hw.engine.memory import READ_LATENCY
from hw.engine.params import EngineParams, command_layout

P = EngineParams()
L = P.lanes
A_TAG = {"ac": 1, "ar": 2}  # lane 2 of an A word: which scratchpad it came from
B_TAG = {"wm": 1, "wt": 2, "dm": 3}  # lane 1 of a B word
B_SEL = {0: "wm", 1: "wt", 2: "dm"}


def _commands(rng) -> list[dict]:
    """Plain GEMMs (no window, no pool map): loops of one, two and more tiles and beats, and
    chunks of K that neither start nor end their tile."""
    shapes = [(1, 1, 1), (L, L, 2), (L + 1, 2 * L, 1), (3 * L, L - 1, 2), (2 * L, 3 * L + 2, 5),
              (1, 2 * L + 1, 3), (L + 3, L + 5, 7)]
    cmds = []
    for i, (m, n, k) in enumerate(shapes):
        cmds.append({"m_len": m, "n_len": n, "k_len": k,
                     "a_base": int(rng.integers(0, 4000)), "a_sm": int(rng.integers(1, 300)),
                     "a_sk": int(rng.integers(0, 40)), "b_base": int(rng.integers(0, 4000)),
                     "b_sk": int(rng.integers(0, 90)), "a_sel": i % 2, "b_sel": i % 3,
                     "k_cont": int(i % 4 == 2), "k_hold": int(i % 4 == 3)})
    return cmds


def _expected(c: dict) -> list[tuple]:
    """(A word, A scratchpad, B word, B scratchpad, first, last) of each beat, as documented."""
    out = []
    for mt in range(-(-c["m_len"] // L)):
        for nt in range(-(-c["n_len"] // L)):
            for k in range(c["k_len"]):
                out.append((c["a_base"] + mt * c["a_sm"] + k * c["a_sk"], "ar" if c["a_sel"] else "ac",
                            c["b_base"] + k * c["b_sk"] + nt, B_SEL[c["b_sel"]],
                            k == 0 and not c["k_cont"], k == c["k_len"] - 1 and not c["k_hold"]))
    return out


def _words(addr: int, bits: int, tag: int, tag_lane: int) -> int:
    """A scratchpad word naming its address (lanes 0-1 for A's 8-bit lanes, lane 0 for B) and
    its scratchpad."""
    return addr | (tag << (bits * tag_lane))


def _run(cmds: list[dict], ready_p: float, seed: int) -> list[list[tuple]]:
    """Each command's beats as the array took them, `ready` high with probability `ready_p`."""
    rng = np.random.default_rng(seed)
    dut = OperandIssue(P)
    width = command_layout(P).size
    got: list[list[tuple]] = []

    async def bench(ctx):
        hist = []  # (A address, B address) of each cycle

        async def cycle(start: int = 0, nxt: int | None = None):
            ctx.set(dut.start, start)
            noise = int.from_bytes(rng.bytes(-(-width // 8)), "little") % (1 << width)
            ctx.set(dut.cmd_next.as_value(), noise if nxt is None else nxt)
            hist.append((ctx.get(dut.a_addr), ctx.get(dut.b_addr)))
            a, b = hist[-1 - READ_LATENCY] if len(hist) > READ_LATENCY else (0, 0)
            for name, tag in A_TAG.items():
                ctx.set(getattr(dut, name), _words(a, P.act_bits, tag, 2))
            for name, tag in B_TAG.items():
                bits = P.delta_bits if name == "dm" else P.weight_bits
                ctx.set(getattr(dut, name), _words(b, bits, tag, 1))
            ctx.set(dut.o.ready, int(rng.random() < ready_p))
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                beat = ctx.get(dut.o.payload)
                a_lanes = [v & 0xFF for v in beat.a]
                b_lanes = [v & ((1 << P.weight_bits) - 1) for v in beat.b]
                got[-1].append((a_lanes[0] | a_lanes[1] << 8, {v: k for k, v in A_TAG.items()}.get(a_lanes[2]),
                                b_lanes[0], {v: k for k, v in B_TAG.items()}.get(b_lanes[1]),
                                bool(beat.first), bool(beat.last)))
            await ctx.tick()

        for c in cmds:
            packed = pack_command(P, c)
            await cycle(nxt=packed)  # the sequencer's LOAD cycle: the command being loaded
            ctx.set(dut.cmd.as_value(), packed)
            got.append([])
            await cycle(start=0b11)  # DECODE
            want = len(_expected(c))
            for _ in range(40 * want + 100):
                if len(got[-1]) >= want and ctx.get(dut.idle):
                    break
                await cycle()
            for _ in range(READ_LATENCY + 8):  # nothing more comes
                await cycle()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_beats_follow_the_documented_walk_under_back_pressure():
    cmds = _commands(np.random.default_rng(5))
    for ready_p, seed in ((1.0, 1), (0.35, 2), (0.6, 3), (0.1, 4)):
        got = _run(cmds, ready_p, seed)
        assert len(got) == len(cmds)
        for c, beats in zip(cmds, got):
            want = _expected(c)
            assert len(want) > 0
            assert beats == want, (ready_p, c)
