"""Typed jobs for cocotb modules: what the host tells a testbench running inside the simulator,
written as a JSON file into the test folder and read back there (no environment variables)."""
from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import ClassVar

from model.fileio import write_atomic


class SimJob:
    """A job (a frozen dataclass): `save` writes it as FILE into the test folder, `read` inside the
    simulator, whose working folder that is."""

    FILE: ClassVar[str]

    def save(self, folder: Path) -> None:
        write_atomic(Path(folder) / self.FILE, json.dumps(asdict(self)).encode())

    @classmethod
    def read(cls, folder: Path = Path(".")):
        hints = typing.get_type_hints(cls)
        return cls(**{k: _typed(hints[k], v)
                      for k, v in json.loads((Path(folder) / cls.FILE).read_text()).items()})


def _typed(hint, value):
    """A field's JSON value as its declared type: an object back into its dataclass (also where
    the field may be None)."""
    for t in (hint, *typing.get_args(hint)):
        if is_dataclass(t) and isinstance(value, dict):
            return t(**value)
    return value


@dataclass(frozen=True)
class UnitJob(SimJob):
    """The unit under test: its name in sim.units (SIM_UNITS or SIM_TOPS)."""

    FILE: ClassVar[str] = "unit.json"
    unit: str
