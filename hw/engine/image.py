"""Tensors as external-memory words: a matrix in its layout (`compiler.pack_tensor`), each
scratchpad word little-endian in whole bus beats (`program.ext_word_bytes`), handed to the host as
64-bit words."""
from __future__ import annotations

import numpy as np

from model.numerics import NitroError

from .compiler import Tensor, pack_tensor, unpack_tensor
from .params import EngineParams
from .program import ext_word_bytes


def lanes_to_bytes(lanes: np.ndarray, lane_bits: int, nbytes: int) -> np.ndarray:
    """(n, L) signed lane values -> (n, nbytes) little-endian bytes (two's complement per lane)."""
    n, L = lanes.shape
    lb = lane_bits // 8
    u = lanes.astype(np.int64) & ((1 << lane_bits) - 1)
    out = np.zeros((n, nbytes), dtype=np.uint8)
    for b in range(lb):
        out[:, b:L * lb:lb] = (u >> (8 * b)) & 0xFF
    return out


def bytes_to_lanes(by: np.ndarray, lane_bits: int, lanes: int) -> np.ndarray:
    """(n, nbytes) bytes -> (n, L) signed lanes of `lane_bits` bits."""
    lb = lane_bits // 8
    by = np.asarray(by, dtype=np.int64)[:, :lanes * lb].reshape(len(by), lanes, lb)
    v = np.zeros(by.shape[:2], dtype=np.int64)
    for b in range(lb):
        v |= by[:, :, b] << (8 * b)
    half = 1 << (lane_bits - 1)
    return np.where(v >= half, v - (1 << lane_bits), v)


def tensor_words(p: EngineParams, t: Tensor, mat: np.ndarray) -> np.ndarray:
    """The 64-bit words of tensor `t` holding `mat`, for the region at byte `t.ext`."""
    lanes = pack_tensor(t, mat)
    lb = p.lane_width(t.sel)
    lim = 1 << (lb - 1)
    if lanes.size and (lanes.min() < -lim or lanes.max() >= lim):
        raise NitroError(f"engine: {t.name} has values outside the {lb}-bit lanes of its scratchpad")
    return lanes_to_bytes(lanes, lb, ext_word_bytes(p, t.sel)).reshape(-1).view(np.uint64)


def tensor_from_words(p: EngineParams, t: Tensor, words: np.ndarray) -> np.ndarray:
    """Inverse of `tensor_words`: 64-bit words -> the (rows x feats) matrix."""
    by = np.ascontiguousarray(words, dtype=np.uint64).view(np.uint8).reshape(-1, ext_word_bytes(p, t.sel))
    return unpack_tensor(t, bytes_to_lanes(by, p.lane_width(t.sel), t.lanes))


def tensor_span(p: EngineParams, t: Tensor) -> tuple[int, int]:
    """(first 64-bit word, 64-bit words) of tensor `t` in external memory."""
    return t.ext // 8, t.words * ext_word_bytes(p, t.sel) // 8
