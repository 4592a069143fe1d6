"""IntegerSGD and the learning-rate schedule (spec section 4)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .numerics import F64_EXACT, NitroError, tdiv_scalar


def integer_sgd_update(
    w: np.ndarray, g: np.ndarray, divisor: int, decay_inv: int
) -> tuple[np.ndarray, np.ndarray]:
    """U = tdiv(G, D) + (tdiv(W, eta) if eta > 0); W_new = W - U.

    `divisor` is D = lr_inv * amp; both terms use the weights before the update. Returns
    (W_new, U) as exact integers (int64, or float64 holding integers below 2^53); the caller narrows
    them to the declared weight width.
    """
    if divisor <= 0:
        raise NitroError(f"IntegerSGD divisor lr_inv*amp must be positive, got {divisor}")
    if decay_inv < 0:
        raise NitroError(f"weight-decay inverse must be >= 0, got {decay_inv}")
    w, g = np.asarray(w), np.asarray(g)
    if w.dtype.itemsize <= 4 and g.dtype.itemsize <= 4 and max(divisor, decay_inv) < F64_EXACT:
        # Hot path: every term is an integer below 2^53, so float64 holds it exactly and the
        # truncated quotients are exact (see numerics.tdiv_scalar).
        u = np.trunc(g / np.float64(divisor))
        if decay_inv > 0:
            u += np.trunc(w / np.float64(decay_inv))
        return w - u, u
    u = tdiv_scalar(g, divisor)
    if decay_inv > 0:
        u += tdiv_scalar(w, decay_inv)
    return w.astype(np.int64) - u, u


@dataclass
class PlateauState:
    """Counter state of ReduceLROnPlateau / EarlyStopping (spec 4.3): float control plane only."""

    best: float = 0.0
    counter: int = 0
    epochs: int = 0


LR_INV = 512  # the reference's initial lr_inv (learning rate 1 / 512)


def sgd_divisor(lr_inv: int, amp: int) -> int:
    """IntegerSGD's divisor D = lr_inv * amp of a layer whose learning rate is amplified by amp
    (spec 4.1)."""
    return lr_inv * amp


@dataclass(frozen=True)
class ScheduleConfig:
    """The plateau rule (x`factor` on lr_inv after `patience` epochs from `start` without a
    `min_delta` gain in test accuracy) and early stopping (`stop_patience` from `stop_start`)."""

    factor: int = 3
    min_delta: float = 0.01
    patience: int = 15
    start: int = 10
    stop_patience: int = 35
    stop_start: int = 30

    def __post_init__(self) -> None:
        if self.factor < 1 or self.patience < 1 or self.stop_patience < 1:
            raise NitroError("schedule: factor and patiences must be >= 1")


@dataclass
class Schedule:
    """lr_inv schedule and early stopping on the test accuracy; mirrors the reference exactly."""

    lr_inv: int = LR_INV
    rule: ScheduleConfig = field(default_factory=ScheduleConfig)
    plateau: PlateauState = field(default_factory=PlateauState)
    stopper: PlateauState = field(default_factory=PlateauState)

    def __post_init__(self) -> None:
        if self.lr_inv <= 0:
            raise NitroError(f"schedule: lr_inv must be > 0, got {self.lr_inv}")

    @staticmethod
    def _tick(state: PlateauState, acc: float, start: int, patience: int, delta: float) -> bool:
        state.epochs += 1
        if state.epochs < start:
            return False
        if acc < state.best + delta:
            state.counter += 1
            if state.counter >= patience:
                state.counter = 0
                return True
            return False
        state.best, state.counter = acc, 0
        return False

    def end_epoch(self, test_acc: float) -> bool:
        """Feed one epoch's test accuracy; returns True when training should stop."""
        r = self.rule
        if self._tick(self.stopper, test_acc, r.stop_start, r.stop_patience, r.min_delta):
            return True
        if self._tick(self.plateau, test_acc, r.start, r.patience, r.min_delta):
            self.lr_inv *= r.factor
        return False
