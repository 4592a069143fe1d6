"""Experiment configuration: TOML schema, validation and defaults (spec 7).

A config has the tables [data], [network], [train], [schedule], [quirks] and [numerics]. Every key
is checked for its type and range, and unknown keys are errors naming the key, so a typo never
silently falls back to a default. A config *file* must also state [data] dataset, [network] kind
and [train] itself: an empty or truncated file is an error, not 150 epochs of defaults.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import reprlib
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .datasets import image_shape, one_line
from .fileio import PLAIN_NAME_RULE, is_plain_name
from .numerics import NitroError, WidthPolicy, Widths
from .optim import LR_INV, Schedule, ScheduleConfig, sgd_divisor
from .layers import INT32_MAX, SLOPE_INV, check_slope_inv, dropout_rescale
from .spec import Hyper, NetworkSpec, Quirks, build_cnn, build_mlp, consulted_quirks

INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1  # numpy.random.RandomState takes 32-bit seeds
MAX_LAYER_WIDTH = 65536  # hidden units; the paper's widest layer has 4096
MAX_CHANNELS = 4096  # conv output channels; the paper's widest conv has 512
MAX_WEIGHTS = 2**28  # 1 GiB of int32 weights: ten times the paper's largest network
LOSS_GRAD_EXACT_BITS = 16  # quirks.loss_grad_wrap = false stores y_hat - y exactly, as int16


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
    slope_inv: int = SLOPE_INV
    dropout: float = 0.0  # mlp: after every block; cnn: the "fc" dropout placement


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 42
    batch_size: int = 64
    epochs: int = 150
    lr_inv: int = LR_INV
    lr_amp: int = Hyper.lr_amp
    fwd_decay_inv: int = Hyper.fwd_decay_inv
    subnet_decay_inv: int = Hyper.subnet_decay_inv
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

    def quirks_in_effect(self, input_shape: tuple[int, int, int]) -> list[str]:
        """'<name> = <value>' for each quirk set otherwise than the reference that changes how this
        network trains: one the network consults as it trains, or one that shapes its spec."""
        spec = self.build_spec(input_shape)
        consulted, own = consulted_quirks(spec), replace(spec, quirks=Quirks())

        def shape(q: Quirks) -> NetworkSpec:
            return replace(replace(self, quirks=q).build_spec(input_shape), quirks=Quirks())

        return [f"{f.name} = {str(v).lower()}" for f in fields(Quirks)
                if (v := getattr(self.quirks, f.name)) != f.default
                and (f.name in consulted or own != shape(replace(self.quirks, **{f.name: f.default})))]

    def policy(self) -> WidthPolicy:
        return WidthPolicy(self.numerics.widths, self.numerics.mode)

    def make_schedule(self) -> Schedule:
        return Schedule(self.train.lr_inv, self.schedule)

    def digest(self) -> str:
        """Hash of everything that shapes training (not the name), to match checkpoints to configs."""
        d = asdict(self)
        d.pop("source"), d.pop("name")
        return hashlib.sha256(repr(sorted(d.items())).encode()).hexdigest()[:16]


# The tables of a config and the dataclass each one becomes: the schema.
SECTIONS = {"data": DataConfig, "network": NetworkConfig, "train": TrainConfig,
            "schedule": ScheduleConfig, "quirks": Quirks, "numerics": NumericsConfig}
# What a config file must state itself (table -> key, None: the table alone).
_REQUIRED = {"data": "dataset", "network": "kind", "train": None}
# (lowest, highest) value of every integer key (the engine holds hyper-parameters in 32-bit
# registers); widths are checked by numerics.Widths and data.crop_padding against the image side.
_INT_RANGES = {
    "data.onehot_value": (1, 127),  # an int8 one-hot target
    "network.pred_decoder_dim": (1, INT32_MAX),
    "train.seed": (0, SEED_MAX),
    "train.batch_size": (1, INT32_MAX),
    "train.epochs": (1, INT32_MAX),
    "train.lr_inv": (1, INT32_MAX),
    "train.lr_amp": (1, INT32_MAX),
    "train.fwd_decay_inv": (0, INT32_MAX),  # 0 disables weight decay
    "train.subnet_decay_inv": (0, INT32_MAX),
    "train.eval_batch": (1, INT32_MAX),
    "schedule.factor": (1, INT32_MAX),
    "schedule.patience": (1, INT32_MAX),
    "schedule.start": (0, INT32_MAX),
    "schedule.stop_patience": (1, INT32_MAX),
    "schedule.stop_start": (0, INT32_MAX),
}
_EXPECTED_TYPES = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60


def short_repr(value: Any) -> str:
    """repr for an error message, bounded in length and depth: a value read from a user's file can
    be huge or nested deeper than repr's recursion limit."""
    return _SHORT.repr(value)


def is_int(value: Any) -> bool:
    """An integer read from a user's file (TOML, JSON): bool is an int subclass, but not an integer here."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(key: str, value: Any, lo: int, hi: int) -> int:
    """`value` as an integer in lo..hi, else an error naming `key`."""
    if not is_int(value):
        raise NitroError(f"'{key}' must be int, got {short_repr(value)}")
    if value < lo:
        raise NitroError(f"'{key}' must be {'positive' if lo == 1 else f'>= {lo}'}, got {value}")
    if value > hi:
        raise NitroError(f"'{key}' must be at most {hi}, got {value}")
    return value


def _section(cls, table: Any, where: str, convert: dict | None = None):
    """Instantiate dataclass `cls` from a TOML table, rejecting unknown keys, wrong types and
    integers outside their range."""
    if not isinstance(table, dict):
        raise NitroError(f"[{where}] must be a table, got {short_repr(table)}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in table.items():
        if key not in known:
            raise NitroError(f"unknown key {short_repr(f'{where}.{key}')} (known: {', '.join(sorted(known))})")
        if convert and key in convert:
            kwargs[key] = convert[key](value, f"{where}.{key}")
            continue
        default = getattr(cls(), key)
        ok = _EXPECTED_TYPES.get(type(default))
        if ok and (not isinstance(value, ok) or (type(default) is not bool and isinstance(value, bool))):
            raise NitroError(f"'{where}.{key}' must be {type(default).__name__}, got {short_repr(value)}")
        if f"{where}.{key}" in _INT_RANGES:
            _check_int(f"{where}.{key}", value, *_INT_RANGES[f"{where}.{key}"])
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except NitroError as exc:
        raise NitroError(f"[{where}]: {exc}") from None


def _int_list(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(is_int(v) and 0 < v <= MAX_LAYER_WIDTH for v in value):
        raise NitroError(f"'{where}' must be a list of positive integers (at most {MAX_LAYER_WIDTH}), "
                         f"got {short_repr(value)}")
    return tuple(value)


# Parameters after the layer type of an architecture entry, with their (lowest, highest) value;
# None: up to the entry's kernel - 1 (more padding only adds all-zero border outputs).
_ARCH_PARAMS = {
    "Conv2d": {"channels": (1, MAX_CHANNELS), "kernel": (1, INT32_MAX), "stride": (1, INT32_MAX),
               "padding": None},
    "MaxPool2d": {"kernel": (1, INT32_MAX), "stride": (1, INT32_MAX)},
}


def _arch_entry(entry: Any, where: str) -> tuple:
    """Types and ranges of one layer entry; its geometry is checked when the network is built."""
    kind = entry[0] if isinstance(entry, list) and entry else None
    if not isinstance(kind, str) or kind not in _ARCH_PARAMS:
        shown = short_repr(kind) if isinstance(entry, list) and entry else short_repr(entry)
        raise NitroError(f"'{where}': unknown layer type {shown} (Conv2d, MaxPool2d)")
    params = _ARCH_PARAMS[kind]
    if len(entry) != 1 + len(params):
        raise NitroError(f"'{where}': {kind} needs [\"{kind}\", {', '.join(params)}], got {short_repr(entry)}")
    values = dict(zip(params, entry[1:]))
    for name, bounds in params.items():
        lo, hi = bounds or (0, values["kernel"] - 1)
        _check_int(f"{where} {name}", values[name], lo, hi)
    return tuple(entry)


def _architecture(value: Any, where: str) -> tuple[tuple, ...]:
    if not isinstance(value, list):
        raise NitroError(f"'{where}' must be a list of layer entries like [\"Conv2d\", 128, 3, 1, 1], "
                         f"got {short_repr(value)}")
    return tuple(_arch_entry(e, f"{where}[{i}]") for i, e in enumerate(value))


def _widths(value: Any, where: str) -> Widths:
    return _section(Widths, value, where)


_CONVERT = {"hidden": _int_list, "architecture": _architecture, "widths": _widths}


def _toml(text: str) -> dict:
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, and int() refusing a literal of > 4300 digits
        raise NitroError(f"invalid TOML: {one_line(exc)}") from None
    except RecursionError:
        raise NitroError("invalid TOML: arrays or tables nested too deeply") from None


def _check_complete(doc: dict) -> None:
    """A config file names its data set, network and training itself (their tables are dicts here)."""
    for table, key in _REQUIRED.items():
        if table not in doc:
            raise NitroError(f"missing table [{table}]: a config file states its data set ([data] "
                             f"dataset), network ([network] kind) and training ([train]) explicitly")
        if key is not None and key not in doc[table]:
            raise NitroError(f"missing key '{table}.{key}'")


def _numerics(parts: dict, doc: dict) -> NumericsConfig:
    """The loss-gradient fix (quirks.loss_grad_wrap = false) stores y_hat - y exactly as int16: its
    declared width becomes 16 bits unless the config declares numerics.widths.loss_grad itself."""
    num = parts["numerics"]
    if parts["quirks"].loss_grad_wrap or "loss_grad" in doc.get("numerics", {}).get("widths", {}):
        return num
    return replace(num, widths=replace(num.widths, loss_grad=LOSS_GRAD_EXACT_BITS))


def _check_name(name: Any) -> str:
    if not is_plain_name(name):
        raise NitroError(f"'name' must be a plain name ({PLAIN_NAME_RULE}; it names the run folder, and a "
                         f"config without one takes its file's name), got {short_repr(name)}")
    return name


def parse_config(text: str, name: str = "experiment", complete: bool = False) -> ExperimentConfig:
    """Parse and validate a TOML experiment config, named `name` unless it sets `name` itself.

    `complete`: the text is a user's config file, which must state [data] dataset, [network] kind
    and [train] (see `_REQUIRED`); without it missing tables take the defaults (config fragments).
    """
    doc = _toml(text)
    unknown = set(doc) - set(SECTIONS) - {"name"}
    if unknown:
        raise NitroError(f"unknown top-level key(s) {sorted(unknown)} (known: 'name' and the tables "
                         f"{sorted(SECTIONS)})")
    parts = {k: _section(cls, doc.get(k, {}), k, _CONVERT) for k, cls in SECTIONS.items()}
    if complete:
        _check_complete(doc)
    parts["numerics"] = _numerics(parts, doc)
    cfg = ExperimentConfig(name=_check_name(doc.get("name", name)), source=text, **parts)
    _validate(cfg)
    return cfg


def _validate(cfg: ExperimentConfig) -> None:
    """Checks across keys, then the network built once, so that every error surfaces before any work."""
    n, s = cfg.network, cfg.schedule
    if n.kind not in ("mlp", "cnn"):
        raise NitroError(f"'network.kind' must be 'mlp' or 'cnn', got {short_repr(n.kind)}")
    if n.kind == "cnn" and not n.architecture:
        raise NitroError("'network.architecture' is required for a cnn")
    if n.kind == "mlp" and n.architecture:
        raise NitroError("'network.architecture' is only for kind = 'cnn'")
    if n.kind == "mlp" and not n.hidden:
        raise NitroError("'network.hidden' must list at least one hidden layer for an mlp")
    if not 0 <= n.dropout < 1:  # also refuses nan and inf, which dropout_rescale cannot round
        raise NitroError(f"'network.dropout' must be in [0, 1), got {n.dropout}")
    if n.dropout:
        _keyed("network.dropout", dropout_rescale, n.dropout)
    _keyed("network.slope_inv", check_slope_inv, n.slope_inv)
    if not 0 <= s.min_delta <= 1:
        raise NitroError(f"'schedule.min_delta' must be in [0, 1] (a test-accuracy gain), got {s.min_delta}")
    if cfg.numerics.mode not in ("wrap", "check"):
        raise NitroError(f"'numerics.mode' must be 'wrap' or 'check', got {short_repr(cfg.numerics.mode)}")
    shape = _keyed("data.dataset", image_shape, cfg.data.dataset)
    _check_int("data.crop_padding", cfg.data.crop_padding, 0, shape[1])
    try:
        spec = cfg.build_spec(shape)
    except NitroError as exc:
        raise NitroError(f"[network]: {exc}") from None
    weights = sum(math.prod(layer.weight_shape) for layer in spec.param_layers())
    if weights > MAX_WEIGHTS:
        raise NitroError(f"[network] has {weights} weights, more than the {MAX_WEIGHTS} supported")
    check_divisor(spec, cfg.train.lr_inv)


def _keyed(key: str, check, value: Any):
    """check(value), its error prefixed with the config key it is about."""
    try:
        return check(value)
    except NitroError as exc:
        raise NitroError(f"'{key}': {exc}") from None


def check_divisor(spec: NetworkSpec, lr_inv: int, key: str = "train.lr_inv") -> None:
    """Every layer's IntegerSGD divisor lr_inv * amp must fit 64 bits (numerics.tdiv_scalar's int64
    path); `key` names where lr_inv came from."""
    amp = max(layer.amp for layer in spec.param_layers())
    if sgd_divisor(lr_inv, amp) > INT64_MAX:
        raise NitroError(f"'{key}' * the largest layer amp ({lr_inv} * {amp}) does not fit 64 bits")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(v: Any) -> str:
    """TOML literal of any value tomllib produces (nan and inf included): its inverse for values."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)  # nan, inf and -inf are TOML's spellings too
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON escapes are TOML basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(e)}" for k, e in v.items()) + " }"
    return v.isoformat()  # datetime, date, time


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def toml_document(doc: dict) -> str:
    """TOML text of a document: its non-table values first, then one [table] per dict value."""
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if k not in tables]
    for name, table in tables.items():
        lines += ["", f"[{toml_key(name)}]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def to_toml(cfg: ExperimentConfig) -> str:
    """`cfg` as TOML with every key explicit: parse_config reads it back to an equal config."""
    d = asdict(cfg)
    return toml_document({"name": cfg.name, **{table: d[table] for table in SECTIONS}})


def with_seed(cfg: ExperimentConfig, seed: Any) -> ExperimentConfig:
    """`cfg` with another seed (the CLI's --seed), checked like 'train.seed' and named NAME_seedN.

    Its source becomes `to_toml` of the result, so a checkpoint's config text states the seed the
    run used (evaluation re-derives the preprocessing from it).
    """
    _check_int("train.seed", seed, *_INT_RANGES["train.seed"])
    out = replace(cfg, name=_check_name(f"{cfg.name}_seed{seed}"), train=replace(cfg.train, seed=seed))
    return replace(out, source=to_toml(out))


MAX_CONFIG_BYTES = 1 << 20


def load_config(path: str | Path) -> ExperimentConfig:
    """Read, parse and validate a config file (which must be complete: see `parse_config`)."""
    path = Path(path)
    if path.exists():  # (a missing one: the read's error below)
        if not path.is_file():  # a device or a pipe would be read without end
            raise NitroError(f"config {path} is not a regular file")
        if (size := path.stat().st_size) > MAX_CONFIG_BYTES:
            raise NitroError(f"config {path} is {size} bytes: not an experiment TOML "
                             f"(at most {MAX_CONFIG_BYTES})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NitroError(f"cannot read config {path}: {exc.strerror or one_line(exc)}") from None
    try:
        text = raw.decode("utf-8-sig")  # (an editor's byte-order mark is not the config's)
    except UnicodeDecodeError as exc:
        raise NitroError(f"config {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return parse_config(text, path.stem, complete=True)
    except NitroError as exc:
        raise NitroError(f"config {path}: {exc}") from None
