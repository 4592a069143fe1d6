# amaranth: UnusedElaboratable=no
"""The LOAD and STORE units (`transfer.LoadUnit`, `transfer.StoreUnit`) alone, against the
transfer semantics their module documents: one DMA command per row (ext + r * stride, row_words
words of `program.beats_per_word` beats), and word c of row r at scratchpad address spad + r *
row_words + c, or spad + c * rows + r `across`; a word's beats lane 0 first. Scratchpads of one,
two and three beats a word, empty transfers, random ready on the DMA command and data channels
and random gaps in the loaded beats; `busy` falls after each transfer."""
import numpy as np

from hw.engine.params import SEL_AMEM_R, SEL_CTR, SEL_DMEM, SEL_WMEM, EngineParams
from hw.engine.program import beats_per_word, scratch_word_bits
from hw.engine.scratchpads import HOST_READ_LATENCY
from hw.engine.transfer import LoadUnit, StoreUnit
from sim.testing import simulate

P = EngineParams()
BB = P.bus_bits
TRANSFERS = [  # (sel, spad, rows, row_words, ext, stride, across)
    (SEL_AMEM_R, 5, 3, 4, 0x1000, 0x100, 0), (SEL_WMEM, 40, 2, 3, 0x8000, 0x40, 1),
    (SEL_DMEM, 100, 4, 2, 0x20000, 0x180, 1), (SEL_DMEM, 7, 0, 5, 0x3000, 0x10, 0),
    (SEL_WMEM, 9, 3, 0, 0x3000, 0x10, 0), (SEL_AMEM_R, 300, 1, 17, 0x4000, 0x0, 0),
    (SEL_CTR, 0, 2, 3, 0x5000, 0x20, 0), (SEL_DMEM, 500, 2, 24, 0x6000, 0x200, 0),
]
FIELDS = ("sel", "spad", "rows", "row_words", "ext", "stride", "across")


def _words(t: tuple) -> list[tuple[int, int]]:
    """(row, scratchpad address) of each word, in bus order."""
    sel, spad, rows, rw, *_, across = t
    return [(r, spad + (c * rows + r if across else r * rw + c)) for r in range(rows) for c in range(rw)]


def _dma_commands(t: tuple) -> list[tuple[int, int]]:
    sel, _, rows, rw, ext, stride, _ = t
    return [(ext + r * stride, rw * beats_per_word(P, sel)) for r in range(rows)] if rw else []


async def _send(ctx, dut, t: tuple, step) -> None:
    """Offer transfer `t` on dut.cmd until it is taken; `step` runs each cycle."""
    for name, v in zip(FIELDS, t):
        ctx.set(getattr(dut.cmd.payload, name), v)
    ctx.set(dut.cmd.valid, 1)
    while True:
        taken = ctx.get(dut.cmd.ready)
        await step()
        if taken:
            break
    ctx.set(dut.cmd.valid, 0)


def test_load_unit_writes_each_word_where_the_transfer_says():
    rng = np.random.default_rng(21)
    dut = LoadUnit(P)
    cmds, writes, beats_sent = [], [], []

    async def bench(ctx):
        queued = []  # beats of accepted DMA commands, in order

        async def step():
            ctx.set(dut.dma_cmd.ready, int(rng.random() < 0.6))
            if ctx.get(dut.dma_cmd.valid) and ctx.get(dut.dma_cmd.ready):
                addr, n = ctx.get(dut.dma_cmd.payload.addr), ctx.get(dut.dma_cmd.payload.beats)
                cmds[-1].append((addr, n))
                queued.extend(int.from_bytes(rng.bytes(BB // 8), "little") for _ in range(n))
            give = bool(queued) and rng.random() < 0.7
            ctx.set(dut.dma_data.valid, int(give))
            if give:
                ctx.set(dut.dma_data.payload, queued[0])
                beats_sent[-1].append(queued.pop(0))
            if ctx.get(dut.wr_en):
                writes[-1].append((ctx.get(dut.wr_sel), ctx.get(dut.wr_addr), ctx.get(dut.wr_data)))
            await ctx.tick()

        for t in TRANSFERS:
            cmds.append([]), writes.append([]), beats_sent.append([])
            await _send(ctx, dut, t, step)
            for _ in range(2000):
                if not ctx.get(dut.busy):
                    break
                await step()
            assert not ctx.get(dut.busy) and not queued

    simulate(dut, bench)
    for t, c, w, b in zip(TRANSFERS, cmds, writes, beats_sent):
        wpb = beats_per_word(P, t[0])
        assert c == _dma_commands(t)
        wb = scratch_word_bits(P, t[0])  # the scratchpad keeps its word's bits of wr_data
        words = [sum(v << (BB * k) for k, v in enumerate(b[i * wpb:(i + 1) * wpb])) % (1 << wb)
                 for i in range(len(b) // wpb)]
        assert [(s, a, v % (1 << wb)) for s, a, v in w] == [(t[0], a, v) for (_, a), v in zip(_words(t), words)]
    assert sum(len(w) for w in writes) == sum(len(_words(t)) for t in TRANSFERS) > 0


def test_store_unit_sends_each_word_where_the_transfer_says():
    rng = np.random.default_rng(22)
    dut = StoreUnit(P)
    memory = {}
    cmds, beats = [], []

    def word(sel: int, addr: int) -> int:
        return memory.setdefault((sel, addr), int.from_bytes(rng.bytes(32), "little")
                                 % (1 << scratch_word_bits(P, sel)))

    async def bench(ctx):
        reads = []  # (sel, address) of each cycle

        async def step():
            reads.append((ctx.get(dut.rd_sel), ctx.get(dut.rd_addr)))
            ctx.set(dut.rd_data, word(*reads[-1 - HOST_READ_LATENCY]) if len(reads) > HOST_READ_LATENCY else 0)
            ctx.set(dut.dma_cmd.ready, int(rng.random() < 0.6))
            ctx.set(dut.dma_data.ready, int(rng.random() < 0.5))
            if ctx.get(dut.dma_cmd.valid) and ctx.get(dut.dma_cmd.ready):
                cmds[-1].append((ctx.get(dut.dma_cmd.payload.addr), ctx.get(dut.dma_cmd.payload.beats)))
            if ctx.get(dut.dma_data.valid) and ctx.get(dut.dma_data.ready):
                beats[-1].append(ctx.get(dut.dma_data.payload))
            await ctx.tick()

        for t in TRANSFERS:
            cmds.append([]), beats.append([])
            await _send(ctx, dut, t, step)
            for _ in range(3000):
                if not ctx.get(dut.busy):
                    break
                await step()
            assert not ctx.get(dut.busy)

    simulate(dut, bench)
    for t, c, b in zip(TRANSFERS, cmds, beats):
        wpb = beats_per_word(P, t[0])
        assert c == _dma_commands(t)
        want = [(word(t[0], a) >> (BB * k)) % (1 << BB) for _, a in _words(t) for k in range(wpb)]
        assert b == want
    assert sum(len(b) for b in beats) > 0
