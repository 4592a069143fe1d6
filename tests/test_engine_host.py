"""Engine host side without simulation: compilation, memory map, packing, and clear errors on bad
input before any simulation starts (issue 13, acceptance 6; issue 14, acceptance 6)."""
import re
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hw.engine.params import (
    OP_RELU_BWD, OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, SEL_AMEM_C, SEL_CTR, SEL_WMEM, SEL_WTMEM,
    EngineParams, engine_with_weights,
)
from model.divider import divider_constants
from model.numerics import NitroError
from model.paths import REPO
from model.spec import Hyper, Quirks, build_cnn, build_mlp
from hw.engine import compiler as C
from hw.engine import perf
from hw.engine.memory_model import MemoryModel
from hw.engine import runs as R
from hw.engine import schedule as S
from hw.engine.tiles import Run, Tile
from hw.engine.tileshape import tile_shape
from hw.engine import tiling as T
from hw.engine.image import tensor_span
from hw.engine.tilecost import mac_cycles
from hw.engine.program import (
    END, PROGRAM_WORD_BITS, RUN, SOP_END, SOP_LOAD, SOP_STORE, SOP_SWAP, SOP_SYNC, SWAP, SYNC,
    Transfer, beats_per_word, ext_word_bytes, load, store,
)
from sim.engine.cosim import parse_fault, prepare_cosim, run_cosim


def mnist_spec(hidden=(100, 50), **kw):
    return build_mlp((1, 28, 28), list(hidden), Hyper(), **kw)


def test_mnist_mlp_gemms_and_macs():
    prog = C.compile_network(mnist_spec(), 64)
    ops = [g.op for g in prog.gemms]
    # per block: forward, learning layer, delta, learning-layer update; output layer; the
    # forward-layer updates last
    assert ops == [OP_SCALE_RELU, OP_SCALE_LOSS, OP_RELU_BWD, OP_SGD] * 2 + [OP_SCALE_LOSS, OP_SGD] + \
        [OP_SGD] * 2
    # useful MACs of one step: forward, learning, delta and gradient GEMMs of 784-100-50-10 at B=64
    assert sum(prog.macs.values()) == 64 * (2 * (784 * 100 + 100 * 50) + 5 * 50 * 10 + 3 * 100 * 10)


@pytest.mark.parametrize("hidden", [[100, 50], [200, 100, 50], [37]])
def test_step_order_keeps_every_dependency(hidden):
    """The engine's GEMM order differs from the reference's backward order; it must still read
    every tensor after the GEMM that writes it and before the GEMM that next overwrites it."""
    prog = C.compile_network(mnist_spec(hidden), 64)
    reads, writes = zip(*map(R.touched, prog.gemms))
    weights = {n for n, t in prog.tensors.items() if t.sel in (SEL_WMEM, SEL_WTMEM)}
    raw = war = 0  # pairs checked: an activation read after its write, a weight read before its update
    for i, r in enumerate(reads):
        for j, w in enumerate(writes):
            if j == i or not r & w:
                continue
            if r & w <= weights:  # j updates weights that i reads
                assert i < j, (prog.gemms[i].name, prog.gemms[j].name)
                war += 1
            else:
                assert j < i, (prog.gemms[i].name, prog.gemms[j].name)
                raw += 1
    # per block: learn, delta, both updates read what the forward or learn wrote; each update
    # follows the reads of its weights
    assert raw >= 4 * len(hidden) and war >= 2 * len(hidden), (raw, war)


def test_chains_of_small_gemms_run_on_chip():
    """The MNIST MLP's learning chains are grouped: fewer runs than tiles, and no run loads a
    block that an earlier tile of the same run wrote (it reads it where it was written)."""
    ep = T.lower(C.compile_network(mnist_spec(), 64))
    assert len(ep.runs) < len(ep.tiles)
    grouped = [r for r in ep.runs if len(r.tiles) > 1]
    assert grouped and max(len(r.tiles) for r in grouped) >= 4
    for r in grouped:
        written = set()
        for t in r.tiles:
            assert not any((x.ext, x.rows, x.row_words) in written for x in t.loads), t.gemm.name
            written |= {(x.ext, x.rows, x.row_words) for x in t.stores}


def _covered(tiles, g):
    """K terms each C element of GEMM g gets from its tiles, as an (m, n) matrix; the chunks of a
    tile come in K order, the first starting and the last ending it, all in one of the two ways
    (on one C tile in the array, or their partial sums in pmem)."""
    hits = np.zeros((g.m, g.n), np.int64)
    for k, t in enumerate(tiles):
        rng = t.gemm.name.rsplit("[", 1)[1].rstrip("]").split(", ")
        m0, n0 = (int(v.split(":")[0]) for v in rng[:2])
        k0, k1 = (int(v) for v in rng[2].split(":")) if len(rng) > 2 else (0, g.k)
        tg = t.gemm
        assert tg.k == k1 - k0 and (tg.k_cont or tg.p_in) == (k0 > 0), tg.name
        assert (tg.k_hold or tg.p_out) == (k1 < g.k) and not (tg.k_cont or tg.k_hold) & (tg.p_in or tg.p_out)
        if k0 > 0:  # a continuation follows its tile's previous chunk, where that one ended
            prev = tiles[k - 1].gemm
            pm, pn, pk = prev.name.rsplit("[", 1)[1].rstrip("]").split(", ")
            assert (int(pm.split(":")[0]), int(pn.split(":")[0])) == (m0, n0), tg.name
            assert int(pk.split(":")[1]) == k0 and (prev.k_hold, prev.p_out) == (tg.k_cont, tg.p_in)
        hits[m0:m0 + t.gemm.m, n0:n0 + t.gemm.n] += k1 - k0
    return hits


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.integers(1, 1500), min_size=1, max_size=3), batch=st.integers(1, 130),
       depth=st.sampled_from([1024, 1536, 2048]), bus=st.sampled_from([64, 128]))
def test_tiles_cover_every_gemm_once_and_fit(hidden, batch, depth, bus):
    """Whatever the shapes and scratchpad sizes: every output element of every GEMM gets each of
    its K terms from exactly one tile (a K too long for the scratchpads in chunks), every tile
    fits its scratchpads (validated), and every transfer stays inside its tensor in external
    memory."""
    p = replace(EngineParams(), amem_c_depth=depth, wmem_depth=depth, bus_bits=bus)
    prog = C.compile_network(mnist_spec(hidden), batch, p)
    ep = T.lower(prog)
    spans = {}
    for t in prog.tensors.values():
        first, n = tensor_span(p, t)
        spans[t.name] = (first * 8, (first + n) * 8)
    for g in prog.gemms:
        tiles = [t for t in ep.tiles if t.parent is g]
        assert (_covered(tiles, g) == g.k).all(), g.name
        for tile in tiles:
            for x in tile.loads + tile.stores:
                name = next(n for n, (lo, hi) in spans.items() if lo <= x.ext < hi)
                bpw = ext_word_bytes(p, x.sel)
                last = x.ext + (x.rows - 1) * x.stride + x.row_words * bpw
                assert last <= spans[name][1], (tile.gemm.name, name)
    assert ep.commands[-1] == END and sum(c == RUN for c in ep.commands) == len(ep.runs)


def _sets(cmds):
    """Replay the scratchpad sets from a start with the host's side on set 1: per command, the
    set the host side reaches (SWAP flips it); the host's side at the end."""
    host, out = 1, []
    for c in cmds:
        out.append(host)
        host ^= c == SWAP
    return out, host


def _prefetch_lands(cmds, warm):
    """Where a program loads the next first run (a set) is where the warm program that follows it
    runs its first RUN (the warm program's frame starts where this one's host side ends)."""
    sets, end = _sets(cmds)
    last = len(cmds) - cmds[::-1].index(RUN)
    fetched = {sets[i] for i, c in enumerate(cmds[last:], last) if c.op == SOP_LOAD}
    first_run = 1 - _sets(warm)[0][warm.index(RUN)]  # the core's side: the other set
    return fetched == {first_run if end == 1 else 1 - first_run}


@pytest.mark.parametrize("hidden", [[100, 50], [64, 32]])
def test_prefetch_loads_the_next_first_run_from_the_staged_batch(hidden):
    """Steps back to back (`tiles.Prefetch`): during the last run the next step's first run is
    loaded into the host's set, its batch blocks from the staged copy, and nothing touches that
    set after it; the warm program is the program without those first loads, and finds them on
    the host's side (an even number of runs: it starts with the SWAP) or on the core's (odd)."""
    prog = C.compile_network(mnist_spec(hidden), 64)
    ep = T.lower(prog)
    pf, cold = ep.prefetch, ep.commands
    head = cold[:cold.index(SWAP)]
    assert [c.xfer for c in head] == ep.runs[0].loads + [S.ucode_load(ep.runs[0], prog.params)]
    even = len(ep.runs) % 2 == 0
    assert pf.commands[0] == (SWAP if even else RUN)
    assert [c for c in pf.commands if c != SYNC] == [c for c in cold[len(head) + (not even):] if c != SYNC]
    last = len(cold) - cold[::-1].index(RUN)
    sets, end = _sets(cold)
    fetch = [(c.xfer, sets[i]) for i, c in enumerate(cold[last:], last) if c.op == SOP_LOAD]
    assert end == 1 and len(fetch) == len(head)
    p, staged = prog.params, 0
    # (in the order `_sync_segment` chose for them)
    fetch.sort(key=lambda f: (f[0].sel, f[0].spad))
    for (x, side), h in zip(fetch, sorted(head, key=lambda c: (c.xfer.sel, c.xfer.spad))):
        assert side == int(even) and replace(x, ext=h.xfer.ext) == h.xfer
        batch = [n for n in C.BATCH_TENSORS if prog.tensors[n].ext <= h.xfer.ext < prog.tensors[n].ext
                 + T._bytes(prog.tensors[n], p)]
        if batch:
            t, s = prog.tensors[batch[0]], pf.staged[batch[0]]
            assert x.ext - s.ext == h.xfer.ext - t.ext
            staged += 1
        else:
            assert x.ext == h.xfer.ext
    assert staged > 0  # the first run reads the batch
    # the staged copies lie between the counters and the programs, the warm program after the cold
    cb, pb = T.N_COUNTERS * ext_word_bytes(p, SEL_CTR), PROGRAM_WORD_BITS // 8
    spans = sorted([(s.ext, s.ext + T._bytes(s, p)) for s in pf.staged.values()]
                   + [(0, prog.tensor_bytes), (ep.ctr_ext, ep.ctr_ext + cb),
                      (ep.prog_ext, ep.prog_ext + len(cold) * pb), (pf.ext, pf.ext + len(pf.commands) * pb)])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] <= ep.ext_bytes
    # the cold program and the warm one both leave the next first run where the next warm RUN is
    assert _prefetch_lands(cold, pf.commands) and _prefetch_lands(pf.commands, pf.commands)


def test_learning_gemms_follow_the_forward_block_by_block():
    """A forward cut into blocks of rows (784-40 at batch 256: three blocks of at most 88 rows):
    the learning layer and the delta of each block join the run of the block's last chunk of K,
    and the learning-layer update, which reads every row, runs at the end of the step."""
    ep = T.lower(C.compile_network(mnist_spec((40, 50)), 256))
    joined = [[t.gemm.name.split("[")[0] for t in r.tiles] for r in ep.runs if len(r.tiles) == 3
              and r.tiles[0].parent.name == "linear_block_00/fwd"]
    assert joined == [["linear_block_00/fwd", "linear_block_00/learn", "linear_block_00/delta"]] * 3
    fwd = [t.gemm for t in ep.tiles if t.parent.name == "linear_block_00/fwd"]
    for m in (0, 88, 176):  # each block's chunks cover K once
        assert sum(g.k for g in fwd if g.name.startswith(f"linear_block_00/fwd[{m}:")) == 784
    assert ep.runs[-1].tiles[-1].parent.name == "linear_block_00/update_learn"


def test_learning_gemms_follow_the_forward_column_blocks():
    """The MNIST MLP's first forward is cut into two blocks of columns (56 and 44 of its 100
    outputs; PMEM holds 64 MAC-array tiles of partial sums, all 64 rows in 13 column tiles need
    104): the learning layer, in two chunks of K split where the last block starts (the first
    reading the first block's stored outputs, its partial sums in PMEM beside the block's), and
    the delta in the same two column blocks join the run of the last block's last chunk; the
    learning-layer update runs at the end of the step."""
    ep = T.lower(C.compile_network(mnist_spec(), 64))
    joined = [[t.gemm.name for t in r.tiles[1:]] for r in ep.runs if len(r.tiles) > 1
              and r.tiles[0].parent.name == "linear_block_00/fwd"]
    assert joined == [["linear_block_00/learn[0:64, 0:10, 0:56]", "linear_block_00/learn[0:64, 0:10, 56:100]",
                       "linear_block_00/delta[0:64, 0:56]", "linear_block_00/delta[0:64, 56:100]"]]
    learn = [t.gemm for t in ep.tiles if t.parent.name == "linear_block_00/learn"]
    assert [(g.p_in, g.p_out) for g in learn] == [(False, True), (True, False)]
    assert learn[0].p_base == learn[1].p_base == 8 * 6 * 8  # after the last block's 8 x 6 C tiles
    fwd = [t.gemm for t in ep.tiles if t.parent.name == "linear_block_00/fwd"]
    for n in (0, 56):  # each block's chunks cover K once
        assert sum(g.k for g in fwd if g.name.startswith(f"linear_block_00/fwd[0:64, {n}:")) == 784
    assert ep.runs[-1].tiles[-1].parent.name == "linear_block_00/update_learn"
    # a later GEMM that writes what the update reads keeps it in place
    g = lambda a, b, **outs: SimpleNamespace(a=SimpleNamespace(name=a), b=SimpleNamespace(name=b),  # noqa: E731
                                             op=OP_SGD, outs={k: SimpleNamespace(name=v) for k, v in outs.items()})
    upd = g("a.r", "e.d", o3="wl", o4="wl.w")
    assert R._deferrable([upd], [g("x.r", "d", o3="w")])
    assert not R._deferrable([upd], [g("x.r", "d", o3="e.d")])
    assert not R._deferrable([upd], [g("wl.w", "d", o3="w")])


def test_no_prefetch_of_what_the_last_run_writes():
    """The next first run is loaded before the last run's outputs are stored: when it reads
    bytes they write, the program does without the prefetch."""
    p = EngineParams()
    x, w = Transfer(SEL_AMEM_C, 0, 1, 64, 0, 512), Transfer(SEL_WMEM, 0, 1, 32, 4096, 512)

    def run(loads, stores):
        return Run([Tile(object(), None, loads, stores)], ucode_ext=1 << 16)

    for written, skip in ((w, 0), (replace(w, ext=8192), 3)):  # 2 loads and the command words
        fetch = [x, w, S.ucode_load(run([], []), p)]
        cmds, got = S.schedule([run([x, w], []), run([x], [written])], p, fetch)
        last = len(cmds) - cmds[::-1].index(RUN)
        assert got == skip and [c.xfer for c in cmds[last:] if c.op == SOP_LOAD] == fetch[:skip]


def test_program_commands_pack_into_their_layout():
    from hw.engine.program import program_layout

    x = Transfer(3, 17, 5, 6, 0x1234_5000, 96)
    word = load(x).pack()
    fields = {name: (word >> f.offset) & ((1 << f.width) - 1) for name, f in program_layout}
    assert fields["op"] == 1
    xl = program_layout["xfer"].shape
    got = {name: (fields["xfer"] >> f.offset) & ((1 << f.width) - 1) for name, f in xl}
    assert got == x.__dict__


@pytest.mark.parametrize("layout, rows, feats", [("col", 12, 20), ("row", 12, 20), ("wT", 20, 10),
                                                 ("w", 10, 100), ("col", 64, 784)])
def test_pack_unpack_roundtrip(layout, rows, feats):
    t = C.Tensor("t", SEL_AMEM_C, layout, rows, feats, 5, 8)
    mat = np.random.default_rng(1).integers(-128, 128, (rows, feats))
    lanes = C.pack_tensor(t, mat)
    assert lanes.shape == (t.words, 8)
    assert np.array_equal(C.unpack_tensor(t, lanes), mat)


@pytest.mark.parametrize("layout", ["col", "row", "w", "wT"])
def test_pack_places_each_element_where_the_layout_table_says(layout):
    """Element (r, f) at the word and lane of hw/engine/compiler.py's layout table (L = 8):
    col: word (r / L) * F + f, lane r % L; row, w: word r * ceil(F / L) + f / L, lane f % L;
    wT (in external memory): word (f / L) * rows + r, lane f % L; padding lanes zero."""
    rows, feats, L = 11, 13, 8
    t = C.Tensor("t", SEL_AMEM_C, layout, rows, feats, 5, L)
    r, f = np.meshgrid(np.arange(rows), np.arange(feats), indexing="ij")
    mat = 1000 * r + f + 1
    word = {"col": (r // L) * feats + f, "row": r * -(-feats // L) + f // L,
            "w": r * -(-feats // L) + f // L, "wT": (f // L) * rows + r}[layout]
    lane = r % L if layout == "col" else f % L
    lanes = C.pack_tensor(t, mat)
    assert np.array_equal(lanes[word, lane], mat)
    assert np.count_nonzero(lanes) == rows * feats


def test_lane_bytes_roundtrip():
    from hw.engine.image import bytes_to_lanes, lanes_to_bytes

    rng = np.random.default_rng(2)
    for bits in (8, 16, 24):
        lanes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (50, 8))
        by = lanes_to_bytes(lanes, bits, 58)
        assert by.shape == (50, 58) and by.max() < 256
        assert np.array_equal(bytes_to_lanes(by, bits, 8), lanes)
        if bits < 24:  # lanes side by side, each little-endian two's complement, as numpy stores them
            assert np.array_equal(by[:, :8 * (bits // 8)], lanes.astype(f"<i{bits // 8}").view(np.uint8))
        else:
            assert np.array_equal(by[:, :24].reshape(50, 8, 3),
                                  lanes.astype("<i4").view(np.uint8).reshape(50, 8, 4)[:, :, :3])


def test_command_packing_fits_layout():
    """Every hardware field of every tile command lands at its layout offset (unpacked back exactly)."""
    from hw.engine.params import ADDR_W, command_layout

    prog = C.compile_network(mnist_spec(), 64)
    ep = T.lower(prog)
    layout = command_layout(prog.params)
    for tile in ep.tiles:
        f = tile.gemm.fields(prog.phases.index(tile.gemm.phase))
        word = C.pack_command(prog.params, f)
        assert word < 1 << layout.size
        for name, fl in layout:
            got = (word >> fl.offset) & ((1 << fl.width) - 1)
            want = f.get(name, 0)
            if isinstance(want, dict):  # an output slot {base, stride}
                want = want["base"] | (want["stride"] << ADDR_W)
            assert got == want, (tile.gemm.name, name)
    assert T.ucode_words(ep).size == sum(r.commands for r in ep.runs) * prog.params.cmd_words


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 6), row_words=st.integers(1, 12), gap=st.integers(0, 3),
       cuts=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 40)), max_size=4))
def test_dependent_load_cut_into_early_and_late_pieces(rows, row_words, gap, cuts):
    """A load that reads part of the previous run's unstored outputs: the pieces that read none of
    them (loaded during that run) and those that do cover the transfer exactly, word for word, in
    its scratchpad order."""
    p = EngineParams()
    bpw = ext_word_bytes(p, SEL_AMEM_C)
    x = Transfer(SEL_AMEM_C, 100, rows, row_words, 4096, (row_words + gap) * bpw)
    spans = sorted((4096 + a * bpw // 4, 4096 + (a + n) * bpw // 4) for a, n in cuts)
    early, late = S._cut_by(x, spans, p)

    def words(xs):  # (scratchpad word, external byte address) of every word
        return {(y.spad + r * y.row_words + c, y.ext + r * y.stride + c * bpw)
                for y in xs for r in range(y.rows) for c in range(y.row_words)}

    assert sorted(words(early) | words(late)) == sorted(words([x]))
    assert sum(y.words for y in early + late) == x.words and len(early + late) <= S.MAX_CUT_PIECES
    assert not S._overlap(S._spans(early, p), spans)
    assert all(S._overlap(S._spans([y], p), spans) for y in late)


def test_dependent_load_cut_where_its_rows_turn_dependent():
    """Rows 0-2 of a 5-row load are stored already, rows 3-4 are not: rows 0-2 load early, in one
    piece on chip words 0.., rows 3-4 late; pieces alternating more than MAX_CUT_PIECES times
    leave the load whole."""
    p = EngineParams()
    bpw = ext_word_bytes(p, SEL_AMEM_C)
    x = Transfer(SEL_AMEM_C, 10, 5, 4, 8192, 16 * bpw)
    early, late = S._cut_by(x, [(8192 + 3 * 16 * bpw, 8192 + 4 * 16 * bpw + 1)], p)
    assert early == [Transfer(SEL_AMEM_C, 10, 3, 4, 8192, 16 * bpw)]
    assert late == [Transfer(SEL_AMEM_C, 22, 2, 4, 8192 + 48 * bpw, 16 * bpw)]
    odd_rows = [(8192 + r * 16 * bpw, 8192 + r * 16 * bpw + 1) for r in (1, 3)]
    assert S._cut_by(x, odd_rows, p) == ([], [x])


def test_loads_wait_for_the_stores_they_touch():
    """STOREs run beside the commands after them: a LOAD that writes scratchpad words a STORE
    since the last SWAP or SYNC reads, or reads bytes it writes, gets a SYNC first; one that
    touches neither does not, nor one after a SWAP (which waits for every STORE). The SYNC waits
    only for the STOREs it has to."""
    p = EngineParams()
    out = Transfer(SEL_AMEM_C, 100, 2, 8, 0x10000, 0x1000)  # words 100..115, two rows of bytes
    other_sel = Transfer(SEL_WMEM, 100, 1, 16, 0x40000, 0)
    same_words = Transfer(SEL_AMEM_C, 112, 1, 8, 0x50000, 0)
    bpw = ext_word_bytes(p, SEL_AMEM_C)
    same_bytes = Transfer(SEL_AMEM_C, 0, 1, 2, 0x11000 + 6 * bpw, 0)  # row 1's last words
    next_row = Transfer(SEL_AMEM_C, 0, 1, 2, 0x10000 + 8 * bpw, 0)  # between the two rows
    for x, synced in ((other_sel, False), (next_row, False), (same_words, True), (same_bytes, True)):
        assert S.synced([store(out), load(x), END], p) == (
            [store(out)] + [SYNC] * synced + [load(x), END]), x
    # one SYNC covers every STORE before it; a SWAP waits for them too
    assert S.synced([store(out), load(same_words), load(same_bytes), END], p) == [
        store(out), SYNC, load(same_words), load(same_bytes), END]
    assert S.synced([store(out), SWAP, load(same_words), END], p) == [
        store(out), SWAP, load(same_words), END]
    # a STORE no LOAD after it touches moves past the SYNC, beside the LOADs after it; not one
    # that writes bytes of a STORE the SYNC waits for, and not when no SYNC follows it
    free = Transfer(SEL_WMEM, 0, 1, 4, 0x60000, 0)
    assert S.synced([store(free), store(out), load(other_sel), load(same_words), END], p) == [
        store(out), load(other_sel), SYNC, store(free), load(same_words), END]
    first = replace(free, ext=out.ext)
    assert S.synced([store(first), store(out), load(same_words), END], p) == [
        store(first), store(out), SYNC, load(same_words), END]
    assert S.synced([store(free), load(other_sel), END], p) == [store(free), load(other_sel), END]


def test_loads_wait_for_their_own_stores_only():
    """LOADs in Johnson's order: those whose STOREs take fewer beats than they do first, fewest
    STORE beats first (one that needs none goes beside the STOREs of the first that does); then
    the others, longest first. Each LOAD's STOREs are issued after the SYNC before the LOAD ahead
    of it, so they move while that one loads (the order the MNIST MLP's weight-update runs need
    to hide the previous run's stores)."""
    p = EngineParams()
    s1, l1 = Transfer(SEL_AMEM_C, 0, 1, 8, 0x10000, 0), Transfer(SEL_AMEM_C, 0, 1, 32, 0x20000, 0)
    s3, l3 = Transfer(SEL_WMEM, 0, 1, 2, 0x30000, 0), Transfer(SEL_WMEM, 0, 1, 16, 0x40000, 0)
    l2 = Transfer(SEL_WTMEM, 0, 1, 64, 0x50000, 0)
    assert S.synced([RUN, store(s1), store(s3), load(l1), load(l3), load(l2), END], p) == [
        RUN, store(s3), load(l2), SYNC, store(s1), load(l3), SYNC, load(l1), END]
    long_store = replace(s3, row_words=64)  # 128 beats before a 32-beat LOAD
    s4, l4 = Transfer(SEL_WTMEM, 0, 1, 16, 0x60000, 0), Transfer(SEL_WTMEM, 0, 1, 8, 0x70000, 0)
    assert S.synced([RUN, store(s1), store(long_store), store(s4), load(l4), load(l3), load(l1), END],
                     p) == [RUN, store(s1), SYNC, store(long_store), load(l1), SYNC, store(s4), load(l3),
                            SYNC, load(l4), END]


def _touches(x: Transfer, p: EngineParams) -> tuple[set, set]:
    """The (scratchpad, word) pairs and the external bytes a transfer touches, word by word."""
    bpw = ext_word_bytes(p, x.sel)
    words = {(x.sel, x.spad + k) for k in range(x.words)}
    ext = {x.ext + r * x.stride + b for r in range(x.rows) for b in range(x.row_words * bpw)}
    return words, ext


_xfer = st.builds(lambda sel, spad, rows, row_words, ext, gap: Transfer(
    sel, spad, rows, row_words, 8 * ext, 8 * (row_words * (1 + (sel == SEL_WMEM)) + gap)),
    st.sampled_from([SEL_AMEM_C, SEL_WMEM]), st.integers(0, 40), st.integers(1, 3),
    st.integers(1, 6), st.integers(0, 60), st.integers(0, 4))


_segment = st.tuples(st.booleans(), st.lists(_xfer, max_size=4), st.lists(_xfer, max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.lists(_segment, min_size=1, max_size=4), _xfer)
def test_synced_programs_keep_every_store_load_order(segments, x):
    """Against the program run one command at a time: with STOREs running beside the commands
    after them, every LOAD and STORE that touch the same scratchpad words or external bytes (and
    every two STOREs that write the same bytes, every two LOADs that write the same words) keep
    their order, with a SYNC, SWAP or END between a STORE and a LOAD after it; no transfer
    crosses a SWAP; only SYNCs are added. Segments are as `schedule.schedule` writes them (a RUN, STOREs,
    LOADs); the program stores `x` first and loads it last, so every example has a pair to check."""
    p = EngineParams()
    segments[0][1].insert(0, x)
    segments[-1][2].append(x)
    cmds = []
    for run, stores, loads in segments:
        cmds += [RUN] * run + [store(y) for y in stores] + [load(y) for y in loads] + [SWAP]
    cmds[-1] = END
    out = S.synced(cmds, p)
    pos = {id(c): k for k, c in enumerate(out) if c.xfer}
    assert sorted(pos) == sorted(id(c) for c in cmds if c.xfer)  # the same commands, SYNCs added
    assert [c for c in out if c.xfer is None and c.op != SOP_SYNC] == [c for c in cmds if c.xfer is None]
    barriers = [k for k, c in enumerate(out) if c.op in (SOP_SYNC, SOP_SWAP, SOP_END)]
    transfers = [c for c in cmds if c.xfer]
    checked = 0
    for i, a in enumerate(transfers):
        for b in transfers[i + 1:]:
            (wa, ea), (wb, eb) = _touches(a.xfer, p), _touches(b.xfer, p)
            if a.op == b.op == SOP_LOAD:
                ordered = wa & wb
            else:
                ordered = (ea & eb) if a.op == b.op else (wa & wb or ea & eb)
            if ordered:
                checked += 1
                assert pos[id(a)] < pos[id(b)], (a, b)
                if a.op == SOP_STORE and b.op == SOP_LOAD:
                    assert any(pos[id(a)] < k < pos[id(b)] for k in barriers), (a, b)
        at = next(k for k, c in enumerate(cmds) if c is a)  # the same SWAPs before it
        swaps_in = sum(1 for c in cmds[:at] if c.op == SOP_SWAP)
        assert sum(1 for c in out[:pos[id(a)]] if c.op == SOP_SWAP) == swaps_in
    assert checked


# ---- bad input: clear errors before simulation --------------------------------------------

def test_network_too_big_for_engine():
    """Tensors beyond the engine's external address space are refused before anything is tiled."""
    with pytest.raises(NitroError, match=r"need more than 3072 MiB of external memory \(at "
                                         r"linear_encoder_01.wT\); the engine's AXI addresses are 32 bits"):
        C.compile_network(mnist_spec((40000, 40000)), 64)



def test_program_beyond_the_address_space_is_refused():
    """The tensors fit, but what lower() lays out after them (command words, counters, the staged
    next batch, both programs) would pass 4 GiB, which the 32-bit AXI addresses do not reach."""
    prog = C.compile_network(mnist_spec((100, 50)), 64)
    assert T.lower(prog, base=(1 << 32) - (1 << 20)).prog_ext < 1 << 32
    with pytest.raises(NitroError, match=r"GiB of external memory; the engine's AXI addresses are 32 bits"):
        T.lower(prog, base=(1 << 32) - 8192)


@pytest.mark.parametrize("field, value, msg", [
    ("cmem_depth", 1, "cmem_depth must be in 2.."),  # a run is a GEMM and END
    ("cmem_depth", 9000, "cmem_depth must be in 2.."),
    ("wmem_depth", 1 << 16, "wmem_depth must be in 1..65535"),  # the transfers' 16-bit word counts
])
def test_engine_parameters_the_engine_cannot_hold_are_refused(field, value, msg):
    with pytest.raises(NitroError, match=msg):
        replace(EngineParams(), **{field: value})

def test_long_k_runs_in_chunks():
    """A K longer than the scratchpads hold (the weights after a 1200-wide layer, 1200 x 2 words
    of wmem per panel) runs as chunks of K; the rest of the step is tiled as before (the first
    GEMM, whose loads nothing overlaps, in chunks too: test_first_gemm_in_chunks; the learning
    layer after a forward cut into column blocks in two chunks: `runs._column_follow`)."""
    ep = T.lower(C.compile_network(mnist_spec((1200, 50)), 64))
    chunked = {t.parent.name for t in ep.tiles if t.gemm.k_hold or t.gemm.p_out}
    assert chunked == {"linear_block_00/fwd", "linear_block_01/fwd", "linear_block_00/learn",
                       "linear_block_01/learn"}


def test_first_gemm_in_chunks(monkeypatch):
    """The step's first GEMM fits with all of K, but nothing overlaps its first tile's loads: it
    runs in chunks of K (partial sums in PMEM; the first one shorter still, `_short_first`),
    whose first loads are shorter, and the performance model predicts the step faster than with
    whole-K tiles; every other GEMM is cut as before (its learning GEMMs join its blocks' runs:
    `runs._chain`)."""
    prog = C.compile_network(mnist_spec(), 64)
    g, p = prog.gemms[0], prog.params
    whole, chunked = tile_shape(g, p), tile_shape(g, p, exposed=True)
    assert whole.k is None and chunked.k < g.k and chunked.partial
    ep = T.lower(prog)
    orig = tile_shape
    monkeypatch.setattr(R, "tile_shape", lambda g, p, share=1, exposed=False: orig(g, p, share))
    ep_whole = T.lower(prog)
    first, first_whole = ep.runs[0].tiles[0], ep_whole.runs[0].tiles[0]
    assert first.gemm.k == p.lanes ** 2 < chunked.k and first_whole.gemm.k == g.k  # `_short_first`
    assert sum(x.words for x in first.loads) < 0.6 * sum(x.words for x in first_whole.loads)
    assert perf.predict(ep).cycles < 0.98 * perf.predict(ep_whole).cycles
    def cut(e):
        return sorted(t.gemm.name for t in e.tiles if t.parent is not g and "/learn" not in t.parent.name
                      and "/delta" not in t.parent.name)

    assert len(cut(ep)) > 10 and cut(ep) == cut(ep_whole)


def test_short_first_chunk_and_a_short_last_run(monkeypatch):
    """The MNIST MLP's step ends with the first block's learning-layer update alone, whose outputs
    (all that is stored after the core ends) are small, and starts with the shortest chunk of K
    (L*L) whose MAC-array tiles cover the next chunk's loads; the next step loads that chunk
    during the last run, its operands in no more beats than the run's MAC-array cycles. The
    performance model predicts both the cold and the warm step faster than with the first
    block's chunks equal."""
    prog = C.compile_network(mnist_spec(), 64)
    p, ep = prog.params, T.lower(prog)
    last, first = ep.runs[-1], ep.runs[0]
    assert ep.prefetch is not None
    assert [t.parent.name for t in last.tiles] == ["linear_block_00/update_learn"]
    assert sum(x.words for x in last.stores) < 400
    assert first.tiles[0].gemm.k == p.lanes ** 2 < ep.runs[1].tiles[0].gemm.k
    beats = sum(x.words * beats_per_word(p, x.sel) for x in first.loads)
    assert beats <= mac_cycles(p, 100, 10, 64) == sum(perf.tile_cycles(t, p) for t in last.tiles)
    monkeypatch.setattr(R, "_short_first", lambda cuts, last, p: cuts)
    equal = T.lower(prog)
    assert len(equal.runs) == len(ep.runs) - 1
    for warm in (False, True):
        assert perf.predict(ep, warm=warm).cycles < perf.predict(equal, warm=warm).cycles - 500


def test_predicted_waits_cover_the_step():
    """The model's core cycles and its idle cycles before each run, per phase or per GEMM, add
    up to the step but for the last STOREs' tail; a 1-channel convolution's weight gradient,
    whose int24 deltas take more bus beats than its MAC-array beats, waits for them, and a wider
    port shortens the wait, not the core's cycles."""
    spec = _cnn([["Conv2d", 16, 3, 1, 1], ["MaxPool2d", 2, 2]])
    wgrad = "conv_block_00/update_fwd"
    preds = {}
    for bus in (64, 128):
        ep = T.lower(C.compile_network(spec, 16, engine_with_weights(24, bus)))
        for key in (perf.by_phase, perf.by_gemm):
            pr = perf.predict(ep, key=key)
            covered = sum(pr.phases.values()) + sum(pr.waits.values())
            assert 0 < pr.cycles - covered < 0.01 * pr.cycles
            assert min(pr.waits.values()) >= 0
        preds[bus] = pr
    core, wait = preds[64].phases[wgrad], preds[64].waits[wgrad]
    assert wait > 0.3 * core and preds[128].phases[wgrad] == core
    assert preds[128].waits[wgrad] < 0.5 * wait


@pytest.mark.parametrize("batch", [0, -3, 2.5, True])
def test_bad_batch_size(batch):
    with pytest.raises(NitroError, match="batch size must be a positive integer"):
        C.compile_network(mnist_spec(), batch)


def test_unsupported_layers():
    with pytest.raises(NitroError, match=r"dropout_00: dropout rate 0.3 rescales NITRO-ReLU outputs "
                                         r"-67..91 by 1428/1000 to -95..129, beyond the engine's int8 "
                                         r"activations \(it runs rates up to 0.25\)"):
        C.compile_network(mnist_spec(dropout=0.3), 64)
    with pytest.raises(NitroError, match="alpha 8"):
        C.compile_network(build_mlp((1, 28, 28), [16], Hyper(slope_inv=8)), 8)


def _cnn(arch, **kw):
    return build_cnn((1, 28, 28), arch, [16], Hyper(), pred_decoder_dim=8192, **kw)


def test_the_engine_generated_for_a_network():
    """An MLP's engine stores int16 weights, a CNN's int24 (its weights outgrow int16 in
    training); a chosen width or a whole EngineParams overrides, and the program is the engine's."""
    from hw.engine.params import (
        CNN_WEIGHT_BITS, MLP_WEIGHT_BITS, WEIGHT_STORAGE, EngineChoice, engine_params, engine_with_weights,
    )

    cnn = _cnn([["Conv2d", 8, 3, 1, 1]])
    assert engine_params(None, mnist_spec()) == EngineParams(weight_bits=MLP_WEIGHT_BITS)
    assert engine_params(None, cnn) == EngineParams(**WEIGHT_STORAGE[CNN_WEIGHT_BITS])
    assert engine_with_weights(CNN_WEIGHT_BITS) == engine_params(None, cnn)
    assert engine_params(EngineChoice(128, 16), cnn) == EngineParams(bus_bits=128, weight_bits=16)
    assert engine_params(EngineChoice(weight_bits=24), mnist_spec()).weight_bits == 24
    assert engine_params(EngineParams(), cnn) == EngineParams()
    assert C.compile_network(cnn, 8).params.weight_bits == CNN_WEIGHT_BITS
    assert C.compile_network(mnist_spec(), 8).params.weight_bits == MLP_WEIGHT_BITS


@pytest.mark.parametrize("arch, batch, message", [
    ([["Conv2d", 8, 5, 1, 2]], 8, "conv_encoder_00: kernel 5, padding 2; .* 3x3 convolutions"),
    ([["Conv2d", 8, 3, 1, 0]], 8, "conv_encoder_00: kernel 3, padding 0"),
    ([["Conv2d", 12, 3, 1, 1]], 8, "conv_encoder_00 has 12 output channels; .* multiple of 8"),
    ([["Conv2d", 8, 3, 1, 1], ["MaxPool2d", 4, 4]], 8, r"max_pool_01: max-pool \(4, 4\) .* 2x2"),
    ([["Conv2d", 8, 3, 1, 1]], 12, "a CNN's batch must be a multiple of 8"),
])
def test_unsupported_convolutions(arch, batch, message):
    """Each CNN the engine cannot run is refused before any work, naming the layer and the limit."""
    with pytest.raises(NitroError, match=message):
        C.compile_network(_cnn(arch), batch)


def test_conv_forward_chunks_fit_for_every_window_row():
    """Whole-image forward tiles of 3x3 images with K in chunks (512 input channels): the middle
    window row's chunk reads a source row more than the first row's, and the tile must fit for
    it (with AMEM_C between the two, the shape once fitted the first and overflowed)."""
    arch = [["Conv2d", 8, 3, 1, 1], ["MaxPool2d", 2, 2]] * 3 + [["Conv2d", 512, 3, 1, 1]] * 2
    spec = build_cnn((1, 28, 28), arch, [16], Hyper(), pred_decoder_dim=1024)
    for depth in (3328, 4096, 4352):
        ep = T.lower(C.compile_network(spec, 8, replace(EngineParams(), amem_c_depth=depth)))
        fwd = [t.gemm for t in ep.tiles if t.parent.name == "conv_block_04/fwd"]
        assert fwd and all(g.k < 9 * 512 for g in fwd)  # chunked, and every chunk validated


def test_conv_forward_short_of_pmem_is_named():
    """A convolution whose K must be chunked (a small WMEM) but whose partial sums of one image
    row do not fit PMEM: PMEM is named, not a scratchpad that holds the tile."""
    arch = [["Conv2d", 8, 3, 1, 1], ["MaxPool2d", 2, 2], ["Conv2d", 16, 3, 1, 1]]
    small = replace(EngineParams(), wmem_depth=16, wtmem_depth=128, pmem_depth=64)
    with pytest.raises(NitroError, match=r"conv_block_02/fwd \(convolution of 14-pixel rows, 72 inputs\) "
                                         r"needs 896 words of PMEM .* the engine has 64"):
        T.lower(C.compile_network(_cnn(arch), 16, small))


SCRATCH_DEPTHS = ("amem_c_depth", "amem_r_depth", "wmem_depth", "wtmem_depth", "dmem_depth",
                  "smem_depth", "ymem_depth")
SMALL_CNNS = [  # a second block reading 8 or 16 channels, learning pools that pad or tile
    [["Conv2d", 8, 3, 1, 1], ["MaxPool2d", 2, 2], ["Conv2d", 16, 3, 1, 1]],
    [["Conv2d", 16, 3, 1, 1], ["MaxPool2d", 2, 2], ["Conv2d", 16, 3, 1, 1]],
]


@settings(max_examples=80, deadline=None)
@given(arch=st.sampled_from(range(len(SMALL_CNNS))), decoder=st.sampled_from([128, 512]),
       batch=st.sampled_from([8, 16]),
       depths=st.dictionaries(st.sampled_from(SCRATCH_DEPTHS), st.sampled_from([8, 32, 128, 512, 1024]),
                              min_size=1, max_size=4),
       pmem=st.sampled_from([64, 256, 4096]))
@example(arch=0, decoder=512, batch=16, pmem=4096,  # a pool band away from the top overflows SMEM
         depths={"wtmem_depth": 8, "smem_depth": 512, "ymem_depth": 32, "wmem_depth": 512})
@example(arch=1, decoder=512, batch=16, pmem=64,
         depths={"wmem_depth": 128, "dmem_depth": 512, "smem_depth": 256})
def test_an_engine_too_small_names_the_limit(arch, decoder, batch, depths, pmem):
    """Any scratchpad sizes: the CNN lowers, or is refused naming the GEMM, the scratchpad (or
    PMEM) and the words it needs (the search's failure was once reported from a tile that fit,
    ending in a StopIteration)."""
    p = replace(EngineParams(), pmem_depth=pmem, **depths)
    spec = build_cnn((1, 28, 28), SMALL_CNNS[arch], [32], Hyper(), pred_decoder_dim=decoder)
    try:
        assert T.lower(C.compile_network(spec, batch, p)).tiles
    except NitroError as e:
        assert re.fullmatch(r"engine: \S+ .*needs \d+ words of (the \w+ scratchpad|PMEM) .*"
                            r"the engine has \d+", str(e)), e


def test_conv_lowering():
    """A conv block lowers to forward tiles of L images x whole output rows (the rows their
    windows read loaded beside them) and one weight-gradient GEMM per window position, in
    chunks of whole images, two of a tap-packed 1-channel input (taps 1..8 at the centre, tap 0
    one pixel to the left); the FC block after it is trained twice (the reference's quirk)."""
    prog = C.compile_network(_cnn([["Conv2d", 8, 3, 1, 1]]), 16)
    ep = T.lower(prog)
    fwd = [t for t in ep.tiles if t.parent.name == "conv_block_00/fwd"]
    assert [t.gemm.m for t in fwd] == [8 * 7 * 28] * 8  # 7 of 28 rows per tile, 2 x 4 tiles
    assert [t.loads[0].words for t in fwd[:4]] == [8 * 28, 9 * 28, 9 * 28, 8 * 28]  # + halo rows
    wins = {(t.gemm.conv.window, t.gemm.m, t.gemm.conv.row0) for t in ep.tiles
            if t.parent.name == "conv_block_00/update_fwd"}
    assert wins == {((1, 1), 8, 1), ((1, 0), 1, 0)}
    names = [g.name for g in prog.gemms]
    assert names.count("linear_block_01/update_fwd") == 2
    assert names.count("conv_block_00/update_fwd") == 2
    two = C.compile_network(_cnn([["Conv2d", 8, 3, 1, 1], ["Conv2d", 8, 3, 1, 1]]), 16)
    assert [g.name for g in two.gemms].count("conv_block_01/update_fwd") == 9  # 8 channels: windows
    fixed = C.compile_network(_cnn([["Conv2d", 8, 3, 1, 1]], quirks=Quirks(fc_double_update=False)), 16)
    assert [g.name for g in fixed.gemms].count("linear_block_01/update_fwd") == 1


def test_tap_packed_input():
    """Lane j of a pixel's word is the pixel of window tap j + 1, zero outside the image: lane 3
    (tap 4, the centre) is the image itself."""
    x = np.arange(1, 1 + 2 * 3 * 4, dtype=np.int8).reshape(2, 1, 3, 4)
    t = C.tap_packed(x, 8).reshape(2, 3, 4, 8)
    assert (t[..., 3] == x[:, 0]).all()
    assert (t[:, 1:, :, 0] == x[:, 0, :-1]).all() and (t[:, 0, :, 0] == 0).all()  # tap 1: (-1, 0)
    assert (t[:, :-1, :-1, 7] == x[:, 0, 1:, 1:]).all() and (t[:, -1, :, 7] == 0).all()  # tap 8
    assert (t[:, :, -1, 7] == 0).all()


def test_batch_of_wrong_shape_or_type():
    prog = C.compile_network(mnist_spec((16,)), 8)
    y = np.zeros((8, 10), np.int8)
    good = np.zeros((8, 1, 28, 28), np.int8)
    assert len(C.batch_tensors(prog, good, y)) == 3
    with pytest.raises(NitroError, match=r"batch must have shape \(8, 1, 28, 28\).*batch 8"):
        C.batch_tensors(prog, np.zeros((7, 1, 28, 28), np.int8), y)
    with pytest.raises(NitroError, match=r"batch must have shape"):
        C.batch_tensors(prog, np.zeros((8, 784), np.int8), y)
    with pytest.raises(NitroError, match="must be int8"):
        C.batch_tensors(prog, good.astype(np.int32), y)
    with pytest.raises(NitroError, match="targets must have shape"):
        C.batch_tensors(prog, good, np.zeros((8, 9), np.int8))


def test_weights_beyond_engine_width():
    prog = C.compile_network(mnist_spec((16,)), 8)
    params = {name: np.zeros(lm.layer.weight_shape, np.int32) for name, lm in prog.layers.items()}
    assert C.weight_tensors(prog, params)
    params["linear_encoder_00"][0, 0] = 40000
    with pytest.raises(NitroError, match="exceed the engine's 16-bit weight storage"):
        C.weight_tensors(prog, params)
    # a learning layer: |e . W| <= 128 x a column's sum of |W| must fit the int24 deltas
    params["linear_encoder_00"][0, 0] = 0
    params["linear_pred_00"][:, 3] = -6553  # 10 classes: 128 x 65 530 < 2^23
    assert C.weight_tensors(prog, params)
    params["linear_pred_00"][0, 3] = 6559  # 128 x 65 536 = 2^23
    with pytest.raises(NitroError, match="linear_pred_00's weights could carry its deltas .* "
                                         "24-bit delta storage .* 8388608"):
        C.weight_tensors(prog, params)


def test_command_referencing_missing_memory():
    prog = C.compile_network(mnist_spec(), 64)
    ep = T.lower(prog)
    p = prog.params
    g = ep.tiles[0].gemm
    C.validate_gemm(g, p)
    bad = replace(g, a=replace(g.a, base=p.amem_c_depth - 3))
    with pytest.raises(NitroError, match=rf"A operand reaches word \d+ of amem_c, which has {p.amem_c_depth} words"):
        C.validate_gemm(bad, p)
    upd = next(t.gemm for t in ep.tiles if t.gemm.op == OP_SGD)
    bad = replace(upd, outs={**upd.outs, "o3": replace(upd.outs["o3"], base=p.wmem_depth)})
    with pytest.raises(NitroError, match="output slot o3 reaches word .* of wmem"):
        C.validate_gemm(bad, p)
    with pytest.raises(NitroError, match="output slot o0 cannot address wmem"):
        C.validate_gemm(replace(g, outs={**g.outs, "o0": upd.outs["o3"]}), p)
    with pytest.raises(NitroError, match="cannot take its B operand from wmem"):
        C.validate_gemm(replace(upd, b=g.b), p)
    with pytest.raises(NitroError, match="empty GEMM"):
        C.validate_gemm(replace(g, k=0), p)


def test_small_engine_rejects_mnist():
    """Scratchpads too small for one C tile's outputs, whatever the K chunk, are named."""
    small = replace(EngineParams(), ymem_depth=4)
    with pytest.raises(NitroError, match=r"linear_block_00/learn \(M=64, K=100, N=10\) needs 8 words of the "
                                         r"ymem scratchpad for one 8x8 tile; the engine has 4"):
        T.lower(C.compile_network(mnist_spec(), 64, small))
    ep = T.lower(C.compile_network(mnist_spec(), 64, replace(EngineParams(), wmem_depth=512)))
    assert any(t.gemm.p_out for t in ep.tiles)  # a small wmem: the forward GEMMs in K chunks


def test_lr_and_divisor_limits():
    prog = C.compile_network(mnist_spec(), 64)
    with pytest.raises(NitroError, match="lr_inv must be a positive integer"):
        C.set_lr(prog, 0)
    with pytest.raises(NitroError, match="exceeds the engine's max"):
        C.set_lr(prog, 1 << 30)  # lr_inv * 640 > 2^32 - 1
    sgd = [g for g in prog.gemms if g.sgd]
    at_512 = [(g.consts["d_mult"], g.consts["d_shift"]) for g in sgd]
    C.set_lr(prog, 1536)
    assert prog.lr_inv == 1536 and sgd
    p = prog.params
    for g, old in zip(sgd, at_512):  # every update command's divider by lr_inv * amp, recomputed
        cst = divider_constants(1536 * g.sgd.amp, p.acc_bits, *p.grad_div)
        assert (g.consts["d_mult"], g.consts["d_shift"]) == (cst.mult, cst.shift) != old


def test_bad_fault_spec():
    prog = C.compile_network(mnist_spec(), 64)
    assert parse_fault("2:linear_encoder_00:3,17:4", prog, 3) == (2, "linear_encoder_00", (3, 17), 4)
    for bad, msg in [("2:linear_encoder_00:3:4", "STEP:LAYER"), ("2:nope:3,17:4", "unknown layer"),
                     ("2:linear_encoder_00:100,0:4", "outside"), ("2:linear_encoder_00:3,17:16", "bit"),
                     ("3:linear_encoder_00:3,17:4", "step 3 never runs"),
                     ("-1:linear_encoder_00:3,17:4", "never runs")]:
        with pytest.raises(NitroError, match=msg):
            parse_fault(bad, prog, 3)


def test_run_cosim_fails_before_simulation(tmp_path, monkeypatch):
    """Host-side errors surface before the engine is even built."""
    import sim.engine.build as B

    def no_build(*a, **k):
        raise AssertionError("the engine must not be built for a bad input")

    monkeypatch.setattr(B, "build_engine", no_build)
    big = tmp_path / "big.toml"
    big.write_text('name = "big"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\nhidden = [40000, 16]\n[train]\n')
    with pytest.raises(NitroError, match=r"the tensors and programs need \d+ bytes of memory or more; the simulated memory"):
        run_cosim(big, 1, None, None, False)
    drop = tmp_path / "drop.toml"
    drop.write_text('name = "d"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\nhidden = [16]\n'
                    'dropout = 0.5\n[train]\n')
    with pytest.raises(NitroError, match="dropout rate 0.5"):
        run_cosim(drop, 1, None, None, False)
    with pytest.raises(NitroError, match="steps"):
        run_cosim(REPO / "configs" / "embedded_mlp.toml", 0, None, None, False)
    with pytest.raises(NitroError, match="fault must be"):
        run_cosim(REPO / "configs" / "embedded_mlp.toml", 1, None, None, False, fault="x")
    with pytest.raises(NitroError, match="step 2 never runs"):  # the check could not fail
        run_cosim(REPO / "configs" / "embedded_mlp.toml", 2, None, None, False,
                  fault="2:linear_encoder_00:3,17:4")
    with pytest.raises(NitroError, match="cannot read config"):
        run_cosim(tmp_path / "missing.toml", 1, None, None, False)
    with pytest.raises(NitroError, match=r"training set \(10 images\) is smaller than one batch"):
        run_cosim(REPO / "configs" / "embedded_mlp.toml", 1, None, None, False, train_images=10)
    with pytest.raises(NitroError, match=r"smaller than one batch \(--batch 32\)"):
        run_cosim(REPO / "configs" / "embedded_mlp.toml", 1, None, None, False, train_images=10, batch=32)
    wide_eval = tmp_path / "eval.toml"  # train requires an evaluation batch; so does cosim
    wide_eval.write_text('name = "e"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                         'hidden = [16]\n[train]\neval_batch = 4000\n')
    with pytest.raises(NitroError, match=r"test set \(2000 images\) is smaller than one evaluation batch"):
        run_cosim(wide_eval, 1, None, None, False)


@pytest.mark.parametrize("text, want", [
    ("ideal", MemoryModel()), ("latency=100", MemoryModel(latency=100)),
    ("latency=30,gap=1,stall=25,seed=7", MemoryModel(30, 1, 25, 7)),
])
def test_memory_model_settings(text, want):
    """Parsed as given, and named (in records and reports) by a text that parses back to it."""
    assert MemoryModel.parse(text) == want and MemoryModel.parse(want.name) == want


def test_memory_models_named_as_the_option_takes_them():
    from hw.engine.memory_model import DDR3

    assert (MemoryModel().name, DDR3.name) == ("ideal", "ddr3")


@pytest.mark.parametrize("text, msg", [
    ("latency", "KEY=N"), ("speed=3", "KEY=N"), ("latency=-1", "KEY=N"), ("", "KEY=N"),
    ("stall=100", "stall must be an integer in 0..99"),
    ("latency=0", "latency must be an integer in 1..65535"), ("gap=70000", "gap"), ("latency=\u00b2", "KEY=N"),
    ("latency=5,latency=6", "given twice"),
])
def test_bad_memory_model_settings(text, msg):
    with pytest.raises(NitroError, match=msg):
        MemoryModel.parse(text)


def test_prepare_cosim_real_config():
    cfg, prog = prepare_cosim(REPO / "configs" / "embedded_mlp.toml", 1)
    assert prog.batch == 64 and cfg.name == "embedded_mlp"


def _res(**kw):
    return {"steps_run": 3, "steps_requested": 3, "ok": True, "fault": None, "fault_injected": False,
            "mismatch": None, **kw}


@pytest.mark.parametrize("res, failure", [
    (_res(steps_run=0), "no training step was compared"),
    (_res(steps_run=2), "2 of 3 steps were compared"),
    (_res(fault="5:l:0,0:1"), "never injected"),
    (_res(fault="1:l:0,0:1", fault_injected=True), "did not catch it"),
    (_res(steps_run=2, ok=False, fault="1:l:0,0:1", fault_injected=True, message="step 1: layer m",
          mismatch={"step": 1, "layer": "m", "index": [0, 0], "count": 1}), "differed elsewhere"),
    (_res(steps_run=2, ok=False, fault="1:l:0,0:1", fault_injected=True, message="step 1: layer l",
          mismatch={"step": 1, "layer": "l", "index": [0, 0], "count": 2}), "differed elsewhere"),
])
def test_cosim_verdict_fails_a_check_that_could_not_fail(res, failure):
    """A cosim that compared nothing, or whose fault was not injected or not caught, fails; so
    does one whose first difference is not the fault's element (an engine bug beside it)."""
    from sim.engine.cosim import verdict

    verdict(res)
    assert not res["ok"] and failure in res["message"]


def test_cosim_verdict_keeps_a_caught_fault_and_a_clean_run():
    from sim.engine.cosim import verdict

    caught = _res(steps_run=2, ok=False, fault="1:l:0,0:1", fault_injected=True,
                  mismatch={"step": 1, "layer": "l", "index": [0, 0], "count": 1}, message="step 1: ...")
    verdict(caught)
    assert caught["message"] == "step 1: ..."
    clean = _res()
    verdict(clean)
    assert clean["ok"]


@pytest.mark.parametrize("args, msg", [
    (["--memory", "speed=3"], "memory model must be"),
    (["--fault", "1:x"], "fault must be"),
    (["--train-images", "0"], "positive integer"),
    (["--train-images", "100000"], "--train-images 100000: embedded has"),
    (["--test-images", "100000"], "--test-images 100000: embedded has"),
    (["--batch", "40000"], "the simulated memory has"),
    (["--out", str(REPO)], "is a folder"),
])
def test_cosim_cli_bad_input_is_one_line(args, msg, capsys):
    """Bad cosim input: one `nitro: error:` line, exit 2, before anything is built."""
    from scripts.cli import main

    try:  # argparse's errors exit, the toolkit's return 2
        rc = main(["cosim", "--config", str(REPO / "configs" / "embedded_mlp.toml"), *args])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("nitro: error:") and err.count("\n") == 1 and msg in err


@pytest.mark.parametrize("feats", [991, 1000])
def test_dropout_tiles_of_some_words_of_a_vector(feats):
    """Dropout over a feature vector in the row layout, cut into tiles of some of each row's
    words: a tile's blocks (source, destination, keep mask) are whole words, 8 features each,
    the last tile's ending with the vector (a partial last word, at 991). The regression's case 16
    of seed 3 (991 features) failed with blocks of 7 features per word, its split taken from
    the features per word rounded down."""
    from hw.engine.tileshape import operand_blocks

    prog = C.compile_network(mnist_spec((feats, 24), dropout=0.15), 32)
    g = next(g for g in prog.gemms if g.name == "dropout_00/drop" and g.a.layout == "row")
    words = g.k
    assert words == -(-feats // 8)
    for k0, k1 in ((0, 31), (words - 31, words)):
        blocks = operand_blocks(g, 0, 32, 0, 1, k0, k1)
        assert {(b.f0, b.f1) for b in blocks.values()} == {(8 * k0, min(8 * k1, feats))}


def test_dropout_over_a_vector_the_pool_walk_cannot_cut():
    """A vector of 8190 features is 1024 row-layout words with a partial last one: more than the
    pool unit walks in one pixel, and a partial word cannot be split across pixels."""
    with pytest.raises(NitroError, match=r"dropout over 1024 words per row: the max-pool unit walks "
                                         r"rows of at most 255 pixels of 1023 words, and 1024 has no "
                                         r"such split \(its last word partial: one pixel\)"):
        C.compile_network(mnist_spec((8190, 24), dropout=0.1), 8)
    C.compile_network(mnist_spec((8192, 24), dropout=0.1), 8)  # whole words: 2 pixels of 512


def test_dropout_of_a_batch_under_a_word_of_images():
    """A batch of 4 images is one word of the batch-packed layout: dropout over a 1-feature
    vector (one word per image row, so no tile of some words either) takes a tile of that
    word. The regression's case 87 of seed 3 (784-1-drop0.25-21-drop0.25-10 at batch 4) found
    the tile search with no candidate (a TypeError in its error path)."""
    ep = T.lower(C.compile_network(mnist_spec((1, 21), dropout=0.25), 4))
    tiles = [t.gemm for t in ep.tiles if t.parent.name == "dropout_00/drop"]
    assert [(g.a.layout, g.m, g.k) for g in tiles] == [("col", 4, 1), ("row", 4, 1)]
