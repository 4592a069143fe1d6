# amaranth: UnusedElaboratable=no
"""hw.engine.counters.PhaseCounters against a plain count: events of the phase given in the same
cycle, counted two cycles late; a clear one cycle late; a read returns the count as it stood
latency - 3 cycles after the address. Phases change every cycle or stay for long runs, phases
recur, clears fall anywhere, and every counter is read back."""
import numpy as np
import pytest

from hw.engine.counters import PhaseCounters
from hw.engine.params import CTR_KINDS, N_PHASES
from sim.testing import simulate

K = len(CTR_KINDS)


def _stimulus(rng, cycles):
    phase, ph = [], int(rng.integers(N_PHASES))
    for _ in range(cycles):
        if rng.random() < 0.2:  # short runs and long ones
            ph = int(rng.integers(N_PHASES))
        phase.append(ph)
    events = rng.integers(0, 1 << K, cycles)
    clear = rng.random(cycles) < 0.004
    addr = rng.integers(0, N_PHASES * K, cycles)
    return phase, events, clear, addr


def _expected(phase, events, clear, addr, latency):
    """Counter values read at each cycle (None before the first read has come out)."""
    n = len(phase)
    state = np.zeros((n + 1, N_PHASES * K), dtype=np.int64)  # state[t]: during cycle t
    ctr = np.zeros(N_PHASES * K, dtype=np.int64)
    for t in range(n):
        state[t] = ctr
        # the edge ending cycle t applies the clear of cycle t - 1, else the events of cycle t - 2
        if t >= 1 and clear[t - 1]:
            ctr[:] = 0
        elif t >= 2:
            for k in range(K):
                ctr[phase[t - 2] * K + k] += (int(events[t - 2]) >> k) & 1
    state[n] = ctr
    return [int(state[t - 3][addr[t - latency]]) if t >= latency else None for t in range(n + 1)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counters_count_every_event_of_its_phase(seed):
    latency = 7
    rng = np.random.default_rng(seed)
    phase, events, clear, addr = _stimulus(rng, 3000)
    dut = PhaseCounters(latency)
    got = []

    async def bench(ctx):
        for t in range(len(phase)):
            ctx.set(dut.phase, phase[t])
            ctx.set(dut.events, int(events[t]))
            ctx.set(dut.clear, int(clear[t]))
            ctx.set(dut.rd_addr, int(addr[t]))
            got.append(ctx.get(dut.rd_data))
            await ctx.tick()
        got.append(ctx.get(dut.rd_data))

    simulate(dut, bench)
    want = _expected(phase, events, clear, addr, latency)
    checked = [(g, w) for g, w in zip(got, want) if w is not None]
    assert len(checked) > 2900 and sum(w > 0 for _, w in checked) > 1500
    assert [g for g, _ in checked] == [w for _, w in checked]
