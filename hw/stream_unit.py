"""Shared skeleton of every pipelined NITRO-D unit: one stream in, one stream out, free-running pipe.

A unit is a fixed-latency pipeline whose datapath registers have no clock enable: a global stall
(`en = ~o.valid | o.ready` on every register) would be one net with a fan-out of hundreds of
flip-flop enables, on the critical path of every unit.
Back-pressure is honoured exactly all the same:

* an output skid FIFO (LUT RAM on ECP5) of `capacity` entries takes whatever leaves the pipe while
  the consumer is not ready; when it is empty and the consumer is ready, the pipe's last register
  drives the output directly, so the latency (input transfer -> output valid) is the datapath's
  register levels, with no extra cycle;
* input acceptance is gated by credits: `i.ready` is one bit of a counter register of the transfers
  in flight (in the pipe or in the FIFO), so nothing is accepted that the FIFO could not hold.
  capacity >= latency + 1 keeps a never-stalled stream at one transfer per cycle.

A unit built with `always_ready=True` has neither: its consumer takes every output.

Data registers are reset-less (a bubble carries garbage that the valid chain ignores), so synthesis
adds no reset muxes.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.hdl import ShapeCastable
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

MIN_CAPACITY = 16  # one ECP5 TRELLIS_DPR16X4 is 16 deep: a shallower FIFO costs the same


class Stages:
    """Registers of one pipeline; `reg` adds one register level to a value.

    `en` (optional) is a clock enable for every register (None: free-running). `platform` is the
    elaboration platform, which `hw.dsp.registered_mul` uses to pick the ECP5 DSP primitive.
    """

    def __init__(self, m: Module, en: Value | None = None, platform=None) -> None:
        self.m, self.en, self.platform = m, en, platform
        self._names: dict[str, int] = {}

    def unique(self, prefix: str) -> str:
        """`prefix`, or prefix + a number when already used (submodule names must be unique)."""
        k = self._names.get(prefix, 0)
        self._names[prefix] = k + 1
        return prefix if k == 0 else f"{prefix}_{k}"

    def reg(self, value, shape: ShapeCastable | None = None, name: str | None = None):
        """A register loaded from `value` every cycle (shape: the value's, or `shape`)."""
        if shape is None:
            shape = value.shape()
        r = Signal(shape, name=name, reset_less=True)
        if self.en is None:
            self.m.d.sync += r.eq(value)
        else:
            with self.m.If(self.en):
                self.m.d.sync += r.eq(value)
        return r

    def delay(self, value, n: int, name: str | None = None):
        """`value` delayed by n pipeline levels (n >= 0)."""
        for k in range(n):
            value = self.reg(value, name=f"{name}_d{k + 1}" if name else None)
        return value


def skid_capacity(latency: int) -> int:
    """FIFO entries (= credits) for a pipe of `latency` levels: a power of two >= latency + 1."""
    return max(MIN_CAPACITY, 1 << latency.bit_length())


def banked_ram_fifo(m: Module, data: Value, depth: int, banks: int, push: Value, pop: Value,
                    names) -> Value:
    """The memory of a FIFO: `banks` asynchronous-read memories (LUT RAM on ECP5) of equal slices
    of `data`, each with its own copy of the write and read pointers (synthesis does not merge
    registers that feed back into themselves, so each copy stays by its bank: one pointer
    addressing a wide FIFO was a die-wide net). `push` writes `data`, `pop` moves to the next
    word; returns the head word. `names(b)`: bank b's (memory, write pointer, read pointer)."""
    if banks < 1 or len(data) % banks:
        raise ValueError(f"{len(data)} bits do not split into {banks} banks")
    bw = len(data) // banks
    head = []
    for b in range(banks):
        mem_name, w_name, r_name = names(b)
        # distributed RAM, also when the head is registered behind it (yosys would otherwise
        # merge that register into the read port and take a block RAM: 5.83 ns clock-to-out)
        m.submodules[mem_name] = mem = Memory(shape=unsigned(bw), depth=depth, init=[],
                                              attrs={"ram_style": "distributed"})
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        wptr, rptr = Signal(range(depth), name=w_name), Signal(range(depth), name=r_name)
        m.d.comb += [wr.addr.eq(wptr), wr.data.eq(data[b * bw:(b + 1) * bw]), wr.en.eq(push),
                     rd.addr.eq(rptr)]
        with m.If(push):
            m.d.sync += wptr.eq(wptr + 1)
        with m.If(pop):
            m.d.sync += rptr.eq(rptr + 1)
        head.append(rd.data)
    return Cat(*head)


def skid_output(m: Module, pipe_valid: Value, pipe: Value, o, cap: int, banks: int = 1,
                pipe_valid_next: Value | None = None) -> tuple[Signal, Signal, Signal]:
    """Drive stream `o` from a pipe end that cannot stall, through a `cap`-entry skid FIFO.

    When the FIFO is empty and o.ready is high, the pipe's value leaves in the same cycle (no added
    latency); otherwise it is written into the FIFO (asynchronous-read memory: LUT RAM on ECP5),
    whose head is the output. The caller must never present more values than the FIFO can hold
    (credits). Returns the FIFO's fill register (0..cap) and its push and pop strobes.

    `banks` > 1 splits a wide FIFO into that many memories (`banked_ram_fifo`), each with its own
    pointers: one pointer addressing every LUT RAM of a wide row (the MAC array's 256-bit rows:
    64 of them) would be a die-wide net.

    `pipe_valid_next` (the value `pipe_valid` takes at the next edge) makes `o.valid` a register
    of its own, so that the consumer's handshake logic starts at a flip-flop rather than behind
    the FIFO's `nonempty | pipe_valid`.
    """
    fill = Signal(range(cap + 1), name="skid_fill")
    nonempty = Signal(name="skid_nonempty")
    push, pop = Signal(), Signal()
    m.d.comb += [push.eq(pipe_valid & (nonempty | ~o.ready)), pop.eq(nonempty & o.ready)]

    def names(b):
        sfx = str(b) if banks > 1 else ""
        return f"skid{sfx}", f"skid_wptr{sfx}", f"skid_rptr{sfx}"

    head = banked_ram_fifo(m, pipe, cap, banks, push, pop, names)
    m.d.comb += o.payload.eq(Mux(nonempty, head, pipe))
    # nonempty without the fill adder on the path from o.ready (the unit's shortest cycle). A
    # banked FIFO's push / pop fan out to every bank, so its fill counts from their inputs
    # (up = push & ~pop, down = pop & ~push): the fill adder is not a load of those long nets.
    # (One bank keeps push / pop: short nets, where the longer form only costs LUTs.)
    if banks > 1:
        up, down = pipe_valid & ~o.ready, nonempty & ~pipe_valid & o.ready
    else:
        up, down = push, pop
    nonempty_next = Signal(name="skid_nonempty_next")
    m.d.comb += nonempty_next.eq(push | fill[1:].any() | (nonempty & ~pop))
    m.d.sync += [fill.eq(fill + up - down), nonempty.eq(nonempty_next)]
    if pipe_valid_next is None:
        m.d.comb += o.valid.eq(nonempty | pipe_valid)
    else:
        o_valid = Signal(name="skid_o_valid")
        m.d.sync += o_valid.eq(nonempty_next | pipe_valid_next)
        m.d.comb += o.valid.eq(o_valid)
    return fill, push, pop


class RegisterSlice(wiring.Component):
    """A stream through registers both ways (a `BEATS`-entry skid buffer): `o.valid`, `o.payload`
    and `i.ready` are flip-flops, so neither side's handshake logic reaches into the other's.
    One beat per cycle, one cycle of latency; a beat that finds the output held waits in the
    skid register, and `i.ready` falls until it has moved on."""

    BEATS = 2  # the output register and the skid register

    def __init__(self, width: int) -> None:
        super().__init__({"i": In(stream.Signature(unsigned(width))),
                          "o": Out(stream.Signature(unsigned(width)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        out_v, skid_v = Signal(name="out_valid"), Signal(name="skid_valid")
        out_d, skid_d = (Signal(len(self.i.payload), name=n, reset_less=True) for n in ("out", "skid"))
        m.d.comb += [self.o.valid.eq(out_v), self.o.payload.eq(out_d), self.i.ready.eq(~skid_v)]
        with m.If(self.o.ready | ~out_v):
            with m.If(skid_v):
                m.d.sync += [out_d.eq(skid_d), out_v.eq(1), skid_v.eq(0)]
            with m.Else():
                m.d.sync += [out_d.eq(self.i.payload), out_v.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_v):
            m.d.sync += skid_v.eq(1)
        # an empty skid register takes every beat offered: it is read only once skid_v is set,
        # which happens in the cycle it took the beat that waited, so its enable is one flip-flop
        with m.If(~skid_v):
            m.d.sync += skid_d.eq(self.i.payload)
        return m


class CreditFIFO(wiring.Component):
    """A FIFO for a writer that holds a credit per free entry and so never writes into a full one:
    the write is not gated by the fill level. (In `amaranth.lib.fifo` the level's compare sits in
    front of every LUT RAM's write enable; on the engine's 192-bit store FIFO that loop spanned
    the die.) Ports and timing are SyncFIFOBuffered's: r_rdy and r_data are registers, a word is
    readable two edges after its write; `depth` words in memory and one in the output register.
    The memory is `depth` (>= 2) rounded up to a power of two deep, in `banks`
    (`banked_ram_fifo`). `popped`: the memory's head moved to the output register this cycle, so
    a writer's credit can be returned as the memory frees a word."""

    def __init__(self, width: int, depth: int, banks: int = 1) -> None:
        if depth < 2 or banks < 1 or width % banks:
            raise ValueError(f"CreditFIFO: depth {depth} < 2 (a 1-deep memory's address has no "
                             f"bits), or {width} bits not in {banks} equal banks")
        self.width, self.banks = width, banks
        self.depth = 1 << (depth - 1).bit_length()
        super().__init__({"w_en": In(1), "w_data": In(width), "r_en": In(1),
                          "r_rdy": Out(1), "r_data": Out(width), "popped": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        held = Signal(range(self.depth + 1))  # words in memory
        held_nz = Signal()  # held != 0, a register of its own
        pop = self.popped  # the memory's head leaves into the output register
        head = banked_ram_fifo(m, self.w_data, self.depth, self.banks, self.w_en, pop,
                               lambda b: (f"mem{b}", f"wptr{b}", f"rptr{b}"))
        out = Signal(self.width, reset_less=True)
        m.d.comb += [pop.eq(held_nz & (~self.r_rdy | self.r_en)), self.r_data.eq(out)]
        with m.If(pop):
            m.d.sync += [out.eq(head), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        m.d.sync += [held.eq(held + self.w_en - pop),
                     held_nz.eq(self.w_en | held[1:].any() | (held_nz & ~pop))]
        return m


class PipelinedUnit(wiring.Component):
    """Base of the elementwise units. Subclasses set `latency` and implement `datapath`.

    `datapath(m, st, payload)` builds exactly `latency` register levels with `st.reg` (or
    `hw.dsp.registered_mul`, two levels) and returns the output payload: a value (normally the last
    register), a dict of struct fields or a list of array elements. Latency is cycles from the input
    transfer to the output becoming valid when the output is not stalled.

    `always_ready=True` is for a consumer that takes every output (the training engine's): both
    streams are `always_ready` (ready is Const(1)) and the unit is the bare pipe, without the skid
    FIFO and the credit counter, which would be dead logic in front of every output bit.
    """

    latency: int

    def __init__(self, in_shape: ShapeCastable, out_shape: ShapeCastable, *,
                 always_ready: bool = False) -> None:
        if not isinstance(always_ready, bool):
            raise TypeError(f"always_ready must be a bool, got {always_ready!r}")
        super().__init__({
            "i": In(stream.Signature(in_shape, always_ready=always_ready)),
            "o": Out(stream.Signature(out_shape, always_ready=always_ready)),
        })

    def datapath(self, m: Module, st: Stages, payload):
        raise NotImplementedError

    def elaborate(self, platform) -> Module:
        m = Module()
        st = Stages(m, None, platform)
        out = self.datapath(m, st, self.i.payload)
        pipe = Signal(self.o.payload.shape(), name="pipe_out")
        if isinstance(out, dict):  # struct payload, field by field
            m.d.comb += [pipe[k].eq(v) for k, v in out.items()]
        elif isinstance(out, list):  # array payload, element by element
            m.d.comb += [pipe[k].eq(v) for k, v in enumerate(out)]
        else:
            m.d.comb += pipe.eq(out)

        in_fire = Signal()
        m.d.comb += in_fire.eq(self.i.valid & self.i.ready)
        valid = in_fire
        for k in range(self.latency):
            v = Signal(name=f"valid_{k + 1}")
            m.d.sync += v.eq(valid)
            valid = v
        pipe_valid = valid
        if self.o.signature.always_ready:
            m.d.comb += [self.o.valid.eq(pipe_valid), self.o.payload.eq(pipe)]
            return m

        cap = skid_capacity(self.latency)
        skid_output(m, pipe_valid, Value.cast(pipe), self.o, cap)

        # Credits: transfers accepted and not yet delivered (in the pipe or in the FIFO).
        in_flight = Signal(range(cap + 1), name="in_flight")
        out_fire = self.o.valid & self.o.ready
        m.d.sync += in_flight.eq(in_flight + in_fire - out_fire)
        m.d.comb += self.i.ready.eq(~in_flight[-1])  # cap is a power of two: bit log2(cap) = full
        return m


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """Validate an integer elaboration parameter (bool rejected) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value
