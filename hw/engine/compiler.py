"""Host side of the engine: compile a NITRO-D network into the engine's memory map and GEMM command
stream, pack batches / weights into memory words, unpack read-back words.

Everything here runs before simulation and raises `NitroError` with one clear line when the engine
cannot run the network: a layer type it has no lowering for (conv, dropout: next steps), a config
that does not fit its memories, a batch of the wrong shape, a command that points outside a memory.

Memory layouts (L = lanes per word = MAC array side):
  act "col"  (AMEM_C): word base + (b / L) * F + f,        lanes b % L   (A of forward GEMMs)
  act "row"  (AMEM_R, DMEM, SMEM, YMEM): word base + b * ceil(F/L) + f / L, lanes f % L
  weights    (WMEM): W^T, word base + i * ceil(out/L) + o / L, lanes o % L   (B of forward GEMMs)
  W_l copy   (WTMEM): W, word base + c * ceil(in/L) + i / L, lanes i % L   (B of delta GEMMs)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .params import (
    ADDR_W, A_SOURCES, B_SOURCES, MEM_NAMES, N_PHASES, OP_END, OP_RELU_BWD,
    OP_SCALE_LOSS, OP_SCALE_RELU, OP_SGD, SEL_AMEM_C, SEL_AMEM_R, SEL_CMEM, SEL_DMEM, SEL_SMEM,
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
    """A region of one memory holding a (rows x features) matrix in a given layout."""

    name: str
    sel: int
    layout: str  # "col", "row", "wT" (weights W^T), "w" (W copy)
    rows: int
    feats: int
    base: int = 0
    lanes: int = 8

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
    w: Tensor  # W^T in WMEM (rows = in, feats = out)
    wt: Tensor | None = None  # W in WTMEM (rows = out, feats = in), learning layers only


@dataclass
class Program:
    params: EngineParams
    spec: NetworkSpec
    batch: int
    tensors: dict[str, Tensor]
    layers: dict[str, LayerMap]
    commands: list[dict]
    phases: list[str]
    usage: dict[int, int]  # words used per memory
    lr_inv: int = 0
    macs: dict[str, int] = field(default_factory=dict)  # useful multiply-accumulates per phase

    def cmd_index(self, name: str) -> int:
        return [c["name"] for c in self.commands].index(name)


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


def compile_network(spec: NetworkSpec, batch: int, params: EngineParams | None = None,
                    lr_inv: int = 512) -> Program:
    """Memory map + command stream of one training step of `spec` at batch size `batch`."""
    p = params or EngineParams()
    L = p.lanes
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise NitroError(f"engine: batch size must be a positive integer, got {batch!r}")
    blocks = check_supported(spec, p)
    classes = spec.num_classes
    f_in = int(np.prod(spec.input_shape))
    usage = {s: 0 for s in MEM_NAMES}
    tensors: dict[str, Tensor] = {}

    def alloc(name: str, sel: int, layout: str, rows: int, feats: int) -> Tensor:
        t = Tensor(name, sel, layout, rows, feats, usage[sel], L)
        usage[sel] += t.words
        tensors[name] = t
        return t

    # activations: x, then every block output, in both layouts
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

    cmds: list[dict] = []
    macs: dict[str, int] = {}

    def gemm(name, phase, op, a: Tensor, a_t: bool, b_src: Tensor, b_t: bool, m, k, n, **out):
        """C[m x n] = A[m x k] . B[k x n]. a_t: A is the transpose of tensor `a` (row layout);
        b_t: B is the transpose of weights stored as W^T (i.e. B = W^T^T ... see below)."""
        if a.layout == "col":  # A = act (rows = batch = M, feats = K)
            a_base, a_sm, a_sk = a.base, a.stride, 1
        else:  # A = act^T from the row layout (feats = M, rows = K)
            a_base, a_sm, a_sk = a.base, 1, a.stride
        # B operand: every B source holds its lanes along N with one word per k per n-tile.
        b_base, b_sk, b_sn = b_src.base, b_src.stride, 1
        c = dict(name=name, phase=phase, op=op, a_sel=[k_ for k_, v in A_SOURCES.items() if v == a.sel][0],
                 b_sel=[k_ for k_, v in B_SOURCES.items() if v == b_src.sel][0],
                 m_len=m, n_len=n, k_len=k, m_tiles=cdiv(m, L), n_tiles=cdiv(n, L),
                 a_base=a_base, a_sm=a_sm, a_sk=a_sk, b_base=b_base, b_sk=b_sk, b_sn=b_sn,
                 wt_en=0, sc_mult=0, sc_shift=0, d_mult=0, d_shift=0, e_mult=0, e_shift=0)
        for slot in ("o0", "o1", "o2", "o3", "o4"):
            t = out.get(slot)
            c[slot] = {"base": t.base, "stride": t.stride} if t is not None else {"base": 0, "stride": 0}
            c[slot + "_t"] = t.name if t is not None else None
        c.update({k_: v for k_, v in out.items() if not k_.startswith("o")})
        cmds.append(c)
        macs[phase] = macs.get(phase, 0) + m * n * k

    smw, ssw = p.scale_div

    def scale(sf: int) -> dict:
        if sf > p.max_scale:
            raise NitroError(f"engine: scaling factor {sf} exceeds the engine's max {p.max_scale}")
        cst = divider_constants(sf, p.acc_bits, smw, ssw)
        return {"sc_mult": cst.mult, "sc_shift": cst.shift, "sf": sf}

    def sgd(layer: Linear) -> dict:
        return {"sgd_layer": layer.name, "amp": layer.amp, "eta": layer.decay_inv}

    # forward of every block
    for k, b in enumerate(blocks):
        x_c, _ = acts[k]
        a_c, a_r = acts[k + 1]
        lf = b.layer
        gemm(f"{b.name}/fwd", f"fwd/{b.name}", OP_SCALE_RELU, x_c, False, layers[lf.name].w, False,
             batch, lf.in_features, lf.out_features, o0=a_c, o1=a_r, o2=tensors[f"{b.name}.s"],
             **scale(b.scaling.factor))
    # output layer: forward + loss gradient, update
    last_c, last_r = acts[-1]
    gemm("output/fwd", "out/fwd", OP_SCALE_LOSS, last_c, False, layers[o.name].w, False, batch,
         o.in_features, classes, o0=tensors["out.e.c"], o1=tensors["out.e.d"], o2=tensors["out.yhat"],
         o3=tensors["y"], **scale(spec.output_scaling.factor))
    gemm("output/update", "out/update", OP_SGD, last_r, True, tensors["out.e.d"], False,
         o.in_features, batch, classes, o3=layers[o.name].w, **sgd(o))
    # blocks, last to first
    order = [n for n in spec.backward_order]
    by_name = {b.name: (k, b) for k, b in enumerate(blocks)}
    for name in order:
        k, b = by_name[name]
        a_c, a_r = acts[k + 1]
        x_c, x_r = acts[k]
        lf, lp = b.layer, b.pred
        h = lf.out_features
        gemm(f"{b.name}/learn", f"learn/{b.name}", OP_SCALE_LOSS, a_c, False, layers[lp.name].w, False,
             batch, h, classes, o0=tensors[f"{b.name}.e.c"], o1=tensors[f"{b.name}.e.d"],
             o2=tensors[f"{b.name}.yhat"], o3=tensors["y"], **scale(b.pred_scaling.factor))
        gemm(f"{b.name}/delta", f"delta/{b.name}", OP_RELU_BWD, tensors[f"{b.name}.e.c"], False,
             layers[lp.name].wt, False, batch, classes, h, o1=tensors[f"{b.name}.delta"],
             o2=tensors[f"{b.name}.s"])
        gemm(f"{b.name}/update_learn", f"upd_learn/{b.name}", OP_SGD, a_r, True,
             tensors[f"{b.name}.e.d"], False, h, batch, classes, o3=layers[lp.name].w,
             o4=layers[lp.name].wt, wt_en=1, **sgd(lp))
        gemm(f"{b.name}/update_fwd", f"upd_fwd/{b.name}", OP_SGD, x_r, True,
             tensors[f"{b.name}.delta"], False, lf.in_features, batch, h, o3=layers[lf.name].w,
             **sgd(lf))
    phases = []
    for c in cmds:
        if c["phase"] not in phases:
            phases.append(c["phase"])
    if len(phases) > N_PHASES - 1:  # fall back to one phase per kind of command
        for c in cmds:
            c["phase"] = c["phase"].split("/")[0]
        phases = list(dict.fromkeys(c["phase"] for c in cmds))
        macs = {ph: sum(c["m_len"] * c["n_len"] * c["k_len"] for c in cmds if c["phase"] == ph)
                for ph in phases}
    phases.append("control")
    cmds.append(dict(name="end", phase="control", op=OP_END))
    usage[SEL_CMEM] = len(cmds) * p.cmd_words
    prog = Program(p, spec, batch, tensors, layers, cmds, phases, usage, 0, macs)
    check_capacity(prog)
    set_lr(prog, lr_inv)
    validate_commands(prog)
    return prog


def set_lr(prog: Program, lr_inv: int) -> None:
    """(Re)compute the IntegerSGD divisor constants of every update command for `lr_inv`."""
    p = prog.params
    if isinstance(lr_inv, bool) or not isinstance(lr_inv, int) or lr_inv <= 0:
        raise NitroError(f"engine: lr_inv must be a positive integer, got {lr_inv!r}")
    gmw, gsw = p.grad_div
    emw, esw = p.eta_div
    for c in prog.commands:
        if c["op"] != OP_SGD:
            continue
        d = lr_inv * c["amp"]
        if d > p.max_divisor:
            raise NitroError(f"engine: IntegerSGD divisor lr_inv*amp = {d} exceeds the engine's "
                             f"max {p.max_divisor} ({c['name']})")
        cst = divider_constants(d, p.acc_bits, gmw, gsw)
        c["d_mult"], c["d_shift"] = cst.mult, cst.shift
        eta = c["eta"]
        if eta > p.max_eta:
            raise NitroError(f"engine: weight-decay inverse {eta} exceeds the engine's max {p.max_eta}")
        if eta:
            ce = divider_constants(eta, p.weight_bits, emw, esw)
            c["e_mult"], c["e_shift"] = ce.mult, ce.shift
        else:
            c["e_mult"], c["e_shift"] = 0, 0
    prog.lr_inv = lr_inv


def check_capacity(prog: Program) -> None:
    p = prog.params
    what = {SEL_AMEM_C: "activations (batch-packed)", SEL_AMEM_R: "activations (feature-packed)",
            SEL_WMEM: "weights", SEL_WTMEM: "learning-layer weight copies", SEL_DMEM: "deltas",
            SEL_SMEM: "stored ReLU inputs and outputs", SEL_YMEM: "targets", SEL_CMEM: "commands"}
    over = [f"{used} words of {MEM_NAMES[sel]} ({what[sel]}), the engine has {p.depth(sel)}"
            for sel, used in sorted(prog.usage.items(), key=lambda kv: kv[0] != SEL_WMEM)
            if used > p.depth(sel)]
    if over:
        raise NitroError(f"engine: this network at batch {prog.batch} needs " + "; ".join(over)
                         + ": it cannot hold it")


def validate_commands(prog: Program) -> None:
    """Every address a command can touch lies inside its memory; every field fits its width."""
    p = prog.params
    layout = command_layout(p)
    widths = {name: f.width for name, f in layout}
    for idx, c in enumerate(prog.commands):
        where = f"engine: command {idx} ({c['name']})"
        if c["op"] == OP_END:
            continue
        for f in ("m_tiles", "n_tiles", "k_len", "m_len", "n_len", "a_base", "a_sm", "a_sk",
                  "b_base", "b_sk", "b_sn"):
            v = c[f]
            if not 0 <= v < (1 << widths[f]):
                raise NitroError(f"{where}: field {f} = {v} does not fit {widths[f]} bits")
        if c["k_len"] < 1 or c["m_len"] < 1 or c["n_len"] < 1:
            raise NitroError(f"{where}: empty GEMM (M, N, K must be >= 1)")
        if c["m_tiles"] * p.rows < c["m_len"] or c["n_tiles"] * p.cols < c["n_len"]:
            raise NitroError(f"{where}: tile counts do not cover M x N")
        a_mem, b_mem = A_SOURCES.get(c["a_sel"]), B_SOURCES.get(c["b_sel"])
        if a_mem is None or b_mem is None:
            raise NitroError(f"{where}: operand source a_sel={c['a_sel']} / b_sel={c['b_sel']} "
                             f"names no memory")
        if c["op"] == OP_SGD and b_mem == SEL_WMEM:
            raise NitroError(f"{where}: an update command cannot take its B operand from wmem "
                             f"(the update reads and writes wmem through the same ports)")
        a_hi = c["a_base"] + (c["m_tiles"] - 1) * c["a_sm"] + (c["k_len"] - 1) * c["a_sk"]
        b_hi = c["b_base"] + (c["k_len"] - 1) * c["b_sk"] + (c["n_tiles"] - 1) * c["b_sn"]
        _in_mem(where, "A operand", a_mem, a_hi, p)
        _in_mem(where, "B operand", b_mem, b_hi, p)
        L = p.lanes
        m_hi, n_hi = c["m_len"] - 1, c["n_len"] - 1
        col = lambda s: c[s]["base"] + (m_hi // L) * c[s]["stride"] + n_hi  # noqa: E731
        row = lambda s: c[s]["base"] + m_hi * c[s]["stride"] + n_hi // L  # noqa: E731
        tcol = lambda s: c[s]["base"] + n_hi * c[s]["stride"] + m_hi // L  # noqa: E731
        op = c["op"]
        if op == OP_SCALE_RELU:
            outs = [("o0", SEL_AMEM_C, col), ("o1", SEL_AMEM_R, row), ("o2", SEL_SMEM, row)]
        elif op == OP_SCALE_LOSS:
            outs = [("o0", SEL_AMEM_C, col), ("o1", SEL_DMEM, row), ("o2", SEL_SMEM, row),
                    ("o3", SEL_YMEM, row)]
        elif op == OP_RELU_BWD:
            # whole rows are written: the last n-tile word of the last row
            outs = [("o1", SEL_DMEM, row), ("o2", SEL_SMEM, row)]
        elif op == OP_SGD:
            outs = [("o3", SEL_WMEM, row)] + ([("o4", SEL_WTMEM, tcol)] if c["wt_en"] else [])
        else:
            raise NitroError(f"{where}: unknown opcode {op}")
        for slot, sel, fn in outs:
            for f in ("base", "stride"):
                if not 0 <= c[slot][f] < (1 << ADDR_W):
                    raise NitroError(f"{where}: {slot}.{f} = {c[slot][f]} does not fit {ADDR_W} bits")
            _in_mem(where, f"output slot {slot}", sel, fn(slot), p)
    if len(prog.commands) > p.cmem_depth:
        raise NitroError(f"engine: {len(prog.commands)} commands, CMEM holds {p.cmem_depth}")


def _in_mem(where: str, what: str, sel: int, hi: int, p: EngineParams) -> None:
    if hi >= p.depth(sel) or hi < 0:
        raise NitroError(f"{where}: {what} reaches word {hi} of {MEM_NAMES[sel]}, which has "
                         f"{p.depth(sel)} words (missing memory)")


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
    return full.reshape(-1, L)


def unpack_tensor(t: Tensor, lanes: np.ndarray) -> np.ndarray:
    """Inverse of pack_tensor: (t.words, lanes) -> (rows x feats)."""
    L = t.lanes
    lanes = np.asarray(lanes, dtype=np.int64)
    if t.layout == "col":
        rp = cdiv(t.rows, L) * L
        return lanes.reshape(rp // L, t.feats, L).transpose(0, 2, 1).reshape(rp, t.feats)[:t.rows]
    fp = cdiv(t.feats, L) * L
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


def pack_command(prog: Program, c: dict) -> int:
    """One command as an integer of the command layout's width."""
    layout = command_layout(prog.params)
    value = 0
    for name, f in layout:
        if name in ("o0", "o1", "o2", "o3", "o4"):
            v = c.get(name, {"base": 0, "stride": 0})
            fv = v["base"] | (v["stride"] << ADDR_W)
        else:
            fv = int(c.get(name, 0))
        w = f.width
        if not 0 <= fv < (1 << w):
            raise NitroError(f"engine: command {c['name']}: field {name} = {fv} does not fit {w} bits")
        value |= fv << f.offset
    return value


def engine_params_for(spec: NetworkSpec, batch: int, base: EngineParams | None = None) -> EngineParams:
    """The smallest memory depths (rounded up to 64 words) that hold `spec` at `batch`."""
    from dataclasses import replace

    p = base or EngineParams()
    big = replace(p, **{f"{MEM_NAMES[s]}_depth": 1 << ADDR_W for s in MEM_NAMES})
    prog = compile_network(spec, batch, big)
    depths = {f"{MEM_NAMES[s]}_depth": max(64, cdiv(u, 64) * 64) for s, u in prog.usage.items()
              if s != SEL_CMEM}
    return replace(p, **depths)

