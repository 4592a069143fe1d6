"""Network description: the layers of a NITRO-D network and how they are built (spec 3, 7).

A `NetworkSpec` is plain data. `build_mlp` / `build_cnn` construct it with the reference's layer
names, scaling factors and learning-layer pooling geometry, so traces can be compared key by key
with the official implementation's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .layers import SLOPE_INV, check_slope_inv, dropout_rescale
from .numerics import NitroError


@dataclass(frozen=True)
class Quirks:
    """Behaviours of the reference implementation (spec 10-11), reproduced by default.

    Each flag set to False is the named fix.
    """

    loss_grad_wrap: bool = True  # e = wrap8(y_hat - y); fix: exact int16 difference
    maxpool_pad_zero: bool = True  # learning-pool padding of int8 is 0, not -inf (D9)
    fc_double_update: bool = True  # CNN FC blocks trained twice per step (D8)
    conv_amp_inert: bool = True  # conv amp "adjustment" has no effect (D7); fix applies it


@dataclass(frozen=True)
class Linear:
    name: str
    in_features: int
    out_features: int
    amp: int
    decay_inv: int

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    @property
    def fan_in(self) -> int:
        return self.in_features


@dataclass(frozen=True)
class Conv2d:
    name: str
    in_channels: int
    out_channels: int
    kernel: int
    padding: int
    amp: int
    decay_inv: int

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel * self.kernel


@dataclass(frozen=True)
class Scaling:
    name: str
    factor: int


@dataclass(frozen=True)
class NitroReLU:
    name: str
    slope_inv: int = SLOPE_INV


@dataclass(frozen=True)
class MaxPool2d:
    name: str
    kernel: tuple[int, int]
    padding: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Flatten:
    name: str


@dataclass(frozen=True)
class Dropout:
    name: str
    rate: float


@dataclass(frozen=True)
class Block:
    """Local-loss block: forward layers (GEMM, scaling, ReLU) and learning layers (spec 3.1-3.2)."""

    name: str
    layer: Linear | Conv2d
    scaling: Scaling
    relu: NitroReLU
    pool: MaxPool2d | None
    flatten: Flatten | None
    pred: Linear
    pred_scaling: Scaling


Item = Block | MaxPool2d | Flatten | Dropout


@dataclass(frozen=True)
class NetworkSpec:
    input_shape: tuple[int, int, int]  # (C, H, W)
    items: tuple[Item, ...]
    output: Linear
    output_scaling: Scaling
    backward_order: tuple[str, ...]
    num_classes: int = 10
    quirks: Quirks = field(default_factory=Quirks)

    @property
    def blocks(self) -> dict[str, Block]:
        return {it.name: it for it in self.items if isinstance(it, Block)}

    def param_layers(self) -> list[Linear | Conv2d]:
        """GEMM layers in the reference's construction (= init draw) order."""
        out: list[Linear | Conv2d] = []
        for it in self.items:
            if isinstance(it, Block):
                out += [it.layer, it.pred]
        return out + [self.output]


def consulted_quirks(spec: NetworkSpec) -> set[str]:
    """The quirks `Network` consults while it trains this spec (the others shape the spec itself):
    the loss gradient's wrap always, the learning pools' pad value only where a pool pads."""
    padded = any(b.pool is not None and b.pool.padding != (0, 0) for b in spec.blocks.values())
    return {"loss_grad_wrap"} | ({"maxpool_pad_zero"} if padded else set())


def scaling_factor(fan_in: int) -> int:
    """A scaling layer's SF = 256 x the fan-in of the GEMM before it (spec 2.3)."""
    return 256 * fan_in


def _positive(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise NitroError(f"{name} must be a positive integer, got {v!r}")
    return v


@dataclass(frozen=True)
class Hyper:
    """Per-network training constants that shape the layers."""

    lr_amp: int = 640
    fwd_decay_inv: int = 12000
    subnet_decay_inv: int = 3000
    slope_inv: int = SLOPE_INV
    num_classes: int = 10

    def __post_init__(self) -> None:
        _positive("lr_amp", self.lr_amp)
        _positive("num_classes", self.num_classes)
        for k in ("fwd_decay_inv", "subnet_decay_inv"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 0:
                raise NitroError(f"{k} must be an integer >= 0 (0 disables decay), got {v!r}")
        check_slope_inv(self.slope_inv)


def _linear_block(idx: int, fin: int, fout: int, hp: Hyper) -> Block:
    n = f"{idx:02d}"
    return Block(
        name=f"linear_block_{n}",
        layer=Linear(f"linear_encoder_{n}", fin, fout, hp.lr_amp, hp.fwd_decay_inv),
        scaling=Scaling(f"scaling_{n}", scaling_factor(fin)),
        relu=NitroReLU(f"non_linearity_{n}", hp.slope_inv),
        pool=None,
        flatten=None,
        pred=Linear(f"linear_pred_{n}", fout, hp.num_classes, 1, hp.subnet_decay_inv),
        pred_scaling=Scaling(f"scaling_pred_{n}", scaling_factor(fout)),
    )


def _check_dropout(rate: float) -> None:
    if rate:
        dropout_rescale(rate)


def _mlp_items(fin: int, hidden: list[int], i0: int, hp: Hyper, dropout: float):
    items: list[Item] = [Flatten(f"flatten_{i0:02d}")]
    for k, h in enumerate(hidden):
        _positive(f"hidden[{k}]", h)
        items.append(_linear_block(i0 + k, fin, h, hp))
        if dropout:
            items.append(Dropout(f"dropout_{i0 + k:02d}", dropout))
        fin = h
    n = f"{i0 + len(hidden):02d}"
    out = Linear(f"linear_{n}", fin, hp.num_classes, 1, hp.subnet_decay_inv)
    return items, out, Scaling(f"scaling_{n}", scaling_factor(fin))


def build_mlp(
    input_shape: tuple[int, int, int], hidden: list[int], hp: Hyper, dropout: float = 0.0,
    quirks: Quirks = Quirks(),
) -> NetworkSpec:
    """IntegerLocalLossMLP (spec 3.5): len(hidden) local blocks + output layer."""
    _check_dropout(dropout)
    c, h, w = input_shape
    items, out, out_s = _mlp_items(c * h * w, list(hidden), 0, hp, dropout)
    order = tuple(it.name for it in reversed(items) if isinstance(it, Block))
    return NetworkSpec(tuple(input_shape), tuple(items), out, out_s, order, hp.num_classes, quirks)


def learning_pool(channels: int, side: int, target: int) -> tuple[tuple[int, int], tuple[int, int], int]:
    """Learning-layer MaxPool geometry of a conv block (spec 3.2): kernel, padding, N."""
    kh = kw = 1
    dh = dw = side
    n = channels * side * side
    while n > target and kh < side:
        kh *= 2
        dh = math.ceil(side / kh)
        n = channels * dh * dw
        if n > target:
            kw *= 2
            dw = math.ceil(side / kw)
            n = channels * dh * dw
    ph = kh * (dh - side // kh) // 2
    pw = kw * (dw - side // kw) // 2
    return (kh, kw), (ph, pw), n


def build_cnn(
    input_shape: tuple[int, int, int], architecture: list, hidden: list[int], hp: Hyper,
    pred_decoder_dim: int = 4096, fc_dropout: float = 0.0, quirks: Quirks = Quirks(),
) -> NetworkSpec:
    """IntegerLocalLossCNN (spec 3.6): conv blocks and max-pools, then the classifier MLP.

    `architecture` entries: ("Conv2d", C_out, k, stride, padding) or ("MaxPool2d", k, stride).
    """
    _check_dropout(fc_dropout)
    _positive("pred_decoder_dim", pred_decoder_dim)
    c, side, w = input_shape
    if side != w:
        raise NitroError(f"CNN inputs must be square, got {input_shape}")
    items: list[Item] = []
    for idx, entry in enumerate(architecture):
        kind = entry[0] if entry else None
        n = f"{idx:02d}"
        if kind == "Conv2d":
            if len(entry) != 5:
                raise NitroError(f"architecture[{idx}]: Conv2d needs (C_out, k, stride, padding)")
            _, cout, k, stride, pad = entry
            _positive(f"architecture[{idx}] channels", cout)
            _positive(f"architecture[{idx}] kernel", k)
            if stride != 1:
                raise NitroError(f"architecture[{idx}]: only stride 1 convolutions are supported")
            side_out = side + 2 * pad - k + 1
            if side_out <= 0:
                raise NitroError(f"architecture[{idx}]: kernel {k} too large for side {side}")
            amp = hp.lr_amp
            kernel, padding, n_pred = learning_pool(cout, side_out, pred_decoder_dim)
            if not quirks.conv_amp_inert:
                amp = hp.lr_amp * (side_out * side_out // (kernel[0] * kernel[1]))
            pooled = kernel != (1, 1)
            pool = MaxPool2d(f"pooling_pred_{n}", kernel, padding) if pooled else None
            items.append(Block(
                name=f"conv_block_{n}",
                layer=Conv2d(f"conv_encoder_{n}", c, cout, k, pad, amp, hp.fwd_decay_inv),
                scaling=Scaling(f"scaling_{n}", scaling_factor(c * k * k)),
                relu=NitroReLU(f"non_linearity_{n}", hp.slope_inv),
                pool=pool,
                flatten=Flatten(f"flatten_pred_{n}"),
                pred=Linear(f"linear_pred_{n}", n_pred, hp.num_classes, 1, hp.subnet_decay_inv),
                pred_scaling=Scaling(f"scaling_pred_{n}", scaling_factor(n_pred)),
            ))
            c, side = cout, side_out
        elif kind == "MaxPool2d":
            if len(entry) != 3 or entry[1] != entry[2]:
                raise NitroError(f"architecture[{idx}]: MaxPool2d needs kernel == stride")
            k = _positive(f"architecture[{idx}] kernel", entry[1])
            if side < k:
                raise NitroError(f"architecture[{idx}]: pool {k} larger than side {side}")
            if fc_dropout and idx == len(architecture) - 1:
                # The reference inserts the FE dropout before the LAST feature-extractor layer.
                items.append(Dropout(f"dropout_fe_{n}", fc_dropout))
            items.append(MaxPool2d(f"max_pool_{n}", (k, k)))
            side //= k
        else:
            raise NitroError(f"architecture[{idx}]: unknown layer type {kind!r} (Conv2d, MaxPool2d)")
    if not any(isinstance(it, Block) for it in items):
        raise NitroError("architecture has no Conv2d layer")
    mlp_items, out, out_s = _mlp_items(c * side * side, list(hidden), len(architecture), hp, fc_dropout)
    items += mlp_items
    conv = [it.name for it in items if isinstance(it, Block) and it.name.startswith("conv")]
    fc = [it.name for it in items if isinstance(it, Block) and it.name.startswith("linear")]
    order = list(reversed(conv + fc))
    if quirks.fc_double_update:
        order = list(reversed(fc)) + order
    return NetworkSpec(tuple(input_shape), tuple(items), out, out_s, tuple(order), hp.num_classes, quirks)
