# amaranth: UnusedElaboratable=no
"""The core's operand issue (`issue.OperandIssue`) alone. The cosim runs it only on the compiler's
programs, where the MAC array holds `ready` low in set patterns. Here each GEMM command's beats
must carry the word addresses that `params.command_layout` documents, in its loop order, with the
tile flags: plain GEMMs, and convolutions read through their window (source pixels outside the
image read zero, the address steps by a_skr where a window row ends, m tiles moving along output
rows or not). Under random back-pressure and stalls longer than the skid FIFO, the credit logic
must stop the walk before the FIFO overflows and lose no beat. A delta GEMM through a learning
pool's map (`bpool`) must read each pixel's B tile at its pooling window's word."""
import numpy as np

from hw.engine.compiler import pack_command
from hw.engine.issue import OperandIssue
from hw.engine.memory import READ_LATENCY
from hw.engine.params import EngineParams
from sim.testing import simulate

P = EngineParams()
L = P.lanes
A_TAG = {"ac": 1, "ar": 2}  # lane 2 of an A word: which scratchpad it came from
B_TAG = {"wm": 1, "wt": 2, "dm": 3}  # lane 1 of a B word
B_SEL = {0: "wm", 1: "wt", 2: "dm"}
STALL = 40  # cycles of ready low after each start: longer than the skid FIFO and the read pipe


def _commands(rng) -> list[dict]:
    """Plain GEMMs: loops of one, two and more tiles and beats, and chunks of K that neither start
    nor end their tile; then a forward convolution (m tiles along output rows 5 pixels wide,
    3 x 3 window of 2 words a pixel, padding on every side) and a weight gradient's window
    position (K = the pixels of two 6 x 3 images shifted by a tap, m tiles on one pixel); then
    delta GEMMs through a pool map: 2 x 2 windows of 2 words a pixel on a 5-pixel row starting
    in the window's padding, and 3 x 2 windows of 1 word on a 7-pixel row."""
    shapes = [(1, 1, 1), (L, L, 2), (L + 1, 2 * L, 1), (3 * L, L - 1, 2), (2 * L, 3 * L + 2, 5),
              (1, 2 * L + 1, 3), (L + 3, L + 5, 7)]
    cmds = []
    for i, (m, n, k) in enumerate(shapes):
        cmds.append({"m_len": m, "n_len": n, "k_len": k, **_bases(rng), "a_sel": i % 2,
                     "b_sel": i % 3, "k_cont": int(i % 4 == 2), "k_hold": int(i % 4 == 3)})
    cmds.append({"m_len": 20 * L, "n_len": L, "k_len": 18, **_bases(rng), "a_skr": 77,
                 "conv": 1, "cv_w": 5, "cv_h": 4, "cv_x0": -1, "cv_y0": -1, "cv_mw": 5,
                 "cv_n0": 2, "cv_n1": 3, "cv_n2": 3})
    cmds.append({"m_len": 2 * L, "n_len": L + 1, "k_len": 36, **_bases(rng), "a_skr": 5, "a_sel": 1,
                 "b_sel": 2, "conv": 1, "cv_w": 6, "cv_h": 3, "cv_x0": 1, "cv_y0": -1, "cv_mw": 0,
                 "cv_n0": 1, "cv_n1": 6, "cv_n2": 3})
    for w, rows, n0, kw, kh, x0, y0 in ((5, 3, 2, 2, 2, -1, -1), (7, 4, 1, 3, 2, 0, -1)):
        cmds.append({"m_len": L + 2, "n_len": w * rows * n0 * L, "k_len": 3, **_bases(rng),
                     "b_sel": 2, "bpool": 1, "cv_w": w, "cv_n0": n0, "cv_n1": kw, "cv_n2": kh,
                     "cv_x0": x0, "cv_y0": y0})
    return cmds


def _bases(rng) -> dict:
    return {"a_base": int(rng.integers(0, 4000)), "a_sm": int(rng.integers(1, 300)),
            "a_sk": int(rng.integers(0, 40)), "b_base": int(rng.integers(0, 4000)),
            "b_sk": int(rng.integers(0, 90))}


def _a_walk(c: dict, mt: int) -> list[tuple[int, bool]]:
    """(A word, the pixel lies inside the image) of each beat of a C tile of m tile `mt`."""
    addr, out = c["a_base"] + mt * c["a_sm"], []
    if not c.get("conv"):
        return [(addr + k * c["a_sk"], True) for k in range(c["k_len"])]
    n0, n1, n2, mw = c["cv_n0"], c["cv_n1"], c["cv_n2"], c["cv_mw"]
    mx, my = (c["cv_x0"] + mt % mw, c["cv_y0"] + mt // mw) if mw else (c["cv_x0"], c["cv_y0"])
    for k in range(c["k_len"]):
        px, py = (k // n0) % n1, (k // (n0 * n1)) % n2
        x, y = mx + px, my + py
        out.append((addr, 0 <= x < c["cv_w"] and 0 <= y < c["cv_h"]))
        row_end = k % n0 == n0 - 1 and px == n1 - 1
        addr += c["a_skr"] if row_end else c["a_sk"]
    return out


def _b_tile(c: dict, nt: int) -> int:
    """The first B word of n tile `nt`: the next word, or (bpool) the word of the pixel's pooling
    window, the windows of a row (cv_n0 words each) one after another, then the next row's."""
    if not c.get("bpool"):
        return c["b_base"] + nt
    n0, kw, kh = c["cv_n0"], c["cv_n1"], c["cv_n2"]
    pixel, word = divmod(nt, n0)
    y, x = divmod(pixel, c["cv_w"])
    per_row = (c["cv_w"] - 1 - c["cv_x0"]) // kw + 1  # the first pixel sits at -cv_x0 in its window
    return c["b_base"] + ((y - c["cv_y0"]) // kh * per_row + (x - c["cv_x0"]) // kw) * n0 + word


def _expected(c: dict) -> list[tuple]:
    """(A word, A scratchpad, B word, B scratchpad, first, last) of each beat, as documented; an
    A word outside the image reads zero (no address, no scratchpad)."""
    out = []
    for mt in range(-(-c["m_len"] // L)):
        walk = _a_walk(c, mt)
        for nt in range(-(-c["n_len"] // L)):
            for k, (a, inside) in enumerate(walk):
                out.append((a if inside else 0, ("ar" if c.get("a_sel") else "ac") if inside else None,
                            _b_tile(c, nt) + k * c["b_sk"], B_SEL[c.get("b_sel", 0)],
                            k == 0 and not c.get("k_cont"), k == c["k_len"] - 1 and not c.get("k_hold")))
    return out


def _words(addr: int, bits: int, tag: int, tag_lane: int) -> int:
    """A scratchpad word naming its address (lanes 0-1 for A's 8-bit lanes, lane 0 for B) and
    its scratchpad."""
    return addr | (tag << (bits * tag_lane))


def _run(cmds: list[dict], ready_p: float, seed: int) -> list[list[tuple]]:
    """Each command's beats as the array took them: `ready` low for STALL cycles after the start,
    then high with probability `ready_p`."""
    rng = np.random.default_rng(seed)
    dut = OperandIssue(P)
    got: list[list[tuple]] = []
    a_tags, b_tags = {v: k for k, v in A_TAG.items()}, {v: k for k, v in B_TAG.items()}

    async def bench(ctx):
        hist = []  # (A address, B address) of each cycle
        since = [0]  # cycles since the last start

        async def cycle(start: int = 0):
            ctx.set(dut.start, start)
            since[0] = 0 if start else since[0] + 1
            hist.append((ctx.get(dut.a_addr), ctx.get(dut.b_addr)))
            a, b = hist[-1 - READ_LATENCY] if len(hist) > READ_LATENCY else (0, 0)
            for name, tag in A_TAG.items():
                ctx.set(getattr(dut, name), _words(a, P.act_bits, tag, 2))
            for name, tag in B_TAG.items():
                bits = P.delta_bits if name == "dm" else P.weight_bits
                ctx.set(getattr(dut, name), _words(b, bits, tag, 1))
            ctx.set(dut.o.ready, int(since[0] > STALL and rng.random() < ready_p))
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                beat = ctx.get(dut.o.payload)
                a_lanes = [v & 0xFF for v in beat.a]
                b_lanes = [v & ((1 << P.weight_bits) - 1) for v in beat.b]
                got[-1].append((a_lanes[0] | a_lanes[1] << 8, a_tags.get(a_lanes[2]),
                                b_lanes[0], b_tags.get(b_lanes[1]), bool(beat.first), bool(beat.last)))
            await ctx.tick()

        for c in cmds:
            ctx.set(dut.cmd.as_value(), pack_command(P, c))
            got.append([])
            await cycle(start=0b11)
            want = len(_expected(c))
            for _ in range(40 * want + 100):
                if len(got[-1]) >= want and ctx.get(dut.idle):
                    break
                await cycle()
            for _ in range(READ_LATENCY + 8):  # nothing more comes
                await cycle()

    simulate(dut, bench)
    return got


def test_beats_follow_the_documented_walk_under_back_pressure():
    cmds = _commands(np.random.default_rng(5))
    outside = sum(a is None for c in cmds for _, a, *_ in _expected(c))
    assert 0 < outside < sum(len(_expected(c)) for c in cmds)  # both kinds of A beat occur
    for ready_p, seed in ((1.0, 1), (0.35, 2), (0.6, 3), (0.1, 4)):
        got = _run(cmds, ready_p, seed)
        assert len(got) == len(cmds)
        for c, beats in zip(cmds, got):
            want = _expected(c)
            assert len(want) > 0
            assert beats == want, (ready_p, c)
