"""Bounded model checks of the DMA masters against the AXI4 rules, and of the AXI4-Lite register
file against the subordinate's (sim.formal_axi): every rule holds for 16 cycles from reset
against any slave (or manager) and command source, every cover is reached in
them (the environment is not too tight to exercise the rules), and a master with a fault fails."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from amaranth import Const

from hw.dma import DmaReader
from sim.formal import prove
from sim.formal_axi import CHECKS, ReaderCheck

RUNS = [(name, cover) for name in CHECKS for cover in (False, True)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("formal_axi")
    with ThreadPoolExecutor(max_workers=2) as ex:
        futs = {(n, c): ex.submit(prove, n, CHECKS[n](), "yices", root / f"{n}_{c}", c)
                for n, c in RUNS}
        return {k: f.result() for k, f in futs.items()}


@pytest.mark.parametrize("name,cover", RUNS, ids=[f"{n}-{'cover' if c else 'assert'}"
                                                   for n, c in RUNS])
def test_axi_rules(name, cover, results):
    r = results[name, cover]
    print(f"[formal] {name} {'cover' if cover else 'assert'}: "
          f"{'PASS' if r.passed else 'FAIL'} in {r.seconds:.1f} s")
    assert r.passed, r.log[-3000:]
    if cover:
        assert r.log.count("Reached cover statement") >= 4, r.log


class _NoRoomGate(DmaReader):
    """A reader that issues bursts whether or not its buffer has room for their beats."""

    def _issue(self, m, valid, ready, addr, length, gate=1):
        return super()._issue(m, valid, ready, addr, length, gate=Const(1))


def test_reader_without_room_gate_fails(tmp_path):
    dut = _NoRoomGate(12, 32, max_burst=4, max_outstanding=2)
    r = prove("dma_reader_no_room", ReaderCheck(dut=dut), workdir=tmp_path)
    assert not r.passed and "Assert failed" in r.log, r.log[-3000:]
