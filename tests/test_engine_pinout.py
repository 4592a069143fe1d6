"""The synthesis top's pin constraints (sim.engine.pinout): every engine pin on its own package
pin, each AXI port on consecutive pins of the perimeter walk, the clock on its clock input."""
import re

import pytest

from hw.engine.params import EngineParams
from sim.engine.pinout import CLOCK_PIN, channel_lpf, perimeter_sites
from sim.device import ENGINE_DEVICE
from sim.engine.synth import engine_lpf, engine_pins, engine_verilog

SITES = perimeter_sites(ENGINE_DEVICE.device, ENGINE_DEVICE.package)


def test_perimeter_walks_every_package_pin_once():
    assert len(SITES) == len(set(SITES)) == 365  # the LFE5U-85F's user I/Os in the CABGA756
    assert CLOCK_PIN in SITES


def test_engine_lpf_puts_each_port_on_consecutive_perimeter_pins():
    located = dict(re.findall(r'LOCATE COMP "([^"]+)" SITE "([^"]+)";', engine_lpf(EngineParams())))
    assert located.pop("clk") == CLOCK_PIN
    widths = dict(engine_pins(EngineParams()))
    assert len(located) == sum(widths.values()) == 359
    assert len(set(located.values())) == len(located) and set(located.values()) <= set(SITES)
    walk = [s for s in SITES if s != CLOCK_PIN]
    for name, width in widths.items():
        bits = [name] if width == 1 else [f"{name}[{i}]" for i in range(width)]
        at = [walk.index(located[b]) for b in bits]
        assert at == list(range(at[0], at[0] + width)), name


def test_too_many_pins_is_refused():
    with pytest.raises(ValueError, match="do not fit"):
        channel_lpf([("bus", 365)], ENGINE_DEVICE.device, ENGINE_DEVICE.package)


def test_synthesis_top_generates_with_its_pins():
    """The Verilog that yosys reads (the ECP5 primitives, a sync domain without reset): every
    constrained pin is a port of `top`."""
    v = engine_verilog(EngineParams())
    ports = set(re.findall(r"^\s*(?:input|output)\s+(?:wire\s+)?(?:\[\d+:0\]\s+)?(\S+);", v, re.M))
    assert {name for name, _ in engine_pins(EngineParams())} | {"clk"} <= ports
    assert "MULT18X18D" in v and "TRELLIS_FF" in v


def test_pinless_probe_keeps_every_engine_port_behind_a_register():
    """The timing probe: one pin per AXI channel and direction (and the clock); every engine port
    bit in exactly one channel group, so nothing of the engine is left unconnected or optimised."""
    from sim.engine.synth import EnginePinlessTop

    top = EnginePinlessTop(EngineParams())
    assert sum(len(v) for ports in top.groups.values() for v in ports) == 359
    assert len(top.io) == 21 and len(top.ports()) == 22  # 2 AXI ports x 5 channels x 2 directions, irq
    v = engine_verilog(EngineParams(), lambda p: top)
    ports = re.search(r"^module top\(([^)]*)\);", v, re.M).group(1)
    assert {s.strip() for s in ports.split(",")} == {"clk", *(s.name for s in top.io.values())}
    assert "MULT18X18D" in v
