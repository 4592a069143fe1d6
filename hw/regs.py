"""A control/status register file behind an AXI4-Lite subordinate port, generated from one
declarative register map (the same table documents the map, builds the RTL and drives the host).

Access kinds:
  rw     read/write, byte strobes honoured; the value drives an output port
  ro     read-only, the value comes from an input port (status, counters)
  const  read-only constant (ID and parameter block)
  pulse  write-only: the bits written as 1 appear on the output port for one cycle (start)
  w1c    sticky: bits set by the input port (events), cleared by writing 1 (done, error)
A map may name an interrupt: irq = OR of (w1c register & rw enable register), both named.
Reads of unmapped words and writes to unmapped or read-only words answer SLVERR.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from functools import reduce

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import RESP_OKAY, RESP_SLVERR, axilite

ACCESS = ("rw", "ro", "const", "pulse", "w1c")


@dataclass(frozen=True)
class Register:
    name: str
    offset: int  # byte offset of its 32-bit word
    access: str
    width: int = 32
    reset: int = 0  # rw: value after reset; const: the value
    doc: str = ""


@dataclass(frozen=True)
class Constant:
    """A named value a driver needs beside the offsets: a status bit, an error code."""
    name: str
    value: int
    doc: str = ""


@dataclass(frozen=True)
class RegisterMap:
    registers: tuple[Register, ...]
    irq: tuple[str, str] | None = None  # (w1c status register, rw enable register)
    addr_width: int = 12
    constants: tuple[Constant, ...] = ()

    def __post_init__(self) -> None:
        names, offsets = set(), set()
        for r in self.registers:
            if r.access not in ACCESS:
                raise ValueError(f"register {r.name}: access must be one of {ACCESS}, got {r.access!r}")
            if r.offset % 4 or not 0 <= r.offset < (1 << self.addr_width):
                raise ValueError(f"register {r.name}: offset {r.offset:#x} is not a word in the map")
            if not 1 <= r.width <= 32 or not 0 <= r.reset < (1 << r.width):
                raise ValueError(f"register {r.name}: width {r.width} / reset {r.reset:#x} out of range")
            if r.name in names or r.offset in offsets:
                raise ValueError(f"register {r.name}: duplicate name or offset {r.offset:#x}")
            names.add(r.name)
            offsets.add(r.offset)
        for c in self.constants:
            if not 0 <= c.value < 1 << 32:
                raise ValueError(f"constant {c.name}: value {c.value} is not a 32-bit word")
        macros = [name for group in self._defines() for name, _, _ in group] + ["regs_h"]  # + guard
        if bad := [m for m in macros if not re.fullmatch(r"[a-z_][a-z0-9_]*", m)]:
            raise ValueError(f"{bad[0]!r} is not a lower-case C identifier")
        if len(set(macros)) != len(macros):
            raise ValueError(f"the C header would define {max(macros, key=macros.count)!r} twice")
        if self.irq is not None:
            status, enable = (self[n] for n in self.irq)
            if status.access != "w1c" or enable.access != "rw":
                raise ValueError("irq needs a (w1c status, rw enable) register pair")

    def __getitem__(self, name: str) -> Register:
        for r in self.registers:
            if r.name == name:
                return r
        raise KeyError(name)

    def markdown(self) -> str:
        """The map as Markdown tables: the registers by offset, then the constants."""
        rows = ["| offset | register | access | width | reset | description |", "|---|---|---|---|---|---|"]
        rows += [f"| {r.offset:#05x} | {r.name} | {r.access} | {r.width} | {r.reset:#x} | {r.doc} |"
                 for r in sorted(self.registers, key=lambda r: r.offset)]
        if self.constants:
            rows += ["", "| constant | value | meaning |", "|---|---|---|"]
            rows += [f"| {c.name} | {c.value:#x} | {c.doc} |" for c in self.constants]
        return "\n".join(rows)

    def _defines(self) -> tuple[list[tuple[str, str, str | None]], list[tuple[str, str, str]]]:
        """What c_header defines after its prefix: (name, value, comment) of the registers' macros
        (each one's offset, and a constant register's value) and of the constants."""
        regs = []
        for r in sorted(self.registers, key=lambda r: r.offset):
            regs.append((f"{r.name}_offset", f"0x{r.offset:03X}u", f"{r.access}, {r.width}-bit: {r.doc}"))
            if r.access == "const":
                regs.append((f"{r.name}_value", f"0x{r.reset:X}u", None))
        return regs, [(c.name, f"0x{c.value:X}u", c.doc) for c in self.constants]

    def c_header(self, prefix: str) -> str:
        """C macros for a driver: <PREFIX>_<REGISTER>_OFFSET (a byte offset) for every register,
        <PREFIX>_<REGISTER>_VALUE for every constant one, <PREFIX>_<CONSTANT> for the constants."""
        def comment(text: str) -> str:
            return "/* " + text.replace("*/", "* /").replace("/*", "/ *") + " */"

        def define(name: str, value: str, doc: str | None) -> str:
            line = f"#define {prefix}_{name.upper()} {value}"
            return line if doc is None else f"{line} {comment(doc)}"

        guard = f"{prefix}_REGS_H"
        regs, consts = self._defines()
        return "\n".join([comment(f"{prefix}: register map generated by nitro rtl; do not edit"),
                          f"#ifndef {guard}", f"#define {guard}", "",
                          *(define(*d) for d in regs), "", *(define(*d) for d in consts),
                          "", f"#endif /* {guard} */", ""])


class AxiLiteRegisters(wiring.Component):
    """Ports: `bus` (AXI4-Lite subordinate), one port per register that has one (named after it:
    rw and pulse drive out, ro and w1c take in), and `irq` when the map names one."""

    def __init__(self, regmap: RegisterMap) -> None:
        self.regmap = regmap
        ports = {"bus": In(axilite(regmap.addr_width))}
        for r in regmap.registers:
            if r.access in ("rw", "pulse"):
                ports[r.name] = Out(r.width)
            elif r.access in ("ro", "w1c"):
                ports[r.name] = In(r.width)
        if regmap.irq is not None:
            ports["irq"] = Out(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        values = self._storage(m)
        self._write_channel(m, values)
        self._read_channel(m, values)
        if self.regmap.irq is not None:
            status, enable = self.regmap.irq
            m.d.comb += self.irq.eq((values[status] & values[enable]).any())
        return m

    def _storage(self, m: Module) -> dict:
        """The readable value of every register (pulse: none)."""
        values = {}
        for r in self.regmap.registers:
            if r.access == "const":
                values[r.name] = Const(r.reset, r.width)
            elif r.access == "ro":
                values[r.name] = getattr(self, r.name)
            elif r.access in ("rw", "w1c"):
                values[r.name] = Signal(r.width, name=f"{r.name}_q", init=r.reset)
                if r.access == "rw":
                    m.d.comb += getattr(self, r.name).eq(values[r.name])
        return values

    def _write_channel(self, m: Module, values: dict) -> None:
        """A write in two registered steps: address and data held, then one select per register
        decoded from the address and applied (no decode in front of every register's enable and
        reset across the die); no handshake is taken while one is applied."""
        bus = self.bus
        aw_addr, w_data, w_strb = Signal.like(bus.awaddr), Signal.like(bus.wdata), Signal.like(bus.wstrb)
        aw_held, w_held, applying, bvalid, bresp = Signal(), Signal(), Signal(), Signal(), Signal(2)
        idle = ~applying & ~bvalid
        m.d.comb += [bus.awready.eq(~aw_held & idle), bus.wready.eq(~w_held & idle),
                     bus.bvalid.eq(bvalid), bus.bresp.eq(bresp)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_addr.eq(bus.awaddr), aw_held.eq(1)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_data.eq(bus.wdata), w_strb.eq(bus.wstrb), w_held.eq(1)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        mask = Cat(*(w_strb[i].replicate(8) for i in range(len(w_strb))))  # byte strobes -> bits
        write = aw_held & w_held
        decoded = self._decode(m, aw_addr, write, "wr")
        hits = {n: Signal(name=f"{n}_wr_q") for n in decoded}
        m.d.sync += [applying.eq(write), *(hits[n].eq(h) for n, h in decoded.items())]
        with m.If(write):
            m.d.sync += [aw_held.eq(0), w_held.eq(0)]
        with m.If(applying):
            m.d.sync += [bvalid.eq(1), bresp.eq(RESP_SLVERR)]
        for r in self.regmap.registers:
            hit = hits[r.name]
            if r.access == "pulse":
                m.d.sync += getattr(self, r.name).eq(0)
            if r.access == "w1c":  # an event in the clearing cycle is kept
                clear = (w_data & mask)[:r.width] & hit.replicate(r.width)
                m.d.sync += values[r.name].eq((values[r.name] & ~clear) | getattr(self, r.name))
            if r.access in ("rw", "pulse", "w1c"):
                with m.If(hit):
                    m.d.sync += bresp.eq(RESP_OKAY)
                    if r.access == "rw":
                        new = (values[r.name] & ~mask[:r.width]) | (w_data & mask)[:r.width]
                        m.d.sync += values[r.name].eq(new)
                    elif r.access == "pulse":
                        m.d.sync += getattr(self, r.name).eq((w_data & mask)[:r.width])

    def _read_channel(self, m: Module, values: dict) -> None:
        """A read in three registered steps: the address, one select per register decoded from
        it, the selected value (no decode and wide mux behind the bus pins in one cycle); arready
        stays low until the answer is taken."""
        bus = self.bus
        busy, rvalid, rdata, rresp = Signal(), Signal(), Signal.like(bus.rdata), Signal(2)
        addr, addressed, decoded = Signal.like(bus.araddr), Signal(), Signal()
        m.d.comb += [bus.arready.eq(~busy), bus.rvalid.eq(rvalid), bus.rdata.eq(rdata),
                     bus.rresp.eq(rresp)]
        accept = bus.arvalid & bus.arready
        with m.If(accept):
            m.d.sync += [addr.eq(bus.araddr), busy.eq(1)]
        m.d.sync += [addressed.eq(accept), decoded.eq(addressed)]
        hits = self._decode(m, addr, 1, "rd")
        hit_q = {name: Signal(name=f"{name}_rd_q") for name in hits}
        m.d.sync += [hit_q[n].eq(h) for n, h in hits.items()]
        selected = [Mux(hit_q[r.name], values[r.name], 0) for r in self.regmap.registers
                    if r.name in values]  # one select at most: an OR, not a priority chain
        with m.If(decoded):
            m.d.sync += [rvalid.eq(1), rresp.eq(Mux(Cat(*hit_q.values()).any(), RESP_OKAY, RESP_SLVERR)),
                         rdata.eq(reduce(operator.or_, selected, Const(0, len(rdata))))]
        with m.If(rvalid & bus.rready):
            m.d.sync += [rvalid.eq(0), busy.eq(0)]

    def _decode(self, m: Module, addr, enable, channel: str) -> dict:
        """One select per register: `enable` and the word address is its word."""
        hits = {r.name: Signal(name=f"{channel}_{r.name}") for r in self.regmap.registers}
        with m.If(enable):
            with m.Switch(addr[2:]):
                for r in self.regmap.registers:
                    with m.Case(r.offset // 4):
                        m.d.comb += hits[r.name].eq(1)
        return hits
