"""The order of a program's commands: per run its LOADs, the commands into the command scratchpad,
RUN and STOREs, double-buffered between the two scratchpad sets (`schedule`), and the SYNCs that
keep a transfer from overtaking one it overlaps in external memory (`synced`)."""
from __future__ import annotations

from dataclasses import replace

from .params import SEL_CMEM, EngineParams
from .program import (
    RUN, SOP_END, SOP_LOAD, SOP_STORE, SOP_SWAP, SWAP, SYNC, Command, Transfer, beats_per_word,
    ext_word_bytes, load, store,
)
from .tiles import Run

def ucode_load(run: Run, p: EngineParams) -> Transfer:
    """A run's command words into the command scratchpad."""
    words = run.commands * p.cmd_words
    return Transfer(SEL_CMEM, 0, 1, words, run.ucode_ext, words * ext_word_bytes(p, SEL_CMEM))


def schedule(runs: list[Run], p: EngineParams, prefetch: list[Transfer]) -> tuple[list[Command], int]:
    """Double buffering: each run's LOADs (and command words) go to the host's set while the core
    runs the previous run, SWAP hands them to the core, RUN starts it, and the previous run's
    STOREs drain the other set during the run. A run that loads what the previous run stores
    loads the rest and its command words first (during the run), then waits for the run, stores
    the outputs it needs (SWAP, STOREs, SWAP back), loads them, and the previous run's other
    outputs are stored during its own run: the only bubble. A set keeps the operand block the
    tile order keeps (A or B) for the next single-tile run of the same GEMM that lands there. The
    program ends with the host's side on the set it started with (no program depends on which
    that is). `prefetch` (the next step's first run) is loaded into the host's set during the
    last run, which the next program's first run then finds on the host's side (an even number
    of runs: the warm program starts with the SWAP) or on the core's (odd: it starts with the
    RUN), unless the last run writes bytes it reads. Returns the commands and how many of them
    the warm program skips (0: no prefetch)."""
    cmds: list[Command] = []
    host = 1  # the set the host side reaches
    resident: list = [set(), set()]  # per set: the (GEMM, A or B transfer)s it holds
    owed: list[Transfer] = []  # the outputs of the run last started, not stored yet
    for run in runs:
        kept = resident[host] if len(run.tiles) == 1 else set()
        parent = run.tiles[0].parent
        loads = [x for k, x in enumerate(run.loads) if k > 1 or (id(parent), x) not in kept]
        owed_spans = _spans(owed, p)
        dep = [x for x in loads if _overlap(_spans([x], p), owed_spans)]
        ucode = [load(ucode_load(run, p))]
        if dep:  # the independent loads still overlap the run; then store, swap back, load the rest
            free = [x for x in loads if x not in dep]
            parts = [_cut_by(x, owed_spans, p) for x in dep]
            free += [y for early, _ in parts for y in early]
            dep = [y for _, late in parts for y in late]
            dep_spans = _spans(dep, p)
            need = [x for x in owed if _overlap(_spans([x], p), dep_spans)]
            cmds += [load(x) for x in free] + ucode
            cmds += [SWAP] + [store(x) for x in need] + [SWAP]
            loads, owed, ucode = dep, [x for x in owed if x not in need], []
        resident[host] = run.kept
        cmds += [load(x) for x in loads] + ucode + [SWAP, RUN]
        host ^= 1
        cmds += [store(x) for x in owed]
        owed = run.stores
    if _overlap(_spans(prefetch, p), _spans(owed, p)):
        prefetch = []  # the last run writes what the next first run reads: it cannot go ahead
    skip = (len(prefetch) + (host != 1)) if prefetch else 0
    cmds += [load(x) for x in prefetch]
    cmds += [SWAP] + [store(x) for x in owed]
    host ^= 1
    return cmds + ([SWAP] if host != 1 else []), skip


def synced(cmds: list[Command], p: EngineParams) -> list[Command]:
    """The program with the SYNCs its LOADs need: STOREs run beside the commands after them
    until a SWAP, SYNC or END (`hw.engine.program`), and a LOAD that writes scratchpad words a
    running STORE reads, or reads bytes it writes, waits for it (`_sync_segment`, which may
    reorder a segment's LOADs). Each segment between SWAPs is as `schedule` writes it: a RUN,
    STOREs, then LOADs."""
    out: list[Command] = []
    segment: list[Command] = []
    for c in cmds:
        if c.op in (SOP_SWAP, SOP_END):
            out += _sync_segment(segment, p) + [c]
            segment = []
        else:
            segment.append(c)
    return out + _sync_segment(segment, p)


def _sync_segment(seg: list[Command], p: EngineParams) -> list[Command]:
    """Commands between two SWAPs (a RUN, the previous run's STOREs, the next run's LOADs: the
    order `schedule` writes) with a SYNC before each LOAD that writes scratchpad words a STORE
    before it reads, or reads bytes it writes, while that STORE may still run.

    STOREs move one after another beside the commands after them, a LOAD holds the sequencer
    until it is done, and a SYNC waits for every STORE issued before it. So the LOADs go in
    Johnson's order for two machines in series: those that need fewer STORE beats than they
    take themselves first, fewest first; then the others, longest first. The STOREs a LOAD needs
    (and no LOAD before it) are issued just after the previous SYNC, so they run beside the
    LOADs up to their own SYNC, and the STOREs no LOAD needs after the last SYNC. A STORE keeps
    its order with every STORE that writes its bytes; when two LOADs write the same words, all
    of the segment's LOADs keep their order."""
    rank = {SOP_STORE: 1, SOP_LOAD: 2}
    assert [rank.get(c.op, 0) for c in seg] == sorted(rank.get(c.op, 0) for c in seg), seg
    spans = {k: _spans([c.xfer], p) for k, c in enumerate(seg) if c.xfer is not None}
    hull = {k: (s[0][0], max(e for _, e in s)) for k, s in spans.items()}

    def touch(j: int, k: int) -> bool:  # transfers j and k share external bytes
        return hull[j][0] < hull[k][1] and hull[k][0] < hull[j][1] and _overlap(spans[j], spans[k])

    def same_words(j: int, k: int) -> bool:
        a, b = seg[j].xfer, seg[k].xfer
        return a.sel == b.sel and a.spad < b.spad + b.words and b.spad < a.spad + a.words

    def beats(ks: list[int]) -> int:
        return sum(seg[k].xfer.words * beats_per_word(p, seg[k].xfer.sel) for k in ks)

    stores = [k for k, c in enumerate(seg) if c.op == SOP_STORE]
    loads = [k for k, c in enumerate(seg) if c.op == SOP_LOAD]
    need = {}
    for j in loads:
        ks = {k for k in stores if same_words(j, k) or touch(j, k)}
        for k in reversed(stores):  # and the STOREs before them that write their bytes
            if k not in ks and any(touch(k, i) for i in ks if i > k):
                ks.add(k)
        need[j] = sorted(ks)
    if not any(need.values()):
        return seg
    first = sorted((j for j in loads if beats(need[j]) < beats([j])), key=lambda j: beats(need[j]))
    order = first + sorted((j for j in loads if j not in first), key=lambda j: -beats([j]))
    if any(same_words(a, b) for i, a in enumerate(order) for b in order[i + 1:] if a > b):
        order = loads
    fresh: dict[int | None, list[int]] = {}  # per LOAD, its STOREs no LOAD before it needs
    seen: set[int] = set()
    for j in order:
        fresh[j] = [k for k in need[j] if k not in seen]
        seen.update(fresh[j])
    waits = [j for j in order if fresh[j]] + [None]
    fresh[None] = [k for k in stores if k not in seen]  # after the last SYNC
    following = dict(zip(waits, waits[1:]))
    out = [c for c in seg if c.xfer is None] + [seg[k] for k in fresh[waits[0]]]
    for j in order:
        if fresh[j]:
            out += [SYNC] + [seg[k] for k in fresh[following[j]]]
        out.append(seg[j])
    return out


MAX_CUT_PIECES = 3


def _cut_by(x: Transfer, spans: list[tuple[int, int]], p: EngineParams) -> tuple[list, list]:
    """A load that reads some of `spans` (the previous run's outputs, not stored yet) as the
    pieces that do not (loaded while that run runs) and those that do: runs of whole rows, or of
    words of a one-row transfer; both stay contiguous on chip. An `across` transfer stays whole."""
    bpw = ext_word_bytes(p, x.sel)
    if x.across:
        return [], [x]
    if x.rows == 1:  # words in groups of the same dependence
        marks = [_overlap([(x.ext + w * bpw, x.ext + (w + 1) * bpw)], spans) for w in range(x.row_words)]
        def piece(a, b): return replace(x, spad=x.spad + a, row_words=b - a, ext=x.ext + a * bpw)
    else:
        n = x.row_words * bpw
        marks = [_overlap([(x.ext + r * x.stride, x.ext + r * x.stride + n)], spans) for r in range(x.rows)]
        def piece(a, b): return replace(x, spad=x.spad + a * x.row_words, rows=b - a, ext=x.ext + a * x.stride)
    out: tuple[list, list] = ([], [])
    a = 0
    for b in range(1, len(marks) + 1):
        if b == len(marks) or marks[b] != marks[a]:
            out[marks[a]].append(piece(a, b))
            a = b
    # every piece is a command of its own (a fetch and the memory's first-beat latency): pieces
    # that alternate along the transfer cost more than the early ones gain
    return out if len(out[0]) + len(out[1]) <= MAX_CUT_PIECES else ([], [x])


def _spans(xs: list[Transfer], p: EngineParams) -> list[tuple[int, int]]:
    """The byte intervals of external memory the transfers touch, sorted by start."""
    out = []
    for x in xs:
        n = x.row_words * ext_word_bytes(p, x.sel)
        out += [(x.ext + r * x.stride, x.ext + r * x.stride + n) for r in range(x.rows)]
    return sorted(out)


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] <= b[j][0]:
            i += 1
        elif b[j][1] <= a[i][0]:
            j += 1
        else:
            return True
    return False
