"""Integer preprocessing, epoch shuffles and batch augmentation of the reference (spec 6.2-6.5).

Every random draw comes from a caller-owned `numpy.random.RandomState` (the reference uses NumPy's
legacy global RNG, seeded with the run seed), in the reference's order, so that a run can be
replayed draw for draw.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .datasets import RawDataset
from .numerics import NitroError, int_mean_and_mad, tdiv

NORM_STATS_IMAGES = 25_000  # statistics use the first 25 000 shuffled training images (spec 6.2)
NORM_FACTOR = 51  # ~64 / 1.25: MAD ~ 0.8 sigma, so the normalised sigma is ~64
PIXEL_OFFSET = 128


@dataclass
class IntegerDataset:
    """Reference-preprocessed data (`load_integer_dataset`, spec 6.2).

    x: int8 (N, C, H, W) normalised pixels; y: int8 (N, K) one-hot scaled (0 / onehot_value);
    labels: int64 (N,); norm_mean / norm_mad: int64 (C,) per-channel statistics;
    train_index: int64 (N,) index of each training row in the raw training set (the shuffle).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    train_labels: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_labels: np.ndarray
    norm_mean: np.ndarray
    norm_mad: np.ndarray
    train_index: np.ndarray

    @cached_property
    def digest(self) -> str:
        """What the images and labels are, in order: a resumed run must train on the same."""
        h = hashlib.sha256()
        for a in (self.train_x, self.train_labels, self.test_x, self.test_labels):
            h.update(str(a.shape).encode())
            h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
        return h.hexdigest()[:16]


def normalization_stats(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel integer mean and MAD of `x - 128` over (n, h, w), truncated toward zero.

    train_x: uint8 (N, C, H, W), already cut to the images the statistics use. Returns int64 (C,), (C,).
    """
    v = train_x.astype(np.int16) - PIXEL_OFFSET
    # One channel at a time bounds the int64 temporaries (CIFAR-10: 25 000 x 3072 values).
    stats = [int_mean_and_mad(v[:, c : c + 1], axis=(0, 2, 3)) for c in range(v.shape[1])]
    mean = np.concatenate([m for m, _ in stats]).astype(np.int64)
    mad = np.concatenate([d for _, d in stats]).astype(np.int64)
    return mean, mad


def normalize_images(x: np.ndarray, mean: np.ndarray, mad: np.ndarray) -> np.ndarray:
    """clip(tdiv((x - 128 - mean_c) * 51, mad_c), -128, 127): uint8 (N, C, H, W) in, int8 out."""
    mean, mad = np.asarray(mean, dtype=np.int64), np.asarray(mad, dtype=np.int64)
    if mean.shape != (x.shape[1],) or mad.shape != (x.shape[1],):
        raise NitroError(f"normalisation statistics of shape {mean.shape} do not match {x.shape[1]} channels")
    if np.any(mad <= 0):
        raise NitroError(
            f"cannot normalise: per-channel MAD {mad.tolist()} (a constant channel in the training images)"
        )
    # The result depends only on (channel, pixel byte): a 256-entry table per channel computed with
    # tdiv is exact and avoids int64 temporaries the size of the whole dataset.
    v = np.arange(256, dtype=np.int64) - PIXEL_OFFSET
    lut = np.clip(tdiv((v[None, :] - mean[:, None]) * NORM_FACTOR, mad[:, None]), -128, 127).astype(np.int8)
    out = np.empty(x.shape, dtype=np.int8)
    for c in range(x.shape[1]):
        out[:, c] = lut[c][x[:, c]]
    return out


def one_hot(labels: np.ndarray, num_classes: int = 10, value: int = 32) -> np.ndarray:
    """int8 (N, num_classes): `value` at the label, 0 elsewhere."""
    if not 1 <= value <= 127:
        raise NitroError(f"one-hot value must be in 1..127 (int8), got {value}")
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise NitroError(f"labels span {labels.min()}..{labels.max()}, outside 0..{num_classes - 1}")
    y = np.zeros((len(labels), num_classes), dtype=np.int8)
    y[np.arange(len(labels)), labels] = value
    return y


def preprocess(
    raw: RawDataset, rng: np.random.RandomState, num_classes: int = 10, onehot_value: int = 32
) -> IntegerDataset:
    """The reference's `load_integer_dataset` (val_dim=0, normalize=True, subsample 1.0).

    Draws one permutation of the training set from `rng` (the reference shuffles an index vector
    with the global RNG, which is `rng.permutation(N)` draw for draw); statistics over the first
    min(N, 25 000) shuffled images; test set kept in file order.
    """
    if len(raw.train_x) == 0:
        raise NitroError(f"dataset {raw.name!r} ({raw.source}) has no training images")
    perm = rng.permutation(len(raw.train_x))
    train_x = raw.train_x[perm]
    mean, mad = normalization_stats(train_x[:NORM_STATS_IMAGES])
    train_labels = raw.train_y[perm].astype(np.int64)
    test_labels = raw.test_y.astype(np.int64)
    return IntegerDataset(
        train_x=normalize_images(train_x, mean, mad),
        train_y=one_hot(train_labels, num_classes, onehot_value),
        train_labels=train_labels,
        test_x=normalize_images(raw.test_x, mean, mad),
        test_y=one_hot(test_labels, num_classes, onehot_value),
        test_labels=test_labels,
        norm_mean=mean,
        norm_mad=mad,
        train_index=perm.astype(np.int64),
    )


def epoch_permutation(rng: np.random.RandomState, n: int) -> np.ndarray:
    """The reshuffle at the start of every epoch (`shuffle_dataset`): int64 (n,) row order.

    Apply it to the current (already shuffled) training arrays: x = x[perm].
    """
    return rng.permutation(n)


def augment_batch(x: np.ndarray, rng: np.random.RandomState, crop_padding: int, flip: bool) -> np.ndarray:
    """RandomCrop(padding p, prob 0.5) then RandomHorizontalFlip(prob 0.5), one decision per batch.

    x: (B, C, H, W), any integer dtype, returned in the same dtype and shape. Draws, in the
    reference's order: crop decision `binomial(1, 0.5)`; if 1: `top = randint(0, 2p+1)`,
    `left = randint(0, 2p+1)`; then (only when `flip`) flip decision `binomial(1, 0.5)`.
    The crop pads with the minimum of the whole batch. `crop_padding=0` means no crop transform
    (and no crop draws).
    """
    if crop_padding < 0:
        raise NitroError(f"crop padding must be >= 0, got {crop_padding}")
    if x.ndim != 4:
        raise NitroError(f"augment_batch expects (B, C, H, W), got shape {x.shape}")
    p = crop_padding
    if p > 0 and rng.binomial(1, 0.5) == 1:
        top = rng.randint(0, 2 * p + 1)
        left = rng.randint(0, 2 * p + 1)
        h, w = x.shape[2:]
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=x.min())
        x = padded[:, :, top : top + h, left : left + w]
    if flip and rng.binomial(1, 0.5) == 1:
        x = x[:, :, :, ::-1]
    return np.ascontiguousarray(x)
