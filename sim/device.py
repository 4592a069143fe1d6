"""The FPGA parts the flows target, as yosys and nextpnr-ecp5 name them: light enough for the
command line's argument parser."""
from __future__ import annotations

from dataclasses import asdict, dataclass

SPEED_GRADES = (6, 7, 8)  # the LFE5U-85F's; 6, the slowest and the common one on boards, is the target
_NEXTPNR_SIZE = {"LFE5U-85F": "--85k"}


@dataclass(frozen=True)
class Device:
    device: str
    package: str
    speed: int

    def nextpnr_args(self, speed: int | None = None) -> list[str]:
        """nextpnr-ecp5's options for this part (at speed grade `speed`, default its own)."""
        return [_NEXTPNR_SIZE[self.device], "--package", self.package, "--speed",
                str(self.speed if speed is None else speed)]

    def part(self) -> str:
        """Lattice's part number, e.g. LFE5U-85F-6BG381 (CABGA381 packages are ordered as BG381)."""
        return f"{self.device}-{self.speed}{self.package.replace('CABGA', 'BG')}"

    def record(self) -> dict:
        """The part as a record names it (device, package, speed)."""
        return asdict(self)


ENGINE_DEVICE = Device("LFE5U-85F", "CABGA756", 6)  # the engine, its AXI ports on pins
UNIT_DEVICE = Device("LFE5U-85F", "CABGA381", 6)  # the units alone (the ULX3S's package)
