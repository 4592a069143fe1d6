# amaranth: UnusedElaboratable=no
"""The engine's banked, pipelined memory (hw.engine.memory.BankedMemory) against a plain array:
read latency, bank boundaries, a padded last bank, lane write enables, back-to-back accesses; and
its double-buffered pair (PingPongMemory) against two arrays swapped between runs."""
import numpy as np
import pytest

from amaranth import Cat

from hw.engine.memory import BANK_READ_LATENCY as READ_LATENCY, WRITE_LATENCY, BankedMemory, PingPongMemory, bank_depth
from sim.testing import clocked


def _run(mem: BankedMemory, ops: list[tuple[int, int, int, int]]) -> list[int]:
    """Drive one (rd_addr, wr_addr, wr_data, wr_en) per cycle; return rd_data of every cycle."""
    ports = (mem.rd_addr, mem.wr_addr, mem.wr_data, mem.wr_en)
    return clocked(mem, [list(zip(ports, op)) for op in ops], mem.rd_data)


# clock edge at which the RAM itself reads the address presented in cycle i: i + RAM_READ
# (after the input and bank address registers); a write presented in cycle j lands at j + WRITE_LATENCY
RAM_READ = READ_LATENCY - 3  # the RAM's read, its output register, the bank select register
COLLIDE = RAM_READ - WRITE_LATENCY  # a read in cycle i meets the write of cycle i + COLLIDE


def _masked(word: int, data: int, en: int, lanes: int, lw: int) -> int:
    """`word` with the lanes `en` enables taken from `data` (lanes of `lw` bits)."""
    for k in range(lanes):
        if en >> k & 1:
            mask = ((1 << lw) - 1) << (k * lw)
            word = (word & ~mask) | (data & mask)
    return word


def _model(width: int, depth: int, lane: int | None, ops) -> dict[int, int]:
    """Reference: a read sees the writes that landed at earlier clock edges. Returns {i: word
    read for the address presented in cycle i}."""
    words = [0] * depth
    lanes, lw = (width // lane, lane) if lane else (1, width)
    out = {}
    for i, (ra, _, _, _) in enumerate(ops):
        j = i + COLLIDE - 1  # the last write to land before this read
        if 0 <= j < len(ops):
            _, wa, wd, we = ops[j]
            words[wa] = _masked(words[wa], wd, we, lanes, lw)
        out[i] = words[ra]
    return out


@pytest.mark.parametrize("width,depth,lane", [(128, 2 * 1024 + 600, 16), (64, 3000, 8), (64, 100, None),
                                              (192, 1024, 24), (96, 1500, 24)])
def test_banked_memory_matches_array(width, depth, lane):
    rng = np.random.default_rng(depth)
    mem = BankedMemory(width, depth, lane)
    lanes = width // lane if lane else 1
    bd = bank_depth(lane, depth)
    # addresses at bank edges, the padded tail and random ones; writes and reads interleaved
    hot = [a for a in (0, 1, bd - 1, bd, bd + 1, depth - 1) if a < depth]
    hot += [int(a) for a in rng.integers(0, depth, 40)]
    ops = []
    for a in hot:  # write a random word to every address (all lanes), then random partial writes
        ops.append((0, a, int.from_bytes(rng.bytes(width // 8), "little"), (1 << lanes) - 1))
    assert COLLIDE in (-1, 0)  # (the generator below avoids these two cases)
    while len(ops) < len(hot) + 300:  # no read and write of one word at one RAM edge (engine contract)
        ra, wa = int(rng.choice(hot)), int(rng.choice(hot))
        if ra != (wa if COLLIDE == 0 else ops[-1][1]):
            ops.append((ra, wa, int.from_bytes(rng.bytes(width // 8), "little"),
                        int(rng.integers(0, 1 << lanes))))
    ops.append((next(a for a in hot if a != ops[-1][1]), 0, 0, 0))  # the last write lands
    for a in hot:  # read everything back, back to back, with writes off
        ops.append((a, 0, 0, 0))
    ops += [(0, 0, 0, 0)] * READ_LATENCY
    got = _run(mem, ops)  # got[i]: rd_data after clock edge i
    ram = _model(width, depth, lane, ops)
    checked = [i for i in ram if i + READ_LATENCY - 1 < len(got)]
    readback = range(len(ops) - READ_LATENCY - len(hot), len(ops) - READ_LATENCY)
    assert set(readback) <= set(checked)  # the read-back of every address written, at least
    for i in checked:  # data of cycle i's address: on rd_data in cycle i + READ_LATENCY
        assert got[i + READ_LATENCY - 1] == ram[i], (i, ops[i])


@pytest.mark.parametrize("width,depth,lane", [(192, 2048, 24), (64, 1500, 8), (64, 16, None)])
def test_ping_pong_memory_sides(width, depth, lane):
    """Runs of lane-masked writes, then reads, on both ports at once (the engine's set and the
    host's), `side` swapped between runs; every word read is checked against the set it names."""
    rng = np.random.default_rng(width + depth)
    mem = PingPongMemory(width, depth, lane)
    lanes, lw = (width // lane, lane) if lane else (1, width)
    sets, side, cycles, expect = [[0] * depth, [0] * depth], 0, [], []

    def cycle(**values):
        values = {"e_wr_en": 0, "h_wr_en": 0, **values}
        cycles.append([(mem.side, side), *((getattr(mem, k), v) for k, v in values.items())])

    for _ in range(4):
        addrs = {n: [int(a) for a in rng.choice(depth, 12, replace=False)] for n in "eh"}
        for i in range(12):
            w = {}
            for n, s_ in (("e", side), ("h", 1 - side)):
                a, d = addrs[n][i], int.from_bytes(rng.bytes(width // 8), "little")
                en = (1 << lanes) - 1 if i < 6 else int(rng.integers(0, 1 << lanes))
                sets[s_][a] = _masked(sets[s_][a], d, en, lanes, lw)
                w |= {f"{n}_wr_addr": a, f"{n}_wr_data": d, f"{n}_wr_en": en}
            cycle(**w)
        for _ in range(WRITE_LATENCY + 2):
            cycle()
        for i in range(12):
            ea, ha = addrs["e"][i], addrs["h"][11 - i]
            expect.append((len(cycles), sets[side][ea], sets[1 - side][ha]))
            cycle(e_rd_addr=ea, h_rd_addr=ha)
        for _ in range(mem.read_latency + 2):
            cycle()
        side ^= 1
        for _ in range(3):
            cycle()
    got = clocked(mem, cycles, Cat(mem.e_rd_data, mem.h_rd_data))
    assert len(expect) == 48
    for i, e_word, h_word in expect:
        assert got[i + mem.read_latency - 1] == e_word | h_word << width, i


def test_banked_memory_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiple of the lane width"):
        BankedMemory(100, 64, 16)
    with pytest.raises(ValueError, match="depth"):
        BankedMemory(64, 0, 8)
