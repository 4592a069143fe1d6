"""Experiment configuration: TOML schema, validation and defaults (spec 7).

A config file has the tables [data], [network], [train], [schedule], [quirks] and [numerics];
every key is checked, unknown keys are errors naming the key, so a typo never silently falls back
to a default.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .numerics import NitroError, WidthPolicy, Widths
from .optim import Schedule, ScheduleConfig
from .spec import Hyper, NetworkSpec, Quirks, build_cnn, build_mlp


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"
    crop_padding: int = 0  # RandomCrop padding (0: no augmentation)
    flip: bool = False  # RandomHorizontalFlip
    onehot_value: int = 32


@dataclass(frozen=True)
class NetworkConfig:
    kind: str = "mlp"  # "mlp" or "cnn"
    hidden: tuple[int, ...] = (100, 50)
    architecture: tuple[tuple, ...] = ()  # cnn: ("Conv2d", C, k, s, p) / ("MaxPool2d", k, s)
    pred_decoder_dim: int = 4096
    slope_inv: int = 4
    dropout: float = 0.0  # mlp: after every block; cnn: the "fc" dropout placement


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 42
    batch_size: int = 64
    epochs: int = 150
    lr_inv: int = 512
    lr_amp: int = 640
    fwd_decay_inv: int = 12000
    subnet_decay_inv: int = 3000
    eval_batch: int = 64  # test accuracy over fdiv(N_test, eval_batch) full batches (spec 6.4)


@dataclass(frozen=True)
class NumericsConfig:
    mode: str = "wrap"  # "wrap" (reference) or "check" (fail on the first overflow)
    widths: Widths = field(default_factory=Widths)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    quirks: Quirks = field(default_factory=Quirks)
    numerics: NumericsConfig = field(default_factory=NumericsConfig)
    source: str = ""  # the TOML text, kept so checkpoints carry their config

    def hyper(self) -> Hyper:
        t = self.train
        return Hyper(t.lr_amp, t.fwd_decay_inv, t.subnet_decay_inv, self.network.slope_inv)

    def build_spec(self, input_shape: tuple[int, int, int]) -> NetworkSpec:
        n = self.network
        if n.kind == "mlp":
            return build_mlp(input_shape, list(n.hidden), self.hyper(), n.dropout, self.quirks)
        return build_cnn(input_shape, [tuple(e) for e in n.architecture], list(n.hidden), self.hyper(),
                         n.pred_decoder_dim, n.dropout, self.quirks)

    def policy(self) -> WidthPolicy:
        return WidthPolicy(self.numerics.widths, self.numerics.mode)

    def make_schedule(self) -> Schedule:
        return Schedule(self.train.lr_inv, self.schedule)

    def digest(self) -> str:
        """Hash of everything that shapes training (not the name), to match checkpoints to configs."""
        d = asdict(self)
        d.pop("source"), d.pop("name")
        return hashlib.sha256(repr(sorted(d.items())).encode()).hexdigest()[:16]


_EXPECTED_TYPES = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}


def _section(cls, table: Any, where: str, convert: dict | None = None):
    """Instantiate dataclass `cls` from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(table, dict):
        raise NitroError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in table.items():
        if key not in known:
            raise NitroError(f"unknown key '{where}.{key}' (known: {', '.join(sorted(known))})")
        if convert and key in convert:
            kwargs[key] = convert[key](value, f"{where}.{key}")
            continue
        default = getattr(cls(), key)
        ok = _EXPECTED_TYPES.get(type(default))
        if ok and (not isinstance(value, ok) or (type(default) is int and isinstance(value, bool))):
            raise NitroError(f"'{where}.{key}' must be {type(default).__name__}, got {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except NitroError as exc:
        raise NitroError(f"[{where}]: {exc}") from None


def _int_list(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                              for v in value):
        raise NitroError(f"'{where}' must be a list of positive integers, got {value!r}")
    return tuple(value)


def _architecture(value: Any, where: str) -> tuple[tuple, ...]:
    if not isinstance(value, list) or not all(isinstance(e, list) and e for e in value):
        raise NitroError(f"'{where}' must be a list of layer entries like [\"Conv2d\", 128, 3, 1, 1]")
    for i, e in enumerate(value):
        if e[0] not in ("Conv2d", "MaxPool2d"):
            raise NitroError(f"'{where}[{i}]': unknown layer type {e[0]!r} (Conv2d, MaxPool2d)")
    return tuple(tuple(e) for e in value)


def _widths(value: Any, where: str) -> Widths:
    return _section(Widths, value, where)


def parse_config(text: str, name: str = "experiment") -> ExperimentConfig:
    """Parse and validate a TOML experiment config."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NitroError(f"config {name}: invalid TOML: {exc}") from None
    sections = {"data": DataConfig, "network": NetworkConfig, "train": TrainConfig,
                "schedule": ScheduleConfig, "quirks": Quirks, "numerics": NumericsConfig}
    unknown = set(doc) - set(sections) - {"name"}
    if unknown:
        raise NitroError(f"config {name}: unknown table(s) {sorted(unknown)} (known: {sorted(sections)})")
    convert = {"hidden": _int_list, "architecture": _architecture, "widths": _widths}
    parts = {k: _section(cls, doc.get(k, {}), k, convert) for k, cls in sections.items()}
    cfg = ExperimentConfig(name=str(doc.get("name", name)), source=text, **parts)
    _validate(cfg)
    return cfg


def _validate(cfg: ExperimentConfig) -> None:
    n, t = cfg.network, cfg.train
    if n.kind not in ("mlp", "cnn"):
        raise NitroError(f"'network.kind' must be 'mlp' or 'cnn', got {n.kind!r}")
    if n.kind == "cnn" and not n.architecture:
        raise NitroError("'network.architecture' is required for a cnn")
    if n.kind == "mlp" and n.architecture:
        raise NitroError("'network.architecture' is only for kind = 'cnn'")
    for key in ("batch_size", "epochs", "lr_inv", "eval_batch"):
        if getattr(t, key) <= 0:
            raise NitroError(f"'train.{key}' must be positive, got {getattr(t, key)}")
    if cfg.numerics.mode not in ("wrap", "check"):
        raise NitroError(f"'numerics.mode' must be 'wrap' or 'check', got {cfg.numerics.mode!r}")
    if cfg.data.crop_padding < 0:
        raise NitroError("'data.crop_padding' must be >= 0")
    # Build once with a nominal input so that layer-level errors (slope, dropout, geometry) surface now.
    side = 32 if cfg.data.dataset in ("cifar10", "cifar-10") else 28
    cfg.build_spec((3 if side == 32 else 1, side, side))


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise NitroError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        return parse_config(text, path.stem)
    except NitroError as exc:
        msg = str(exc)
        raise NitroError(msg if msg.startswith(f"config {path.stem}") else f"config {path}: {msg}") from None
