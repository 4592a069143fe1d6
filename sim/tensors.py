"""Where the unit testbenches' real-data testcases take their training tensors from.

A `TensorSource` names a folder of vector sets in the reference format (`TAG_init.npz`,
`TAG_stepK.npz`, ...) and which set plays which part: a trained MLP (clipping and the negative
ReLU branch exercised), an MLP at initialisation, and a CNN. The official implementation's sets in
`../shared/refvectors` are the default; without them the flow exports sets from the golden model
trained on the embedded MNIST subset. The source crosses into the simulator as `tensors.json` in
the cocotb test folder.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.numerics import NitroError
from model.paths import SHARED_VECTORS
from model.vectors import set_file

FILE = "tensors.json"


@dataclass(frozen=True)
class TensorSource:
    folder: str
    trained_mlp: str
    initial_mlp: str
    cnn: str | None = None
    description: str = ""

    def load(self, part: str, which: str = "trained_mlp") -> dict[str, np.ndarray]:
        """Every array of `<tag>_<part>.npz` of the set playing `which` (a field name)."""
        tag = getattr(self, which)
        if tag is None:
            raise NitroError(f"tensor source {self.description or self.folder} has no {which} set")
        path = set_file(self.folder, tag, part)
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except OSError as exc:
            raise NitroError(f"cannot read training tensors {path}: {exc}") from None

    def save(self, folder: Path) -> None:
        """Into the cocotb test folder, which is the simulator's working directory: so the
        tensor folder is stored absolute."""
        doc = asdict(self) | {"folder": str(Path(self.folder).resolve())}
        (Path(folder) / FILE).write_text(json.dumps(doc))

    @staticmethod
    def read(folder: Path = Path(".")) -> TensorSource:
        return TensorSource(**json.loads((Path(folder) / FILE).read_text()))


def official() -> TensorSource:
    """The official implementation's vector sets beside the checkout."""
    return TensorSource(str(SHARED_VECTORS), "mlp_warm1500", "mlp", "cnn",
                        f"the official implementation's vectors ({SHARED_VECTORS})")
