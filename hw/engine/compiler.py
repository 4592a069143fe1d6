"""Host side of the engine: a NITRO-D network -> its tensors in external memory and the GEMMs of one
training step (`hw.engine.tiling` then cuts them into scratchpad tiles and the program), plus the
packing of matrices into memory words.

Everything here runs before simulation and raises `NitroError` with one clear line when the engine
cannot run the network: a layer type it has no lowering for (conv, dropout: next steps), a
constant beyond the engine's dividers, a batch of the wrong shape, a command that points outside
a scratchpad.

Layouts (L = lanes per word = MAC array side); each tensor is loaded into the scratchpad `sel`:
  act "col"  (AMEM_C): word (b / L) * F + f,        lanes b % L   (A of forward GEMMs)
  act "row"  (AMEM_R, DMEM, SMEM, YMEM): word b * ceil(F/L) + f / L, lanes f % L
  weights    (WMEM): W^T, word i * ceil(out/L) + o / L, lanes o % L   (B of forward GEMMs);
             in external memory panel-major, word (o / L) * in + i, so that a tile's columns
             are whole bursts (`program` LOAD / STORE `across`)
  W_l copy   (WTMEM): W, word c * ceil(in/L) + i / L, lanes i % L   (B of delta GEMMs)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .params import (
    ADDR_W, A_SOURCES, B_SOURCES, MEM_NAMES, N_PHASES, OP_RELU_BWD,
    OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, SEL_AMEM_C, SEL_AMEM_R, SEL_DMEM, SEL_SMEM,
    SEL_WMEM, SEL_WTMEM, SEL_YMEM, EngineParams, command_layout,
)
from model.divider import divider_constants
from model.layers import RELU_MEAN_CORRECTION
from model.numerics import NitroError
from model.spec import Block, Dropout, Flatten, Linear, NetworkSpec

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
    layer: Linear
    role: str  # "fwd", "pred", "out"
    w: Tensor  # W^T (rows = in, feats = out)
    wt: Tensor | None = None  # W (rows = out, feats = in), learning layers only


SLOTS = ("o0", "o1", "o2", "o3", "o4")


@dataclass
class Gemm:
    """One GEMM command: C[m x n] = A[m x k] . B[k x n], then the output op on every C element.
    A is `a` (col layout: rows = m) or the transpose of `a` (row layout: feats = m); B is `b`
    (rows = k, feats = n). `outs` maps output slots to tensors (see `params.command_layout`)."""

    name: str
    phase: str
    op: int
    a: Tensor
    b: Tensor
    m: int
    k: int
    n: int
    outs: dict[str, Tensor]
    consts: dict[str, int] = field(default_factory=dict)  # sc_*, d_*, e_* divider constants
    sgd: Linear | None = None  # the layer an update command trains
    k_cont: bool = False  # a chunk of K after the first (`params.command_layout`)
    k_hold: bool = False  # a chunk of K before the last: no output

    @property
    def wt_en(self) -> int:
        return int("o4" in self.outs)

    def fields(self, phase_index: int) -> dict:
        """The command's hardware fields (`params.command_layout`), for `pack_command`."""
        L = self.a.lanes
        a, b = self.a, self.b
        a_sm, a_sk = (a.stride, 1) if a.layout == "col" else (1, a.stride)
        f = dict(op=self.op, phase=phase_index, wt_en=self.wt_en, k_cont=int(self.k_cont),
                 k_hold=int(self.k_hold),
                 a_sel=[k_ for k_, v in A_SOURCES.items() if v == a.sel][0],
                 b_sel=[k_ for k_, v in B_SOURCES.items() if v == b.sel][0],
                 m_len=self.m, n_len=self.n, k_len=self.k, m_tiles=cdiv(self.m, L),
                 n_tiles=cdiv(self.n, L), a_base=a.base, a_sm=a_sm, a_sk=a_sk, b_base=b.base,
                 b_sk=b.stride, b_sn=1)
        for slot in SLOTS:
            t = self.outs.get(slot)
            f[slot] = {"base": t.base, "stride": t.stride} if t is not None else {"base": 0, "stride": 0}
        f.update(self.consts)
        return f


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


# ---- compilation -----------------------------------------------------------------------------

def check_supported(spec: NetworkSpec, params: EngineParams) -> list[Block]:
    """The engine runs NITRO-D MLPs: Flatten, LocalLinearBlocks, output Linear. Else NitroError."""
    blocks = []
    for it in spec.items:
        if isinstance(it, Block):
            if not isinstance(it.layer, Linear):
                raise NitroError(f"engine: {it.name} is a convolution block; the engine runs MLPs "
                                 f"only (conv lowers to GEMM via im2col addressing: not built yet)")
            if it.pool is not None:
                raise NitroError(f"engine: {it.name} has a learning-layer MaxPool (not supported)")
            if it.relu.slope_inv != params.slope_inv:
                raise NitroError(f"engine: {it.relu.name} uses NITRO-ReLU alpha {it.relu.slope_inv}; "
                                 f"the engine's ReLU units are built for alpha {params.slope_inv}")
            blocks.append(it)
        elif isinstance(it, Dropout):
            raise NitroError(f"engine: {it.name}: dropout is not supported by the engine "
                             f"(it needs a random-number source in the RTL)")
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


EXT_BYTES = 3 << 30  # the tensors' share of the 4 GiB address space (program, counters after)


class _Planner:
    """External memory: every tensor in its own region, 4 KiB aligned."""

    def __init__(self, p: EngineParams) -> None:
        self.p, self.top, self.tensors = p, 0, {}

    def __call__(self, name: str, sel: int, layout: str, rows: int, feats: int) -> Tensor:
        from .program import EXT_ADDR_W, ext_word_bytes

        t = Tensor(name, sel, layout, rows, feats, 0, self.p.lanes, self.top)
        self.top += cdiv(t.words * ext_word_bytes(self.p, sel), 4096) * 4096
        if self.top > EXT_BYTES:
            raise NitroError(f"engine: the network's tensors need more than {EXT_BYTES >> 20} MiB of "
                             f"external memory (at {name}); the engine's AXI addresses are "
                             f"{EXT_ADDR_W} bits")
        self.tensors[name] = t
        return t


def compile_network(spec: NetworkSpec, batch: int, params: EngineParams | None = None,
                    lr_inv: int = 512) -> Program:
    """External memory map + GEMM list of one training step of `spec` at batch size `batch`."""
    p = params or EngineParams()
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise NitroError(f"engine: batch size must be a positive integer, got {batch!r}")
    blocks = check_supported(spec, p)
    classes = spec.num_classes
    f_in = int(np.prod(spec.input_shape))
    alloc = _Planner(p)
    tensors = alloc.tensors
    acts = [(alloc("x.c", SEL_AMEM_C, "col", batch, f_in), alloc("x.r", SEL_AMEM_R, "row", batch, f_in))]
    for b in blocks:
        h = b.layer.out_features
        acts.append((alloc(f"{b.name}.a.c", SEL_AMEM_C, "col", batch, h),
                     alloc(f"{b.name}.a.r", SEL_AMEM_R, "row", batch, h)))
    layers: dict[str, LayerMap] = {}
    for b in blocks:
        lf, lp = b.layer, b.pred
        layers[lf.name] = LayerMap(lf, "fwd", alloc(f"{lf.name}.wT", SEL_WMEM, "wT", lf.in_features,
                                                    lf.out_features))
        layers[lp.name] = LayerMap(lp, "pred", alloc(f"{lp.name}.wT", SEL_WMEM, "wT", lp.in_features,
                                                     lp.out_features),
                                   alloc(f"{lp.name}.w", SEL_WTMEM, "w", lp.out_features, lp.in_features))
        alloc(f"{b.name}.s", SEL_SMEM, "row", batch, lf.out_features)
        alloc(f"{b.name}.delta", SEL_DMEM, "row", batch, lf.out_features)
        alloc(f"{b.name}.e.c", SEL_AMEM_C, "col", batch, classes)
        alloc(f"{b.name}.e.d", SEL_DMEM, "row", batch, classes)
        alloc(f"{b.name}.yhat", SEL_SMEM, "row", batch, classes)
    o = spec.output
    layers[o.name] = LayerMap(o, "out", alloc(f"{o.name}.wT", SEL_WMEM, "wT", o.in_features,
                                              o.out_features))
    alloc("out.e.c", SEL_AMEM_C, "col", batch, classes)
    alloc("out.e.d", SEL_DMEM, "row", batch, classes)
    alloc("out.yhat", SEL_SMEM, "row", batch, classes)
    alloc("y", SEL_YMEM, "row", batch, classes)
    gemms = _gemms(spec, blocks, batch, acts, layers, tensors, p, train=True)
    infer = _gemms(spec, blocks, batch, acts, layers, tensors, p, train=False)
    phases = list(dict.fromkeys(g.phase for g in gemms))
    if len(phases) > N_PHASES - 1:  # fall back to one phase per kind of command
        for g in gemms + infer:
            g.phase = g.phase.split("/")[0]
        phases = list(dict.fromkeys(g.phase for g in gemms))
    phases.append("control")  # the END command closing every RUN
    macs: dict[str, int] = {}
    for g in gemms:
        macs[g.phase] = macs.get(g.phase, 0) + g.m * g.n * g.k
    prog = Program(p, spec, batch, tensors, layers, gemms, infer, phases, 0, macs,
                   alloc.top)
    set_lr(prog, lr_inv)
    return prog


def _gemms(spec, blocks, batch, acts, layers, tensors, p, train: bool) -> list[Gemm]:
    """The GEMMs of one step (train=False: only the forward GEMMs of every layer, the learning
    layers' included).

    Order: each block's forward, then its local learning (learning layer, loss gradient, delta,
    learning-layer update), the output layer with its update, and last the blocks' forward-layer
    updates. The reference runs the output layer's backward first and the blocks last to first;
    the results are the same because with local losses a block's backward reads only its own
    stored activations, its own weights and the targets, and each layer's weights are updated
    after every GEMM that reads them. This order puts a block's learning GEMMs right behind the
    forward whose outputs they read (`tiling` runs such chains on chip), and the forward-layer
    updates, which read the blocks' deltas, after the output layer, well after those deltas."""
    classes = spec.num_classes
    smw, ssw = p.scale_div
    gemms: list[Gemm] = []

    def scale(sf: int) -> dict:
        if sf > p.max_scale:
            raise NitroError(f"engine: scaling factor {sf} exceeds the engine's max {p.max_scale}")
        cst = divider_constants(sf, p.acc_bits, smw, ssw)
        return {"sc_mult": cst.mult, "sc_shift": cst.shift}

    def gemm(name, op, a, b, m, k, n, consts=None, sgd=None, **outs):
        gemms.append(Gemm(name, _phase(name), op, a, b, m, k, n, outs, consts or {}, sgd))

    for k, b in enumerate(blocks):
        lf, lp = b.layer, b.pred
        a_c, a_r = acts[k + 1]
        h = lf.out_features
        gemm(f"{b.name}/fwd", OP_SCALE_RELU, acts[k][0], layers[lf.name].w, batch, lf.in_features,
             h, scale(b.scaling.factor), o0=a_c, o1=a_r, o2=tensors[f"{b.name}.s"])
        gemm(f"{b.name}/learn", OP_SCALE_LOSS, a_c, layers[lp.name].w, batch, h, classes,
             scale(b.pred_scaling.factor), o0=tensors[f"{b.name}.e.c"], o1=tensors[f"{b.name}.e.d"],
             o2=tensors[f"{b.name}.yhat"], o3=tensors["y"])
        if train:
            gemm(f"{b.name}/delta", OP_RELU_BWD, tensors[f"{b.name}.e.c"], layers[lp.name].wt, batch,
                 classes, h, o1=tensors[f"{b.name}.delta"], o2=tensors[f"{b.name}.s"])
            gemm(f"{b.name}/update_learn", OP_SGD, a_r, tensors[f"{b.name}.e.d"], h, batch, classes,
                 sgd=lp, o3=layers[lp.name].w, o4=layers[lp.name].wt)
    o = spec.output
    gemm("output/fwd", OP_SCALE_LOSS, acts[-1][0], layers[o.name].w, batch, o.in_features, classes,
         scale(spec.output_scaling.factor), o0=tensors["out.e.c"], o1=tensors["out.e.d"],
         o2=tensors["out.yhat"], o3=tensors["y"])
    if train:
        gemm("output/update", OP_SGD, acts[-1][1], tensors["out.e.d"], o.in_features, batch, classes,
             sgd=o, o3=layers[o.name].w)
        for k, b in enumerate(blocks):
            lf = b.layer
            gemm(f"{b.name}/update_fwd", OP_SGD, acts[k][1], tensors[f"{b.name}.delta"],
                 lf.in_features, batch, lf.out_features, sgd=lf, o3=layers[lf.name].w)
    return gemms


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
        d = lr_inv * g.sgd.amp
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
    layout = command_layout(p)
    widths = {name: f.width for name, f in layout}
    c = g.fields(0)
    for f in ("m_tiles", "n_tiles", "k_len", "m_len", "n_len", "a_base", "a_sm", "a_sk",
              "b_base", "b_sk", "b_sn"):
        if not 0 <= c[f] < (1 << widths[f]):
            raise NitroError(f"{where}: field {f} = {c[f]} does not fit {widths[f]} bits")
    if min(g.m, g.n, g.k) < 1:
        raise NitroError(f"{where}: empty GEMM (M, N, K must be >= 1)")
    if (g.k_cont or g.k_hold) and c["m_tiles"] * c["n_tiles"] != 1:
        raise NitroError(f"{where}: a chunk of K must cover one C tile (the array accumulates one)")
    if g.op == OP_SGD and g.b.sel == SEL_WMEM:
        raise NitroError(f"{where}: an update command cannot take its B operand from wmem "
                         f"(the update reads and writes wmem through the same ports)")
    a_hi = c["a_base"] + (c["m_tiles"] - 1) * c["a_sm"] + (c["k_len"] - 1) * c["a_sk"]
    b_hi = c["b_base"] + (c["k_len"] - 1) * c["b_sk"] + (c["n_tiles"] - 1) * c["b_sn"]
    _in_mem(where, "A operand", g.a.sel, a_hi, p)
    _in_mem(where, "B operand", g.b.sel, b_hi, p)
    for slot, t in g.outs.items():
        if t.sel != OUT_SLOTS[g.op].get(slot):
            raise NitroError(f"{where}: output slot {slot} cannot address {MEM_NAMES[t.sel]}")
        _in_mem(where, f"output slot {slot}", t.sel, t.base + t.words - 1, p)


# output slot -> the scratchpad each op's slot addresses (`core.Engine`'s write and read ports)
OUT_SLOTS = {
    OP_SCALE_RELU: {"o0": SEL_AMEM_C, "o1": SEL_AMEM_R, "o2": SEL_SMEM},
    OP_SCALE_LOSS: {"o0": SEL_AMEM_C, "o1": SEL_DMEM, "o2": SEL_SMEM, "o3": SEL_YMEM},
    OP_RELU_BWD: {"o1": SEL_DMEM, "o2": SEL_SMEM},
    OP_SGD: {"o3": SEL_WMEM, "o4": SEL_WTMEM},
}


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


def weight_tensors(prog: Program, params: dict[str, np.ndarray]) -> list[tuple[Tensor, np.ndarray]]:
    """(tensor, matrix) pairs of every weight region, checked against the engine's weight width."""
    lim = 1 << (prog.params.weight_bits - 1)
    out = []
    for name, lm in prog.layers.items():
        w = np.asarray(params[name])
        if w.shape != lm.layer.weight_shape:
            raise NitroError(f"engine: weights of {name} have shape {w.shape}, expected "
                             f"{lm.layer.weight_shape}")
        if w.size and (w.min() < -lim or w.max() >= lim):
            raise NitroError(f"engine: weights of {name} exceed the engine's "
                             f"{prog.params.weight_bits}-bit weight storage")
        out.append((lm.w, w.T))
        if lm.wt is not None:
            out.append((lm.wt, w))
    return out


def batch_tensors(prog: Program, x: np.ndarray, y: np.ndarray) -> list[tuple[Tensor, np.ndarray]]:
    """The per-step host stream: the int8 batch (both layouts) and the one-hot targets."""
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
    flat = x.reshape(prog.batch, -1)
    t = prog.tensors
    return [(t["x.c"], flat), (t["x.r"], flat), (t["y"], y)]


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
        if not 0 <= fv < (1 << f.width):
            raise NitroError(f"engine: command field {name} = {fv} does not fit {f.width} bits")
        value |= fv << f.offset
    return value
