"""Where the unit testbenches' real-data testcases take their training tensors from.

A `TensorSource` names a folder of vector sets in the reference format (`TAG_init.npz`,
`TAG_stepK.npz`, ...) and which set plays which part: a trained MLP (clipping and the negative
ReLU branch exercised), an MLP at initialisation, and a CNN. The official implementation's sets in
`../shared/refvectors` are the default; without them the flow exports sets from the golden model
trained on the embedded MNIST subset. The source crosses into the simulator as `tensors.json` in
the cocotb test folder.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from model.conform import VectorSet, load_set
from model.numerics import NitroError
from model.paths import SHARED_VECTORS
from model.vectors import set_file
from sim.job import SimJob


@dataclass(frozen=True)
class TensorSource(SimJob):
    FILE: ClassVar[str] = "tensors.json"
    folder: str
    trained_mlp: str
    initial_mlp: str
    cnn: str | None = None
    description: str = ""

    def _tag(self, which: str) -> str:
        tag = getattr(self, which)
        if tag is None:
            raise NitroError(f"tensor source {self.description or self.folder} has no {which} set")
        return tag

    def vector_set(self, which: str = "trained_mlp") -> VectorSet:
        """The set playing `which`: its network (the layers' amp and decay), lr_inv and arrays."""
        return load_set(Path(self.folder), self._tag(which))

    def load(self, part: str, which: str = "trained_mlp") -> dict[str, np.ndarray]:
        """Every array of `<tag>_<part>.npz` of the set playing `which` (a field name)."""
        path = set_file(self.folder, self._tag(which), part)
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except OSError as exc:
            raise NitroError(f"cannot read training tensors {path}: {exc}") from None

    def save(self, folder: Path) -> None:
        """Into the cocotb test folder, which is the simulator's working directory: so the
        tensor folder is stored absolute."""
        SimJob.save(replace(self, folder=str(Path(self.folder).resolve())), folder)


def official() -> TensorSource:
    """The official implementation's vector sets beside the checkout."""
    return TensorSource(str(SHARED_VECTORS), "mlp_warm1500", "mlp", "cnn",
                        f"the official implementation's vectors ({SHARED_VECTORS})")
