"""AXI4 and AXI4-Lite ports, declared once as `wiring` signatures (AMBA AXI and ACE spec, IHI 0022).

Members carry the AXI signal names in lower case (`awaddr`, `rdata`, ...) and are flat, so a port
`m_axi` becomes Verilog ports `m_axi__awaddr`, ... which cocotbext-axi binds with
`AxiBus.from_prefix(dut, "m_axi", bus_separator="__")`. Directions are the manager's: a manager
(DMA) port is `Out(axi4(...))`, a subordinate (register file) port `In(axilite(...))`.

A read-only or write-only manager takes the channels it uses (`read=False` / `write=False`);
`connect_channels` ties such a port into a full one. `AxiRegisterSlice` registers every channel
of a port both ways (what an AXI register slice does at a block's boundary).
"""
from __future__ import annotations

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

BURST_INCR = 0b01
RESP_OKAY, RESP_SLVERR, RESP_DECERR = 0b00, 0b10, 0b11
MAX_BURST_BEATS = 256  # AXI4 INCR
BOUNDARY = 4096  # a burst never crosses a 4 KiB address boundary


def burst_split(addr: int, beats: int, beat_bytes: int, max_burst: int):
    """The INCR bursts (address, beats) of `beats` bus words from byte `addr`: at most
    `max_burst` beats each, none across a 4 KiB boundary."""
    while beats:
        n = min(beats, max_burst, (BOUNDARY - addr % BOUNDARY) // beat_bytes)
        yield addr, n
        addr, beats = addr + n * beat_bytes, beats - n


def _check(data_width: int, addr_width: int) -> None:
    if data_width not in (32, 64, 128, 256, 512, 1024):
        raise ValueError(f"AXI data width must be a power of two in 32..1024, got {data_width}")
    if not 12 <= addr_width <= 64:
        raise ValueError(f"AXI address width must be in 12..64, got {addr_width}")


def axi4(addr_width: int = 32, data_width: int = 64, id_width: int = 1, *, read: bool = True,
         write: bool = True) -> wiring.Signature:
    """An AXI4 manager port with INCR-burst fields (no lock/cache/prot/qos/region/user)."""
    _check(data_width, addr_width)
    members = {}
    if write:
        members |= {
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
            "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        }
    if read:
        members |= {
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
            "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        }
    if not members:
        raise ValueError("an AXI4 port needs its read or its write channels")
    return wiring.Signature(members)


def axilite(addr_width: int = 12, data_width: int = 32) -> wiring.Signature:
    """An AXI4-Lite manager port (a register file takes it flipped: `In(axilite())`)."""
    if data_width not in (32, 64):
        raise ValueError(f"AXI4-Lite data width must be 32 or 64, got {data_width}")
    if not 4 <= addr_width <= 64:
        raise ValueError(f"AXI4-Lite address width must be in 4..64, got {addr_width}")
    return wiring.Signature({
        "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def connect_channels(m: Module, full, part) -> None:
    """Tie a read-only or write-only manager port `part` into the full manager port `full`."""
    for name, member in part.signature.members.items():
        if member.flow == Out:
            m.d.comb += getattr(full, name).eq(getattr(part, name))
        else:
            m.d.comb += getattr(part, name).eq(getattr(full, name))


CHANNELS = {"aw": True, "w": True, "b": False, "ar": True, "r": False}  # channel -> manager drives


class AxiRegisterSlice(wiring.Component):
    """`s` (a manager's port: the DMA) to `m` (the bus), every channel through a
    `stream_unit.RegisterSlice`: valid, payload and ready are registers on both sides, so the
    bus's handshakes do not reach the manager's logic in the same cycle (one cycle each way)."""

    def __init__(self, addr_width: int = 32, data_width: int = 64, id_width: int = 1) -> None:
        sig = axi4(addr_width, data_width, id_width)
        super().__init__({"s": In(sig), "m": Out(sig)})

    def elaborate(self, platform) -> Module:
        from .stream_unit import RegisterSlice

        m = Module()
        for ch, forward in CHANNELS.items():
            names = [n for n in self.m.signature.members
                     if n.startswith(ch) and n[len(ch):] not in ("valid", "ready")]
            src, dst = (self.s, self.m) if forward else (self.m, self.s)
            fields = [getattr(src, n) for n in names]
            m.submodules[ch] = sl = RegisterSlice(len(Cat(*fields)))
            m.d.comb += [sl.i.valid.eq(getattr(src, f"{ch}valid")), sl.i.payload.eq(Cat(*fields)),
                         getattr(src, f"{ch}ready").eq(sl.i.ready),
                         getattr(dst, f"{ch}valid").eq(sl.o.valid), sl.o.ready.eq(getattr(dst, f"{ch}ready")),
                         Cat(*(getattr(dst, n) for n in names)).eq(sl.o.payload)]
        return m
