# amaranth: UnusedElaboratable=no
"""AXI4 DMA and the AXI4-Lite register file on Verilator against cocotbext-axi's models (issue 13:
the protocol test of both AXI ports), and their parameter checks."""
import pytest

from hw.axi import axi4, axilite
from hw.dma import DmaReader, DmaWriter
from hw.engine.control import control_map
from hw.regs import Register, RegisterMap
from sim.testing import run_unit


@pytest.mark.parametrize("name", ["dma64", "dma128"])
def test_dma_copies_through_axi4(request, name):
    counts = run_unit(name, request, tb_module="sim.tb.tb_dma")
    assert counts["beats copied, 40 % random stalls on every channel"] > 1000


def test_control_registers_over_axilite(request):
    counts = run_unit("control_regs", request, tb_module="sim.tb.tb_regs")
    assert counts["register reads/writes checked"] > 50


def test_engine_ports_against_cocotbext_axi(request):
    """The whole streaming engine with AxiRam (random pauses on every channel) and AxiLiteMaster:
    two training steps and the inference program bit-identical to the golden model; error codes."""
    counts = run_unit("engine_axi", request, tb_module="sim.tb.tb_engine_axi")
    assert counts["weights and outputs of 2 steps and 10 predictions, random pauses on both ports"] > 500
    assert counts["error programs ending in ERROR with their code"] == 2


def test_port_and_map_parameters_are_checked():
    with pytest.raises(ValueError, match="data width"):
        axi4(data_width=48)
    with pytest.raises(ValueError, match="read or its write"):
        axi4(read=False, write=False)
    with pytest.raises(ValueError, match="32 or 64"):
        axilite(data_width=16)
    with pytest.raises(ValueError, match="max_burst"):
        DmaReader(max_burst=12)
    with pytest.raises(ValueError, match="max_outstanding"):
        DmaWriter(max_outstanding=0)
    with pytest.raises(ValueError, match="duplicate"):
        RegisterMap((Register("a", 0, "rw"), Register("b", 0, "ro")))
    with pytest.raises(ValueError, match="not a word"):
        RegisterMap((Register("a", 2, "rw"),))
    with pytest.raises(ValueError, match="access"):
        RegisterMap((Register("a", 0, "rx"),))
    with pytest.raises(ValueError, match="irq needs"):
        RegisterMap((Register("s", 0, "ro"), Register("e", 4, "rw")), irq=("s", "e"))
    table = control_map().markdown()
    assert "| 0x010 | ctrl | pulse | 1 |" in table and table.count("\n") == len(control_map().registers) + 1


def test_dma_on_the_verilated_memory_model(request):
    """The long-run memory model: results bit-identical under ideal, high-latency, reduced-bandwidth
    and randomly stalling memory (two seeds); the run lengths differ as they must."""
    counts = run_unit("dma64_mem", request, tb_module="sim.tb.tb_dma_mem")
    assert counts["beats copied, identical under 5 memory settings"] > 5 * 5000
