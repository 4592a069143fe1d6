"""Host side of the engine: a NITRO-D network -> its tensors in external memory and the GEMMs of one
training step (`hw.engine.tiling` then cuts them into scratchpad tiles and the program), plus the
packing of matrices into memory words.

Everything here runs before simulation and raises `NitroError` with one clear line when the engine
cannot run the network: a layer it has no lowering for (a convolution other than 3x3 with
padding 1; a pool between blocks other than 2x2 unpadded; a dropout rate whose outputs leave
int8), a constant beyond the engine's dividers, a batch of the wrong shape, a command that points
outside a scratchpad.

Layouts (L = lanes per word = MAC array side); each tensor is loaded into the scratchpad `sel`:
  act "col"  (AMEM_C): word (b / L) * F + f,        lanes b % L   (A of forward GEMMs)
  act "row"  (AMEM_R, DMEM, SMEM, YMEM): word b * ceil(F/L) + f / L, lanes f % L
  weights    (WMEM): W^T, word i * ceil(out/L) + o / L, lanes o % L   (B of forward GEMMs);
             in external memory panel-major, word (o / L) * in + i, so that a tile's columns
             are whole bursts (`program` LOAD / STORE `across`)
  W_l copy   (WTMEM): W, word c * ceil(in/L) + i / L, lanes i % L   (B of delta GEMMs)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .params import (
    ADDR_W, A_SOURCES, B_SOURCES, CV_BITS, CV_N0_BITS, MEM_NAMES, N_PHASES, OP_POOL, OP_RELU_BWD,
    OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, SEL_AMEM_C, SEL_AMEM_R, SEL_DMEM, SEL_SMEM,
    SEL_WMEM, SEL_WTMEM, SEL_YMEM, EngineParams, command_layout, engine_params,
)
from model.divider import divider_constants
from model.gemm import im2col
from model.layers import RELU_MEAN_CORRECTION
from model.numerics import NitroError
from model.optim import LR_INV, sgd_divisor
from model.spec import Block, Conv2d, Dropout, Flatten, Linear, MaxPool2d, NetworkSpec

from .dropout import check_dropout, dropout_multiplier, flat_geometry

def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Tensor:
    """A (rows x features) matrix in one layout: in external memory at byte `ext`, or a tile of one
    in scratchpad `sel` from word `base` (both word-addressed the same way).

    col        : word (r / L) * feats + f, lane r % L   (batch-packed activations)
    row, wT, w : word r * ceil(feats / L) + f / L, lane f % L
    except wT in external memory: word (f / L) * rows + r (panels of L columns, one after another)
    """

    name: str
    sel: int
    layout: str  # "col", "row", "wT" (weights W^T), "w" (W copy)
    rows: int
    feats: int
    base: int = 0
    lanes: int = 8
    ext: int = 0
    image: tuple[int, int, int] | None = None  # (h, w, c): features are pixels x channels (HWC)
    taps: bool = False  # a 1-channel image's row layout holding window taps (`tap_packed`)

    @property
    def stride(self) -> int:
        """Words per step of the outer index (col: per row tile; row/wT/w: per row)."""
        return self.feats if self.layout == "col" else cdiv(self.feats, self.lanes)

    @property
    def words(self) -> int:
        if self.layout == "col":
            return cdiv(self.rows, self.lanes) * self.feats
        return self.rows * cdiv(self.feats, self.lanes)


@dataclass
class LayerMap:
    """A layer's weights in the engine: W^T, for a 3x3 convolution with rows (ky, kx, c) (the
    forward's K order); a linear layer behind a flatten of HWC features takes its input columns
    in that order (`perm`: engine column -> the reference's CHW column)."""

    layer: Linear | Conv2d
    role: str  # "fwd", "pred", "out"
    w: Tensor  # W^T (rows = in, feats = out)
    wt: Tensor | None = None  # W (rows = out, feats = in), learning layers only
    perm: np.ndarray | None = None

    def to_engine(self, w: np.ndarray) -> np.ndarray:
        """The reference's W -> the engine's W (out, in): W^T is its transpose."""
        if isinstance(self.layer, Conv2d):
            return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        return w if self.perm is None else w[:, self.perm]

    def from_engine(self, w: np.ndarray) -> np.ndarray:
        if isinstance(self.layer, Conv2d):
            co, ci, k, _ = self.layer.weight_shape
            return w.reshape(co, k, k, ci).transpose(0, 3, 1, 2)
        if self.perm is None:
            return w
        out = np.empty_like(w)
        out[:, self.perm] = w
        return out


def hwc_perm(c: int, h: int, w: int) -> np.ndarray:
    """Engine feature (y, x, c) -> the reference's flattened (c, y, x) index."""
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def to_hwc(x: np.ndarray, channels: int | None = None) -> np.ndarray:
    """(rows, C, H, W) -> (rows, H*W*C'), channels innermost, zero-padded to `channels`."""
    r, c, h, w = x.shape
    out = np.zeros((r, h, w, channels or c), dtype=x.dtype)
    out[..., :c] = x.transpose(0, 2, 3, 1)
    return out.reshape(r, -1)


TAP_LANES = 8  # lanes of a tap-packed pixel word: the 3x3 window's taps 1..8


def tap_packed(x: np.ndarray, lanes: int) -> np.ndarray:
    """(rows, 1, H, W) -> (rows, H*W*lanes): pixel p's word holds in lane j the pixel of window
    tap j + 1 (taps numbered ky * 3 + kx, offset (ky - 1, kx - 1)), 0 outside the image. A first
    convolution's one channel would fill one lane of its weight gradient's A words, the rest
    zero padding; packed, one GEMM gets taps 1..8 (M = 8) and tap 0 is lane 0 one pixel to the
    left (the TPU's space-to-depth idea for the first layer: the same words, the lanes used)."""
    r, _, h, w = x.shape
    out = np.zeros((r * h * w, lanes), dtype=x.dtype)
    out[:, :TAP_LANES] = im2col(x, 3, 3, 1)[:, 1:1 + TAP_LANES]  # columns: taps 0..8
    return out.reshape(r, -1)


def from_hwc(t: Tensor, mat: np.ndarray) -> np.ndarray:
    """A matrix of tensor `t` in the reference's shape: (rows, C, H, W) for images."""
    if t.image is None:
        return mat
    h, w, c = t.image
    return mat.reshape(mat.shape[0], h, w, c).transpose(0, 3, 1, 2)


@dataclass(frozen=True)
class ConvGeom:
    """A 3x3 convolution (stride 1, padding 1) of h x w images, c_in -> c_out channels (HWC).
    window None: the forward GEMM of L images (M = pixels x L images, K = (ky, kx, c_in), N =
    c_out); (ky, kx): the weight gradient of that window position (M = c_in, K = images x
    pixels, N = c_out), the MAC-array tile at A word a_word and B word b_word; `tap`: the
    weight row (tap) of its A words' lane 0 when not the window's own (a tap-packed input). A tile covers
    output rows from y0 (of one image, or whole images); its A block starts at source row a_row.
    A forward chunk of K is the window taps `taps` (rows ky0..ky1, columns kx0..kx1; K order
    is (ky, kx, c_in)), all their channels, or `a_words` channels of one tap."""

    h: int
    w: int
    c_in: int
    c_out: int
    window: tuple[int, int] | None = None
    y0: int = 0
    a_row: int = 0
    a_word: int = 0
    b_word: int = 0
    a_words: int = 0  # A words per pixel when its block holds some channel words (0: all)
    rows: int = 0  # the weight gradient's output rows per image (0: whole images)
    taps: tuple[int, int, int, int] = (0, 3, 0, 3)  # (ky0, ky1, kx0, kx1)
    tap: int | None = None

    @property
    def pixels(self) -> int:
        return self.h * self.w

    @property
    def row0(self) -> int:
        """A weight gradient's first weight row (K index (ky, kx, c_in) of the forward)."""
        ky, kx = self.window
        return (ky * 3 + kx if self.tap is None else self.tap) * self.c_in

    def fields(self, g: Gemm) -> dict:
        a, mod = g.a, 1 << ADDR_W
        f = dict(conv=1, cv_w=self.w, cv_h=self.h)
        top = self.y0 - self.a_row  # the tile's first output row in its A block
        if self.window is None:  # an A word is one channel of L images: a pixel is ci words
            ky0, ky1, kx0, kx1 = self.taps
            ci, first = self.a_words or self.c_in, (top - 1 + ky0) * self.w - 1 + kx0  # the first tap's pixel
            f |= dict(cv_x0=kx0 - 1, cv_y0=self.y0 - 1 + ky0, cv_mw=self.w, cv_n0=ci,
                      cv_n1=kx1 - kx0, cv_n2=ky1 - ky0, a_base=(a.base + first * ci) % mod,
                      a_sm=ci, a_sk=1, a_skr=(self.w - (kx1 - kx0)) * ci + 1)
            if "o0" in g.outs:  # (a chunk of K before the last has no outputs)
                f["o0"] = {"base": g.outs["o0"].base, "stride": g.n}
            return f
        ky, kx = self.window
        ppw = self.a_words or cdiv(self.c_in, a.lanes)  # A words per pixel (channel tiles)
        first = (top + ky - 1) * self.w + kx - 1
        return f | dict(cv_x0=kx - 1, cv_y0=self.y0 + ky - 1, cv_mw=0, cv_n0=1, cv_n1=self.w,
                        cv_n2=self.rows or self.h,
                        a_base=(a.base + self.a_word + first * ppw) % mod,
                        a_sm=1, a_sk=ppw, a_skr=ppw, b_base=g.b.base + self.b_word,
                        b_sk=g.b.stride // ((self.rows or self.h) * self.w))  # B words per pixel


SLOTS = ("o0", "o1", "o2", "o3", "o4")


@dataclass(frozen=True)
class PoolGeom:
    """Max-pooling of h x w images (channels innermost, `words` scratchpad words per pixel),
    kh x kw windows with stride = kernel and padding (ph, pw) of value 0 (the reference's int8
    pools, quirk D9); `mask`: copy the stored s (o2) into o3 with every non-arg-max position
    marked (`hw.engine.pool`); `drop` (1x1 windows): dropout with this multiplier, the keep
    mask in o2 (`hw.engine.dropout`). A tile covers output rows from y0; a delta tile through
    the pool's map (`map_fields`) covers image rows from y0, or `seg` pixels of row y0 from x0."""

    h: int
    w: int
    words: int
    kh: int
    kw: int
    ph: int = 0
    pw: int = 0
    mask: bool = False
    drop: int = 0
    y0: int = 0
    x0: int = 0
    seg: int = 0

    @property
    def ho(self) -> int:
        return (self.h + 2 * self.ph - self.kh) // self.kh + 1

    @property
    def wo(self) -> int:
        return (self.w + 2 * self.pw - self.kw) // self.kw + 1

    def source_rows(self, y0: int, y1: int) -> tuple[int, int]:
        """The image rows the windows of output rows [y0, y1) read."""
        return max(y0 * self.kh - self.ph, 0), min(y1 * self.kh - self.ph, self.h)

    def fields(self, g: Gemm, phase_index: int) -> dict:
        a, d, cw, mod = g.a, g.outs["o0"], self.words, 1 << ADDR_W
        top = self.y0 * self.kh - self.ph  # the first window's top row (padding included)
        first = (top - self.source_rows(self.y0, self.y0 + 1)[0]) * self.w - self.pw
        a_sel = [k for k, v in A_SOURCES.items() if v == a.sel][0]
        blocks = cdiv(a.rows, a.lanes) if a.layout == "col" else a.rows
        f = dict(op=g.op, phase=phase_index, a_sel=a_sel, conv=int(self.mask or self.drop > 0),
                 drop=int(self.drop > 0), d_mult=self.drop, m_len=blocks,
                 k_len=g.n, cv_w=self.w, cv_h=self.h, cv_x0=-self.pw, cv_y0=top, cv_mw=self.wo,
                 cv_n0=cw, cv_n1=self.kw, cv_n2=self.kh, a_base=(a.base + first * cw) % mod,
                 a_sm=a.stride, a_sk=(self.w - self.kw + 1) * cw, a_skr=self.kw * cw,
                 b_sk=self.kh * self.w * cw, o0={"base": d.base, "stride": d.stride})
        # s and its marked copy, or the keep mask, laid out as the source: their bases at the
        # same (padded) first position
        for slot in ("o2", "o3") if self.mask else ("o2",) if self.drop else ():
            t = g.outs[slot]
            f[slot] = {"base": (t.base + first * cw) % mod, "stride": t.stride}
        return f

    def map_fields(self) -> dict:
        """A delta GEMM's B tiles through this pool's map (`params.command_layout` bpool), for a
        tile of whole image rows from y0 (or a segment of one)."""
        return dict(bpool=1, cv_w=self.seg or self.w, cv_n0=self.words, cv_n1=self.kw,
                    cv_n2=self.kh, cv_x0=-((self.x0 + self.pw) % self.kw),
                    cv_y0=-((self.y0 + self.ph) % self.kh))

    @property
    def covered(self) -> int:
        """The image rows the windows cover (the reference drops the rest: floor)."""
        return min(self.h, self.ho * self.kh - self.ph)

    def pooled_rows(self, y0: int, y1: int) -> tuple[int, int]:
        """The output rows whose windows hold image rows [y0, y1)."""
        return (y0 + self.ph) // self.kh, (y1 - 1 + self.ph) // self.kh + 1


@dataclass
class Gemm:
    """One core command: a GEMM C[m x n] = A[m x k] . B[k x n], then the output op on every C
    element. A is `a` (col layout: rows = m) or the transpose of `a` (row layout: feats = m); B
    is `b` (rows = k, feats = n). `outs` maps output slots to tensors (see
    `params.command_layout`). Or (`pool`) a max-pool of `a` (m images, n output rows, k words
    per pixel) into o0."""

    name: str
    phase: str
    op: int
    a: Tensor
    b: Tensor
    m: int
    k: int
    n: int
    outs: dict[str, Tensor]
    consts: dict[str, int] = field(default_factory=dict)  # SF (sc_sf), d_* / e_* divider constants
    sgd: Linear | None = None  # the layer an update command trains
    k_cont: bool = False  # a chunk of K after the first, on one C tile (`params.command_layout`)
    k_hold: bool = False  # a chunk of K before the last, on one C tile: no output
    conv: ConvGeom | None = None
    pool: PoolGeom | None = None
    unpool: PoolGeom | None = None  # B's columns (n) through a learning pool's map
    p_in: bool = False  # a chunk of K after the first, its partial sums in PMEM
    p_out: bool = False  # a chunk of K before the last: its sums to PMEM, no output
    p_base: int = 0  # its partial sums' first PMEM row (of L elements)

    @property
    def wt_en(self) -> int:
        return int("o4" in self.outs)

    def fields(self, phase_index: int) -> dict:
        """The command's hardware fields (`params.command_layout`), for `pack_command`."""
        if self.pool is not None:
            return self.pool.fields(self, phase_index)
        a, b = self.a, self.b
        a_sm, a_sk = (a.stride, 1) if a.layout == "col" else (1, a.stride)
        f = dict(op=self.op, phase=phase_index, wt_en=self.wt_en, k_cont=int(self.k_cont),
                 k_hold=int(self.k_hold), p_in=int(self.p_in), p_out=int(self.p_out),
                 p_base=self.p_base,
                 a_sel=[k_ for k_, v in A_SOURCES.items() if v == a.sel][0],
                 b_sel=[k_ for k_, v in B_SOURCES.items() if v == b.sel][0],
                 m_len=self.m, n_len=self.n, k_len=self.k, a_base=a.base, a_sm=a_sm, a_sk=a_sk,
                 b_base=b.base, b_sk=b.stride)
        for slot in SLOTS:
            t = self.outs.get(slot)
            f[slot] = {"base": t.base, "stride": t.stride} if t is not None else {"base": 0, "stride": 0}
        if self.conv is not None:
            f.update(self.conv.fields(self))
        if self.unpool is not None:
            f.update(self.unpool.map_fields())
        f.update(self.consts)
        return f

    @property
    def c_tiles(self) -> int:
        return cdiv(self.m, self.a.lanes) * cdiv(self.n, self.a.lanes)


@dataclass
class Program:
    params: EngineParams
    spec: NetworkSpec
    batch: int
    tensors: dict[str, Tensor]  # in external memory
    layers: dict[str, LayerMap]
    gemms: list[Gemm]  # one training step, before tiling
    infer_gemms: list[Gemm]  # inference: block forwards, output layer, learning layers
    phases: list[str]
    lr_inv: int = 0
    macs: dict[str, int] = field(default_factory=dict)  # useful multiply-accumulates per phase
    tensor_bytes: int = 0  # external memory the tensors take (from byte 0, 4 KiB aligned)
    cleared: list[Tensor] = field(default_factory=list)  # zero when the host loads the weights


# ---- compilation -----------------------------------------------------------------------------

def check_supported(spec: NetworkSpec, params: EngineParams) -> list[Block]:
    """The engine runs NITRO-D MLPs and CNNs of 3x3 convolution blocks (with their learning-layer
    pools) and 2x2 max-pools between them: Flatten, local-loss blocks, output Linear. Else
    NitroError naming the layer and the limit."""
    blocks, side = [], spec.input_shape[1]  # the image side (3x3 convolutions, padding 1, keep it)
    for it in spec.items:
        if isinstance(it, Block):
            if isinstance(it.layer, Conv2d):
                _check_conv(it, params, side, spec.quirks.maxpool_pad_zero)
            if it.relu.slope_inv != params.slope_inv:
                raise NitroError(f"engine: {it.relu.name} uses NITRO-ReLU alpha {it.relu.slope_inv}; "
                                 f"the engine's ReLU units are built for alpha {params.slope_inv}")
            blocks.append(it)
        elif isinstance(it, MaxPool2d):
            if it.kernel != (2, 2) or it.padding != (0, 0):
                raise NitroError(f"engine: {it.name}: max-pool {it.kernel} with padding "
                                 f"{it.padding}; between blocks the engine pools 2x2 windows, "
                                 f"unpadded")
            if not blocks or not isinstance(blocks[-1].layer, Conv2d):
                raise NitroError(f"engine: {it.name}: the engine pools convolution outputs only")
            side //= 2
        elif isinstance(it, Dropout):
            if not blocks:
                raise NitroError(f"engine: {it.name}: the engine drops block outputs only")
            check_dropout(it, params)
        elif not isinstance(it, Flatten):
            raise NitroError(f"engine: layer {it.name} ({type(it).__name__}) is not supported")
    if not blocks:
        raise NitroError("engine: the network has no local-loss block")
    if not spec.quirks.loss_grad_wrap:
        raise NitroError("engine: the loss-gradient unit implements the reference's int8 wrap "
                         "(quirks.loss_grad_wrap = true); the exact int16 variant is not built")
    if spec.output.amp != 1 or any(b.pred.amp != 1 for b in blocks):
        raise NitroError("engine: learning and output layers must have amp 1")
    if RELU_MEAN_CORRECTION.get(params.slope_inv) is None:
        raise NitroError(f"engine: unsupported alpha {params.slope_inv}")
    return blocks


def _check_conv(b: Block, p: EngineParams, side: int, quirk_pad_zero: bool) -> None:
    c = b.layer
    if c.kernel != 3 or c.padding != 1:
        raise NitroError(f"engine: {c.name}: kernel {c.kernel}, padding {c.padding}; the engine's "
                         f"window generator runs 3x3 convolutions with padding 1 (stride 1)")
    if c.out_channels % p.lanes:
        raise NitroError(f"engine: {c.name} has {c.out_channels} output channels; the engine needs "
                         f"a multiple of {p.lanes} (the lanes of a word)")
    if c.in_channels >= 1 << CV_N0_BITS:
        raise NitroError(f"engine: {c.name} has {c.in_channels} input channels; the window "
                         f"generator counts up to {(1 << CV_N0_BITS) - 1}")
    if b.pool is not None:
        g = PoolGeom(side, side, 1, *b.pool.kernel, *b.pool.padding)
        if (side - 1 + g.pw) // g.kw != g.wo - 1:
            raise NitroError(f"engine: {b.pool.name}: its windows {b.pool.kernel} leave columns of "
                             f"the {side}x{side} image uncovered; the engine's pools cover every "
                             f"column (rows may be left over)")
        if (g.ph or g.pw) and not quirk_pad_zero:
            raise NitroError(f"engine: {b.pool.name}: the engine's max-pool unit pads with 0 "
                             f"(quirks.maxpool_pad_zero = true, the reference's int8 pools)")
    if side >= 1 << (CV_BITS - 1):
        raise NitroError(f"engine: {c.name} works on {side}x{side} images; the window generator's "
                         f"limit is {(1 << (CV_BITS - 1)) - 1}")


EXT_BYTES = 3 << 30  # the tensors' share of the 4 GiB address space (program, counters after)


class _Planner:
    """External memory: every tensor in its own region, 4 KiB aligned."""

    def __init__(self, p: EngineParams) -> None:
        self.p, self.top, self.tensors = p, 0, {}

    def __call__(self, name: str, sel: int, layout: str, rows: int, feats: int,
                 image: tuple[int, int, int] | None = None, taps: bool = False) -> Tensor:
        from .program import EXT_ADDR_W, ext_word_bytes

        t = Tensor(name, sel, layout, rows, feats, 0, self.p.lanes, self.top, image, taps)
        self.top += cdiv(t.words * ext_word_bytes(self.p, sel), 4096) * 4096
        if self.top > EXT_BYTES:
            raise NitroError(f"engine: the network's tensors need more than {EXT_BYTES >> 20} MiB of "
                             f"external memory (at {name}); the engine's AXI addresses are "
                             f"{EXT_ADDR_W} bits")
        self.tensors[name] = t
        return t


@dataclass
class _Act:
    """A layer input or block output: batch-packed (col) and row layouts, image shape if any."""

    c: Tensor
    r: Tensor
    image: tuple[int, int, int] | None = None  # (h, w, channels)

    def perm(self) -> np.ndarray | None:
        """The column order of a linear layer that flattens this activation."""
        return None if self.image is None else hwc_perm(self.image[2], *self.image[:2])


@dataclass
class _Stage:
    """A block with its input and output, and the max-pools and dropouts that follow it (the
    layer, its output), in order."""

    block: Block
    x: _Act
    out: _Act
    learn: _Act  # the learning layer's input: out, or out through the learning pool
    after: list[tuple[MaxPool2d | Dropout, _Act]] = field(default_factory=list)


def compile_network(spec: NetworkSpec, batch: int, params: EngineParams | None = None,
                    lr_inv: int = LR_INV) -> Program:
    """External memory map + GEMM list of one training step of `spec` at batch size `batch` on
    the engine `params` (default: the one generated for `spec`, `EngineChoice`)."""
    p = engine_params(params, spec)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise NitroError(f"engine: batch size must be a positive integer, got {batch!r}")
    blocks = check_supported(spec, p)
    L, classes = p.lanes, spec.num_classes
    convs = any(isinstance(b.layer, Conv2d) for b in blocks)
    if convs and batch % L:
        raise NitroError(f"engine: a CNN's batch must be a multiple of {L} (a convolution's "
                         f"m tiles are {L} images), got {batch}")
    alloc = _Planner(p)
    tensors = alloc.tensors

    def act(name: str, feats: int, image=None, r_image=None, taps: bool = False) -> _Act:
        r_feats = feats if r_image is None else int(np.prod(r_image))
        return _Act(alloc(f"{name}.c", SEL_AMEM_C, "col", batch, feats, image),
                    alloc(f"{name}.r", SEL_AMEM_R, "row", batch, r_feats, r_image or image, taps),
                    image)

    cin, side, _ = spec.input_shape
    if convs:  # the row layout's channels padded to whole words (a weight gradient's M tile)
        # (a 1-channel image's row layout holds window taps instead: `tap_packed`)
        cur = act("x", side * side * cin, (side, side, cin), (side, side, cdiv(cin, L) * L),
                  taps=cin == 1 and L >= TAP_LANES)
    else:
        cur = act("x", int(np.prod(spec.input_shape)))
    layers: dict[str, LayerMap] = {}
    stages: list[_Stage] = []
    cleared: list[Tensor] = []
    for it in spec.items:
        if isinstance(it, MaxPool2d):
            h, w, c = cur.image
            g = PoolGeom(h, w, c, *it.kernel)
            cur = act(it.name, g.ho * g.wo * c, (g.ho, g.wo, c))
            stages[-1].after.append((it, cur))
            continue
        if isinstance(it, Dropout):  # the keep masks, as the source: per step from the host
            feats = cur.c.feats
            alloc(f"{it.name}.mask.c", SEL_SMEM, "col", batch, feats, cur.image)
            alloc(f"{it.name}.mask.r", SEL_SMEM, "row", batch, feats, cur.image)
            cur = act(it.name, feats, cur.image, cur.r.image)
            stages[-1].after.append((it, cur))
            continue
        if not isinstance(it, Block):
            continue
        b, lf, lp = it, it.layer, it.pred
        if isinstance(lf, Conv2d):
            h, w, _ = cur.image
            image = (h, w, lf.out_channels)
            feats = h * w * lf.out_channels
            layers[lf.name] = LayerMap(lf, "fwd", alloc(f"{lf.name}.wT", SEL_WMEM, "wT",
                                                        9 * lf.in_channels, lf.out_channels))
        else:
            image, feats = None, lf.out_features
            layers[lf.name] = LayerMap(lf, "fwd", alloc(f"{lf.name}.wT", SEL_WMEM, "wT",
                                                        lf.in_features, feats), perm=cur.perm())
        out = act(f"{b.name}.a", feats, image)
        learn = out
        if b.pool is not None:
            g = PoolGeom(*image, *b.pool.kernel, *b.pool.padding)
            learn = act(f"{b.name}.p", g.ho * g.wo * image[2], (g.ho, g.wo, image[2]))
        stages.append(_Stage(b, cur, out, learn))
        cur = out
        layers[lp.name] = LayerMap(lp, "pred", alloc(f"{lp.name}.wT", SEL_WMEM, "wT", lp.in_features,
                                                     lp.out_features),
                                   alloc(f"{lp.name}.w", SEL_WTMEM, "w", lp.out_features,
                                         lp.in_features), learn.perm())
        alloc(f"{b.name}.s", SEL_SMEM, "row", batch, feats, image)
        alloc(f"{b.name}.delta", SEL_DMEM, "row", batch, feats, image)
        if b.pool is not None:
            alloc(f"{b.name}.s.marked", SEL_SMEM, "row", batch, feats, image)
            if PoolGeom(*image, *b.pool.kernel, *b.pool.padding).covered < image[0]:
                cleared.append(tensors[f"{b.name}.delta"])
        alloc(f"{b.name}.e.c", SEL_AMEM_C, "col", batch, classes)
        alloc(f"{b.name}.e.d", SEL_DMEM, "row", batch, classes)
        alloc(f"{b.name}.yhat", SEL_SMEM, "row", batch, classes)
    o = spec.output
    layers[o.name] = LayerMap(o, "out", alloc(f"{o.name}.wT", SEL_WMEM, "wT", o.in_features,
                                              o.out_features), perm=cur.perm())
    alloc("out.e.c", SEL_AMEM_C, "col", batch, classes)
    alloc("out.e.d", SEL_DMEM, "row", batch, classes)
    alloc("out.yhat", SEL_SMEM, "row", batch, classes)
    alloc("y", SEL_YMEM, "row", batch, classes)
    gemms = _gemms(spec, stages, cur, batch, layers, tensors, p, train=True)
    infer = _gemms(spec, stages, cur, batch, layers, tensors, p, train=False)
    phases = list(dict.fromkeys(g.phase for g in gemms))
    # too many for the counters: a phase per kind of command, convolutions still per layer
    for keep in ({g.phase for g in gemms if g.conv is not None}, set()):
        if len(phases) <= N_PHASES - 1:
            break
        for g in gemms + infer:
            g.phase = g.phase if g.phase in keep else g.phase.split("/")[0]
        phases = list(dict.fromkeys(g.phase for g in gemms))
    phases.append("control")  # the END command closing every RUN
    macs: dict[str, int] = {}
    for g in gemms:
        if g.pool is None:
            macs[g.phase] = macs.get(g.phase, 0) + g.m * g.n * g.k
    prog = Program(p, spec, batch, tensors, layers, gemms, infer, phases, 0, macs,
                   alloc.top, cleared)
    set_lr(prog, lr_inv)
    return prog


def _gemms(spec, stages, last, batch, layers, tensors, p, train: bool) -> list[Gemm]:
    """The GEMMs of one step (train=False: only the forward GEMMs of every layer, the learning
    layers' included).

    Order: each block's forward, then its local learning (learning layer, loss gradient, delta,
    learning-layer update), the output layer with its update, and last the blocks' forward-layer
    updates. The reference runs the output layer's backward first and the blocks last to first;
    the results are the same because with local losses a block's backward reads only its own
    stored activations, its own weights and the targets, and each layer's weights are updated
    after every GEMM that reads them. This order puts a block's learning GEMMs right behind the
    forward whose outputs they read (`tiling` runs such chains on chip), and the forward-layer
    updates, which read the blocks' deltas, after the output layer, well after those deltas.
    A block the reference trains twice per step (a CNN's FC blocks, `quirks.fc_double_update`)
    runs its whole backward, forward-layer update included, twice right after its forward: the
    second pass reads the weights the first one wrote, as the reference's does. A max-pool
    between blocks follows the forward of the block before it, in both layouts."""
    low = _Lowering(spec, batch, layers, tensors, p, train)
    for st in stages:
        low.block(st)
    low.output(last)
    return low.gemms + low.late


class _Lowering:
    """The GEMM list of one step being built (`_gemms`): one method per kind of GEMM group."""

    def __init__(self, spec, batch, layers, tensors, p, train: bool) -> None:
        self.spec, self.batch, self.layers, self.tensors, self.p = spec, batch, layers, tensors, p
        self.train = train
        self.gemms: list[Gemm] = []
        self.late: list[Gemm] = []  # the forward-layer updates, after the output layer

    def scale(self, sf: int) -> dict:
        if sf > self.p.max_scale:
            raise NitroError(f"engine: scaling factor {sf} exceeds the engine's max {self.p.max_scale}")
        return {"sc_sf": sf}

    def gemm(self, name, op, a, b, m, k, n, consts=None, sgd=None, conv=None, to=None, pool=None,
             unpool=None, **outs) -> None:
        (self.gemms if to is None else to).append(Gemm(name, _phase(name), op, a, b, m, k, n, outs,
                                                       consts or {}, sgd, conv=conv, pool=pool,
                                                       unpool=unpool))

    def max_pool(self, name: str, src: _Act, dst: _Act) -> None:
        h, w, c = src.image
        for t, d, words in ((src.c, dst.c, c), (src.r, dst.r, c // self.p.lanes)):
            g = PoolGeom(h, w, words, 2, 2)
            self.gemm(f"{name}/pool", OP_POOL, t, t, self.batch, words, g.ho, pool=g, o0=d)

    def dropout(self, d: Dropout, src: _Act, dst: _Act) -> None:
        """Dropout in both layouts, each with its keep mask (training); inference copies."""
        mult = dropout_multiplier(d.rate) if self.train else 0
        for t, to in ((src.c, dst.c), (src.r, dst.r)):
            if src.image is None:  # a feature vector: one row of pixels
                h, (w, words) = 1, flat_geometry(t.stride, t.feats % t.lanes == 0 or t.layout == "col")
            else:
                h, w, c = src.image
                words = c if t.layout == "col" else c // self.p.lanes
            g = PoolGeom(h, w, words, 1, 1, drop=mult)
            mask = {"o2": self.tensors[f"{d.name}.mask.{t.layout[0]}"]} if self.train else {}
            self.gemm(f"{d.name}/drop", OP_POOL, t, t, self.batch, words, h, pool=g, o0=to, **mask)

    def block(self, st: _Stage) -> None:
        """A block: its forward, the max-pools after it, its learning pool, its local learning
        (once, or as often as the reference trains it per step) and its forward-layer update."""
        b, out = st.block, st.out
        s_t = self.tensors[f"{b.name}.s"]
        cg = self.conv_forward(st, s_t) if isinstance(b.layer, Conv2d) else self.linear_forward(st, s_t)
        src = out
        for it, dst in st.after:
            if isinstance(it, MaxPool2d):
                self.max_pool(it.name, src, dst)
            else:
                self.dropout(it, src, dst)
            src = dst
        unpool = self.learning_pool(st, s_t) if b.pool is not None else None
        passes = self.spec.backward_order.count(b.name) if self.train else 1
        for _ in range(passes):
            self.local_learning(st, unpool)
            if self.train:
                to = self.late if passes == 1 else None
                if cg is None:
                    self.linear_update(st, to)
                else:
                    self.conv_update(st, cg, to)

    def linear_forward(self, st: _Stage, s_t: Tensor) -> None:
        b, lf = st.block, st.block.layer
        self.gemm(f"{b.name}/fwd", OP_SCALE_RELU, st.x.c, self.layers[lf.name].w, self.batch,
                  lf.in_features, lf.out_features, self.scale(b.scaling.factor), o0=st.out.c,
                  o1=st.out.r, o2=s_t)

    def conv_forward(self, st: _Stage, s_t: Tensor) -> ConvGeom:
        b, lf = st.block, st.block.layer
        h, w, ci = st.x.image
        cg = ConvGeom(h, w, lf.in_channels, lf.out_channels)
        self.gemm(f"{b.name}/fwd", OP_SCALE_RELU, st.x.c, self.layers[lf.name].w, self.batch * h * w,
                  9 * ci, lf.out_channels, self.scale(b.scaling.factor), conv=cg, o0=st.out.c,
                  o1=st.out.r, o2=s_t)
        return cg

    def learning_pool(self, st: _Stage, s_t: Tensor) -> PoolGeom:
        """The learning pool (training: the arg-max marks s, `hw.engine.pool`); its geometry."""
        b, out = st.block, st.out
        h, w, c = out.image
        unpool = PoolGeom(h, w, c // self.p.lanes, *b.pool.kernel, *b.pool.padding)
        if self.train:
            s_mark = self.tensors[f"{b.name}.s.marked"]
            self.gemm(f"{b.name}/pool", OP_POOL, out.r, out.r, self.batch, unpool.words, unpool.ho,
                      pool=replace(unpool, mask=True), o0=st.learn.r, o2=s_t, o3=s_mark)
        self.gemm(f"{b.name}/pool", OP_POOL, out.c, out.c, self.batch, c, unpool.ho,
                  pool=replace(unpool, words=c), o0=st.learn.c)
        return unpool

    def local_learning(self, st: _Stage, unpool: PoolGeom | None) -> None:
        """The learning layer and its loss gradient; training: the delta and its update."""
        b, lp, t = st.block, st.block.pred, self.tensors
        self.gemm(f"{b.name}/learn", OP_SCALE_LOSS, st.learn.c, self.layers[lp.name].w, self.batch,
                  lp.in_features, self.spec.num_classes, self.scale(b.pred_scaling.factor),
                  o0=t[f"{b.name}.e.c"], o1=t[f"{b.name}.e.d"], o2=t[f"{b.name}.yhat"], o3=t["y"])
        if not self.train:
            return
        # (image rows no window covers keep the zero delta the host wrote: `Program.cleared`)
        n = st.out.c.feats if unpool is None else st.out.c.feats // unpool.h * unpool.covered
        s_mark = t.get(f"{b.name}.s.marked", t[f"{b.name}.s"])  # what the ReLU backward reads
        self.gemm(f"{b.name}/delta", OP_RELU_BWD, t[f"{b.name}.e.c"], self.layers[lp.name].wt,
                  self.batch, self.spec.num_classes, n, unpool=unpool, o1=t[f"{b.name}.delta"],
                  o2=s_mark)
        self.gemm(f"{b.name}/update_learn", OP_SGD, st.learn.r, t[f"{b.name}.e.d"], lp.in_features,
                  self.batch, self.spec.num_classes, sgd=lp, o3=self.layers[lp.name].w,
                  o4=self.layers[lp.name].wt)

    def linear_update(self, st: _Stage, to: list | None) -> None:
        b, lf = st.block, st.block.layer
        self.gemm(f"{b.name}/update_fwd", OP_SGD, st.x.r, self.tensors[f"{b.name}.delta"],
                  lf.in_features, self.batch, lf.out_features, sgd=lf, o3=self.layers[lf.name].w,
                  to=to)

    def conv_update(self, st: _Stage, cg: ConvGeom, to: list | None) -> None:
        """One weight-gradient GEMM per window position, or two of a tap-packed input."""
        b, lf, x = st.block, st.block.layer, st.x
        wins = ([(1, 1, TAP_LANES, 1), (1, 0, 1, 0)] if x.r.taps else
                [(ky, kx, lf.in_channels, None) for ky in range(3) for kx in range(3)])
        for ky, kx, rows, tap in wins:
            self.gemm(f"{b.name}/update_fwd", OP_SGD, x.r, self.tensors[f"{b.name}.delta"], rows,
                      self.batch * cg.pixels, lf.out_channels, sgd=lf,
                      conv=replace(cg, window=(ky, kx), tap=tap), o3=self.layers[lf.name].w, to=to)

    def output(self, last: _Act) -> None:
        """The output layer and its loss gradient; training: its update."""
        o, t, classes = self.spec.output, self.tensors, self.spec.num_classes
        self.gemm("output/fwd", OP_SCALE_LOSS, last.c, self.layers[o.name].w, self.batch,
                  o.in_features, classes, self.scale(self.spec.output_scaling.factor),
                  o0=t["out.e.c"], o1=t["out.e.d"], o2=t["out.yhat"], o3=t["y"])
        if self.train:
            self.gemm("output/update", OP_SGD, last.r, t["out.e.d"], o.in_features, self.batch,
                      classes, sgd=o, o3=self.layers[o.name].w)


def _phase(name: str) -> str:
    """'block_00/update_fwd' -> 'upd_fwd/block_00' (counter phases group a kind of command)."""
    owner, kind = name.split("/")
    kind = {"update_learn": "upd_learn", "update_fwd": "upd_fwd", "update": "update"}.get(kind, kind)
    return f"{'out' if owner == 'output' else kind}/{owner if owner != 'output' else kind}"


def set_lr(prog: Program, lr_inv: int) -> None:
    """(Re)compute the IntegerSGD divisor constants of every update command for `lr_inv`."""
    p = prog.params
    if isinstance(lr_inv, bool) or not isinstance(lr_inv, int) or lr_inv <= 0:
        raise NitroError(f"engine: lr_inv must be a positive integer, got {lr_inv!r}")
    gmw, gsw = p.grad_div
    emw, esw = p.eta_div
    for g in prog.gemms:
        if g.sgd is None:
            continue
        d = sgd_divisor(lr_inv, g.sgd.amp)
        if d > p.max_divisor:
            raise NitroError(f"engine: IntegerSGD divisor lr_inv*amp = {d} exceeds the engine's "
                             f"max {p.max_divisor} ({g.name})")
        cst = divider_constants(d, p.acc_bits, gmw, gsw)
        eta = g.sgd.decay_inv
        if eta > p.max_eta:
            raise NitroError(f"engine: weight-decay inverse {eta} exceeds the engine's max {p.max_eta}")
        ce = divider_constants(eta, p.weight_bits, emw, esw) if eta else None
        g.consts.update(d_mult=cst.mult, d_shift=cst.shift, e_mult=ce.mult if ce else 0,
                        e_shift=ce.shift if ce else 0)
    prog.lr_inv = lr_inv


def validate_gemm(g: Gemm, p: EngineParams) -> None:
    """Every scratchpad address a (tiled) command can touch lies inside its scratchpad; every
    field fits its width."""
    where = f"engine: command {g.name}"
    if g.pool is not None:
        _in_mem(where, "pool source", g.a.sel, g.a.base + g.a.words - 1, p)
        _check_slots(where, g, p)
        return
    layout = command_layout(p)
    widths = {name: f.width for name, f in layout}
    c = g.fields(0)
    for f in ("k_len", "m_len", "n_len", "a_base", "a_sm", "a_sk", "b_base", "b_sk"):
        if not 0 <= c[f] < (1 << widths[f]):
            raise NitroError(f"{where}: field {f} = {c[f]} does not fit {widths[f]} bits")
    if min(g.m, g.n, g.k) < 1:
        raise NitroError(f"{where}: empty GEMM (M, N, K must be >= 1)")
    if (g.k_cont or g.k_hold) and g.c_tiles != 1:
        raise NitroError(f"{where}: a chunk of K must cover one C tile (the array accumulates one)")
    if (g.p_in or g.p_out) and g.op not in PARTIAL_OPS:
        raise NitroError(f"{where}: only serial ops keep partial sums (chunks of K) in pmem")
    if (g.p_in or g.p_out) and (g.p_base + g.c_tiles * p.lanes) * p.lanes > p.pmem_depth:
        raise NitroError(f"{where}: the partial sums of {g.c_tiles} C tiles from row {g.p_base} "
                         f"reach word {(g.p_base + g.c_tiles * p.lanes) * p.lanes} of pmem; the "
                         f"engine has {p.pmem_depth}")
    if g.op == OP_SGD and g.b.sel == SEL_WMEM:
        raise NitroError(f"{where}: an update command cannot take its B operand from wmem "
                         f"(the update reads and writes wmem through the same ports)")
    m_tiles, n_tiles = cdiv(g.m, p.lanes), cdiv(g.n, p.lanes)
    if g.conv is None:
        a_hi = c["a_base"] + (m_tiles - 1) * c["a_sm"] + (c["k_len"] - 1) * c["a_sk"]
    else:  # the window's reads outside the image read zero, wherever they point
        a_hi = g.a.base + g.a.words - 1
    b_hi = c["b_base"] + (c["k_len"] - 1) * c["b_sk"] + n_tiles - 1
    if g.unpool is not None:  # n runs over the un-pooled pixels, B over the pooled
        b_hi = g.b.base + g.b.words - 1
    _in_mem(where, "A operand", g.a.sel, a_hi, p)
    _in_mem(where, "B operand", g.b.sel, b_hi, p)
    _check_slots(where, g, p)


def _check_slots(where: str, g: Gemm, p: EngineParams) -> None:
    """Each output slot addresses the scratchpad its op's slot does (`OP_SLOTS`), inside it."""
    for slot, t in g.outs.items():
        use = OP_SLOTS[g.op].get(slot)
        if use is None or t.sel != (g.a.sel if use.sel is None else use.sel):
            raise NitroError(f"{where}: output slot {slot} cannot address {MEM_NAMES[t.sel]}")
        _in_mem(where, f"output slot {slot}", t.sel, t.base + t.words - 1, p)


PARTIAL_OPS = (OP_SCALE_RELU, OP_SCALE_LOSS, OP_SGD)  # the serial ops: their elements pass PMEM


@dataclass(frozen=True)
class SlotUse:
    """What an op does with one output slot: the scratchpad it addresses (None: the A operand's),
    and whether the op reads it (its block is loaded before RUN) and writes it (stored after)."""

    sel: int | None
    reads: bool = False
    writes: bool = True


# each op's output slots (`core.Engine`'s write and read ports, the pool's source and mask)
OP_SLOTS = {
    OP_SCALE_RELU: {"o0": SlotUse(SEL_AMEM_C), "o1": SlotUse(SEL_AMEM_R), "o2": SlotUse(SEL_SMEM)},
    OP_SCALE_LOSS: {"o0": SlotUse(SEL_AMEM_C), "o1": SlotUse(SEL_DMEM), "o2": SlotUse(SEL_SMEM),
                    "o3": SlotUse(SEL_YMEM, reads=True, writes=False)},
    OP_RELU_BWD: {"o1": SlotUse(SEL_DMEM), "o2": SlotUse(SEL_SMEM, reads=True, writes=False)},
    OP_SGD: {"o3": SlotUse(SEL_WMEM, reads=True), "o4": SlotUse(SEL_WTMEM)},
    OP_POOL: {"o0": SlotUse(None), "o2": SlotUse(SEL_SMEM, reads=True, writes=False),
              "o3": SlotUse(SEL_SMEM)},
}


def read_slots(op: int) -> tuple[str, ...]:
    """The slots op `op` reads: their blocks are loaded before the RUN."""
    return tuple(s for s, u in OP_SLOTS.get(op, {}).items() if u.reads)


def written_slots(op: int) -> tuple[str, ...]:
    """The slots op `op` writes: their blocks are stored after the RUN."""
    return tuple(s for s, u in OP_SLOTS.get(op, {}).items() if u.writes)


def _in_mem(where: str, what: str, sel: int, hi: int, p: EngineParams) -> None:
    if hi >= p.depth(sel) or hi < 0:
        raise NitroError(f"{where}: {what} reaches word {hi} of {MEM_NAMES[sel]}, which has "
                         f"{p.depth(sel)} words")


# ---- packing ---------------------------------------------------------------------------------

def pack_tensor(t: Tensor, mat: np.ndarray) -> np.ndarray:
    """A (rows x feats) integer matrix -> (t.words, lanes) lane values in the tensor's layout."""
    L = t.lanes
    mat = np.asarray(mat, dtype=np.int64)
    if mat.shape != (t.rows, t.feats):
        raise NitroError(f"engine: {t.name} must have shape {(t.rows, t.feats)}, got {mat.shape}")
    if t.layout == "col":
        rp = cdiv(t.rows, L) * L
        full = np.zeros((rp, t.feats), dtype=np.int64)
        full[:t.rows] = mat
        return full.reshape(rp // L, L, t.feats).transpose(0, 2, 1).reshape(-1, L)
    fp = cdiv(t.feats, L) * L
    full = np.zeros((t.rows, fp), dtype=np.int64)
    full[:, :t.feats] = mat
    if t.layout == "wT":
        return full.reshape(t.rows, fp // L, L).transpose(1, 0, 2).reshape(-1, L)
    return full.reshape(-1, L)


def unpack_tensor(t: Tensor, lanes: np.ndarray) -> np.ndarray:
    """Inverse of pack_tensor: (t.words, lanes) -> (rows x feats)."""
    L = t.lanes
    lanes = np.asarray(lanes, dtype=np.int64)
    if t.layout == "col":
        rp = cdiv(t.rows, L) * L
        return lanes.reshape(rp // L, t.feats, L).transpose(0, 2, 1).reshape(rp, t.feats)[:t.rows]
    fp = cdiv(t.feats, L) * L
    if t.layout == "wT":
        return lanes.reshape(fp // L, t.rows, L).transpose(1, 0, 2).reshape(t.rows, fp)[:, :t.feats]
    return lanes.reshape(t.rows, fp)[:, :t.feats]


def delta_reach(w: np.ndarray) -> int:
    """The largest |e . W| a learning layer's weights `w` (out, in) give its delta with int8 e
    (|e| <= 128): 128 x the largest column sum of |W| (spec 9.2)."""
    return 128 * int(np.abs(np.asarray(w, np.int64)).sum(axis=0).max(initial=0))


def check_weight_storage(prog: Program, name: str, w: np.ndarray) -> None:
    """NitroError when layer `name`'s weights `w` do not fit the engine's weight storage (it would
    hold them wrapped)."""
    lim = 1 << (prog.params.weight_bits - 1)
    if w.size and (w.min() < -lim or w.max() >= lim):
        raise NitroError(f"engine: weights of {name} exceed the engine's {prog.params.weight_bits}-bit "
                         f"weight storage (|W| up to {int(np.abs(w.astype(np.int64)).max())})")


def weight_tensors(prog: Program, params: dict[str, np.ndarray]) -> list[tuple[Tensor, np.ndarray]]:
    """(tensor, matrix) pairs of every weight region, checked against the engine's weight width,
    and a learning layer's against its delta width (`delta_reach`)."""
    dlim = 1 << (prog.params.delta_bits - 1)
    out = []
    for name, lm in prog.layers.items():
        w = np.asarray(params[name])
        if w.shape != lm.layer.weight_shape:
            raise NitroError(f"engine: weights of {name} have shape {w.shape}, expected "
                             f"{lm.layer.weight_shape}")
        check_weight_storage(prog, name, w)
        we = lm.to_engine(w)
        out.append((lm.w, we.T))
        if lm.wt is not None:
            if (reach := delta_reach(w)) >= dlim:
                raise NitroError(f"engine: {name}'s weights could carry its deltas e . W past the "
                                 f"engine's {prog.params.delta_bits}-bit delta storage (|e . W| up "
                                 f"to {reach}: 128 x its largest column sum of |W|)")
            out.append((lm.wt, we))
    return out


BATCH_TENSORS = ("x.c", "x.r", "y")  # what the host writes per step: the batch in both layouts, targets


def dropouts(prog: Program) -> list[Dropout]:
    return [it for it in prog.spec.items if isinstance(it, Dropout)]


def batch_names(prog: Program) -> tuple[str, ...]:
    """The tensors the host writes per training step: BATCH_TENSORS and each dropout's keep
    mask in both layouts."""
    return BATCH_TENSORS + tuple(f"{d.name}.mask.{k}" for d in dropouts(prog) for k in "cr")


def batch_tensors(prog: Program, x: np.ndarray, y: np.ndarray,
                  masks: dict[str, np.ndarray] | None = None) -> list[tuple[Tensor, np.ndarray]]:
    """The per-step host stream: the int8 batch (both layouts), the one-hot targets and, for
    training, each dropout's 0/1 keep mask (`masks`: as `NitroNet.draw_masks` draws them)."""
    spec = prog.spec
    want_x = (prog.batch, *spec.input_shape)
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape != want_x:
        raise NitroError(f"engine: the batch must have shape {want_x} (the engine was compiled for "
                         f"batch {prog.batch}), got {x.shape}")
    if not np.issubdtype(x.dtype, np.integer) or x.dtype.itemsize != 1 or x.dtype.kind != "i":
        raise NitroError(f"engine: the batch must be int8, got {x.dtype}")
    if y.shape != (prog.batch, spec.num_classes):
        raise NitroError(f"engine: targets must have shape {(prog.batch, spec.num_classes)}, "
                         f"got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.size and (y.min() < -128 or y.max() > 127):
        raise NitroError("engine: targets must be int8 values")
    t = prog.tensors

    def image(tx: Tensor) -> np.ndarray:
        if tx.taps:
            return tap_packed(x, tx.image[2])
        return x.reshape(prog.batch, -1) if tx.image is None else to_hwc(x, tx.image[2])

    xc, xr, yt = (t[name] for name in BATCH_TENSORS)
    return [(xc, image(xc)), (xr, image(xr)), (yt, y)] + _mask_tensors(prog, masks or {})


def _mask_tensors(prog: Program, masks: dict[str, np.ndarray]) -> list[tuple[Tensor, np.ndarray]]:
    names = [d.name for d in dropouts(prog)] if masks else []
    if sorted(masks) != sorted(names):
        raise NitroError(f"engine: dropout masks for {sorted(masks)}, the network has {sorted(names)}")
    out = []
    for name in names:
        t, k = prog.tensors[f"{name}.mask.c"], np.asarray(masks[name])
        want = (prog.batch, t.feats) if t.image is None else (prog.batch, t.image[2], *t.image[:2])
        if k.shape != want or not np.isin(k, (0, 1)).all():
            raise NitroError(f"engine: the keep mask of {name} must be {want} values of 0 or 1, "
                             f"got shape {k.shape}")
        mat = k if t.image is None else to_hwc(k)
        out += [(t, mat), (prog.tensors[f"{name}.mask.r"], mat)]
    return out


def pack_command(p: EngineParams, fields: dict) -> int:
    """One command (`Gemm.fields`, or an END) as an integer of the command layout's width."""
    layout = command_layout(p)
    value = 0
    for name, f in layout:
        if name in SLOTS:
            v = fields.get(name, {"base": 0, "stride": 0})
            fv = v["base"] | (v["stride"] << ADDR_W)
        else:
            fv = int(fields.get(name, 0))
            if f.shape.signed and -(1 << (f.width - 1)) <= fv < 0:
                fv += 1 << f.width
        if not 0 <= fv < (1 << f.width):
            raise NitroError(f"engine: command field {name} = {fv} does not fit {f.width} bits")
        value |= fv << f.offset
    return value
