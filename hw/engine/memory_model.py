"""The external memory's timing as the co-simulation models it (`sim/axi_mem.sv`) and the
performance model (`perf.predict`) assumes it: first-beat latency, idle cycles between read beats,
and the percentage of cycles each channel stalls (from a seeded generator in the simulation)."""
from __future__ import annotations

from dataclasses import dataclass

from model.numerics import NitroError

# `--memory KEY=N,...`: each key and the field it sets
OPTION_KEYS = {"latency": "latency", "gap": "gap", "stall": "stall_pct", "seed": "seed"}


@dataclass(frozen=True)
class MemoryModel:
    """The memory model's behaviour (axi_mem.sv): first-beat latency, idle cycles between read
    beats, and the percentage of cycles each channel stalls, from a seeded generator."""

    latency: int = 1
    gap: int = 0
    stall_pct: int = 0
    seed: int = 1

    def __post_init__(self) -> None:
        for key, lo, hi in (("latency", 1, (1 << 16) - 1), ("gap", 0, (1 << 16) - 1),
                            ("stall", 0, 99), ("seed", 0, (1 << 32) - 1)):  # as --memory names them
            v = getattr(self, OPTION_KEYS[key])
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise NitroError(f"memory model: {key} must be an integer in {lo}..{hi}, got {v!r}")

    @property
    def name(self) -> str:
        """What `parse` takes it back from: 'ideal', 'ddr3' or its KEY=N list."""
        return (next((n for n, m in NAMED_MODELS.items() if m == self), None)
                or ",".join(f"{k}={getattr(self, f)}" for k, f in OPTION_KEYS.items()))

    @classmethod
    def parse(cls, text: str) -> MemoryModel:
        """'latency=100,gap=1,stall=30,seed=2' (any subset), 'ideal' (the default) or 'ddr3'."""
        if text in NAMED_MODELS:
            return NAMED_MODELS[text]
        kw = {}
        for part in text.split(","):
            k, sep, v = part.partition("=")
            key, value = k.strip(), v.strip()
            if not sep or key not in OPTION_KEYS or not (value.isascii() and value.isdigit()):
                raise NitroError(f"memory model must be 'ideal', 'ddr3' or KEY=N,... with keys "
                                 f"{', '.join(OPTION_KEYS)} (e.g. latency=100,stall=30,seed=2), got {text!r}")
            if OPTION_KEYS[key] in kw:
                raise NitroError(f"memory model: {key} given twice in {text!r}")
            kw[OPTION_KEYS[key]] = int(value)
        return cls(**kw)


# A DDR3-class memory behind a 64-bit AXI port at 150 MHz: the first beat 200 ns after the
# address (a DDR3 controller's read latency incl. the row activate), then one beat per cycle
# (1.2 GB/s, under a DDR3-1600 x16 device's 3.2 GB/s peak), and 10 % of cycles stalled on every
# channel for refresh, row misses and read/write turnarounds.
DDR3 = MemoryModel(latency=30, gap=0, stall_pct=10, seed=1)
NAMED_MODELS = {"ideal": MemoryModel(), "ddr3": DDR3}  # what --memory takes by name
DDR3_TEXT = ("first beat 30 cycles (200 ns at 150 MHz) after the address, then one beat per cycle "
             "(64 bits; 128 on the `_bus128` engine's port), 10 % of cycles stalled on every channel (refresh, row misses, turnarounds)")
