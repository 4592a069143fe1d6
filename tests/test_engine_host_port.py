# amaranth: UnusedElaboratable=no
"""The engine's host port in the Amaranth simulator, for every memory: a read presented three
cycles after a host write returns the new word, two cycles after it still the old one (the
write's RAM edge is the read's RAM edge), each host_read_latency cycles after its address."""
from dataclasses import replace

import numpy as np

from hw.engine.core import Engine
from hw.engine.params import MEM_NAMES, EngineParams
from sim.testing import clocked

SMALL = replace(EngineParams(), amem_c_depth=64, amem_r_depth=64, wmem_depth=64, wtmem_depth=64,
                dmem_depth=64, smem_depth=64, ymem_depth=64, cmem_depth=8)


def test_host_write_then_read_every_memory():
    eng = Engine(SMALL)
    rl = eng.host_read_latency
    rng = np.random.default_rng(4)
    ports = (eng.hw_en, eng.hw_addr, eng.hw_data, eng.hr_addr)
    cycles, words = [], {}
    for sel in MEM_NAMES:
        value = int.from_bytes(rng.bytes(8), "little")  # every memory word is >= 64 bits
        words[sel] = (len(cycles), value)
        # cycle 0: write (sel, 5, value); cycles 2 and 3: read the word; then enough idle
        # cycles for both reads to come back
        plan = [(1, 5, value, 0), (0, 0, 0, 0), (0, 0, 0, 5), (0, 0, 0, 5)] + [(0, 0, 0, 0)] * rl
        cycles += [[(eng.hw_sel, sel), (eng.hr_sel, sel), *zip(ports, op)] for op in plan]
    got = clocked(eng, cycles, eng.hr_data)
    for sel, (start, value) in words.items():
        # data of the read presented in cycle i: after clock edge i + rl - 1
        early, late = got[start + rl + 1], got[start + rl + 2]
        assert early == 0, (MEM_NAMES[sel], early)  # the old word
        assert late == value, (MEM_NAMES[sel], late, value)
