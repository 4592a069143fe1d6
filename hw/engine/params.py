"""Parameters of the NITRO-D training engine: array geometry, memory capacities, storage widths,
the command layout and the memory map shared by the RTL (`hw.engine.core`) and the host compiler
(`hw.engine.compiler`).

Storage widths (spec 9, checked on real training by `tests/test_engine_widths.py` and recorded in
benchmarks/engine/widths.json):
  * activations, loss gradients, stored NITRO-ReLU inputs, network outputs: int8 (exact by construction);
  * weights: int16 on the engine generated for an MLP, int24 on the one for a CNN (`EngineChoice`).
    IntegerSGD's decay term pulls every weight back once |W| >= eta (spec 4.1), so eta (12 000 /
    3 000 for the MNIST MLP) is a soft bound: the reference's trained model has max |W| 11 999;
    the golden model in check mode over 3 MNIST epochs peaked at 14 265. int16 (+-32 767) holds
    that with a 2.3x margin and keeps the MLPs' weight traffic at two 64-bit beats per word (at
    int24 the MNIST MLP's step is 1.5 % longer: 89.1 % useful-MAC utilization instead of 90.4 %).
    A CNN's weights outgrow int16 (cnn_small: -32 807 within 150 s of training,
    widths_cnn_small_mnist_w16.json); int24 holds 3 epochs (|W| up to 56 375, _w24.json) and costs
    its step 0.06 % (its traffic is activations);
  * deltas delta_p = e . W_l: |delta_p| <= classes * 128 * max|W_l| (spec 9.2: 23 bits for the MNIST
    MLP with |W_l| <= eta_sub = 3000); stored as int24, which also holds the sign-extended int8 e;
  * GEMM accumulators and weight gradients: int32 with wrap-around, exactly as the reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from amaranth import signed, unsigned
from amaranth.lib import data

from model.layers import SLOPE_INV
from model.numerics import NitroError

# ---- opcodes of the output pipeline (what happens to each finished C tile) ------------------
OP_END = 0  # stop; `done` rises
OP_SCALE_RELU = 1  # s = clip(tdiv(z, SF)); a = NITRO-ReLU(s): a -> AMEM_C (col), AMEM_R (row); s -> SMEM
OP_SCALE_LOSS = 2  # y_hat = clip(tdiv(z, SF)); e = wrap8(y_hat - y): e -> AMEM_C, DMEM; y_hat -> SMEM
OP_RELU_BWD = 3  # delta = NITRO-ReLU backward(C row, s row from SMEM) -> DMEM (whole rows)
OP_SGD = 4  # W <- W - (tdiv(G, D) + tdiv(W, eta)) in WMEM (and the transposed copy in WTMEM)
OP_POOL = 5  # not a GEMM: max-pool scratchpad words (`hw.engine.pool`)


def row_scaled(op, p_in, p_out):
    """A scale_relu command whose C elements carry no partial sums runs on whole C rows
    (`hw.engine.rowscale`: L elements per cycle), every other scale and update op through the
    serializer (one per cycle). On ints (the compiler, the performance model) and on Amaranth
    values (the RTL) alike."""
    return (op == OP_SCALE_RELU) & (p_in == 0) & (p_out == 0)


# ---- memory selectors (operand sources and host port) ---------------------------------------
SEL_AMEM_C = 0  # int8 lanes packed along the batch (A operand of forward / delta GEMMs)
SEL_AMEM_R = 1  # int8 lanes packed along features (A operand of weight-gradient GEMMs)
SEL_WMEM = 2  # weights (weight_bits lanes), W^T layout: word (in, out-tile), lanes along outputs
SEL_WTMEM = 3  # learning-layer weights, W layout: word (class, in-tile), lanes along inputs
SEL_DMEM = 4  # int24 deltas and loss gradients, row layout
SEL_SMEM = 5  # int8 stored NITRO-ReLU inputs s and layer outputs y_hat, row layout
SEL_YMEM = 6  # int8 one-hot targets, row layout
SEL_CMEM = 7  # commands
SEL_CTR = 8  # performance counters (read only)


@dataclass(frozen=True)
class Scratchpad:
    """An on-chip memory: its selector, its name, and the `EngineParams` fields that give its
    depth in words and its lanes' width in bits (None: the commands' 64-bit words)."""

    sel: int
    name: str
    depth: str
    lane_bits: str | None


SCRATCHPADS = {s.sel: s for s in (
    Scratchpad(SEL_AMEM_C, "amem_c", "amem_c_depth", "act_bits"),
    Scratchpad(SEL_AMEM_R, "amem_r", "amem_r_depth", "act_bits"),
    Scratchpad(SEL_WMEM, "wmem", "wmem_depth", "weight_bits"),
    Scratchpad(SEL_WTMEM, "wtmem", "wtmem_depth", "weight_bits"),
    Scratchpad(SEL_DMEM, "dmem", "dmem_depth", "delta_bits"),
    Scratchpad(SEL_SMEM, "smem", "smem_depth", "act_bits"),
    Scratchpad(SEL_YMEM, "ymem", "ymem_depth", "act_bits"),
    Scratchpad(SEL_CMEM, "cmem", "cmem_depth", None),
)}
MEM_NAMES = {sel: s.name for sel, s in SCRATCHPADS.items()}
A_SOURCES = {0: SEL_AMEM_C, 1: SEL_AMEM_R}  # cmd.a_sel -> memory
B_SOURCES = {0: SEL_WMEM, 1: SEL_WTMEM, 2: SEL_DMEM}  # cmd.b_sel -> memory

N_PHASES = 16
CTR_KINDS = ("cycles", "mac_busy", "mac_stall", "drain_wait")  # per phase, in this order
ADDR_W = 16
CMD_WORD_BITS = 64
CV_BITS = 8  # convolution image sides (and window pixel offsets, signed)
CV_N0_BITS = 10  # beats per source pixel along K (input channels of a forward window)
# dropout in the max-pool unit (`hw.engine.pool`): tdiv(x * R, 1000) of an int8 x as
# sign(x) * (|x| * d_mult >> DROP_SHIFT), exact for every |x| <= 128 and every rescale R of the
# spec's table (`compiler.dropout_multiplier`); the rates the engine admits fit DROP_MULT_BITS,
# 17 so that the multiplier is one DSP operand (at slope_inv 4 the int8 range admits rates up to
# 0.25, multipliers up to 87 360)
DROP_SHIFT, DROP_MULT_BITS = 16, 17


BUS_WIDTHS = (64, 128)  # the memory port's data widths (AXI4 bits)
MLP_WEIGHT_BITS, CNN_WEIGHT_BITS = 16, 24  # weight storage (module docstring)
# what each weight width changes of the engine: a 1024-word memory of int24 lanes takes half as
# many block RAMs again as one of int16 lanes, so the CNN engine's WMEM is halved to 512 words
# (512 x 36 block RAMs): yosys maps 164 block RAMs against the MLP engine's 160 (WTMEM keeps 1024
# words: VGG8B's learning-pool deltas need more than 512 of it). With its banks in 2048 x 9 the
# int24 engine took 224 of the 208 (`hw.engine.memory`).
WEIGHT_STORAGE = {MLP_WEIGHT_BITS: {"weight_bits": MLP_WEIGHT_BITS},
                  CNN_WEIGHT_BITS: {"weight_bits": CNN_WEIGHT_BITS, "wmem_depth": 512}}


@dataclass(frozen=True)
class EngineParams:
    """Generation parameters of one engine instance. Depths are in words (one word = `cols` or
    `rows` lanes). They bound the tiles, not the network: the compiler cuts every GEMM into tiles
    that fit (`hw.engine.tiling`) and names the limit when one cannot."""

    rows: int = 8  # MAC array rows (M tile)
    cols: int = 8  # MAC array columns (N tile); also the lane count of every memory word
    act_bits: int = 8
    weight_bits: int = MLP_WEIGHT_BITS
    delta_bits: int = 24
    acc_bits: int = 32
    slope_inv: int = SLOPE_INV  # NITRO-ReLU alpha built into the ReLU units
    # scratchpads (the engine's only tensor storage: everything else is in external memory)
    # two sets of each (double buffering): 160 of the LFE5U-85F's 208 block RAMs, leaving the
    # router room around them. AMEM_C holds the source rows of a VGG8B forward tile (3808 words);
    # a longer K runs in chunks (PMEM), which costs the MLPs nothing and cnn_small 0.15 %. The
    # int24 DMEM and the int8 SMEM take 2048 words in the block RAMs 1024 would take.
    amem_c_depth: int = 4096
    amem_r_depth: int = 2048
    wmem_depth: int = 1024
    wtmem_depth: int = 1024
    dmem_depth: int = 2048
    smem_depth: int = 2048
    ymem_depth: int = 256
    cmem_depth: int = 16  # commands (each `cmd_words` 64-bit words of CMEM)
    # partial sums (int32 elements) of the C tiles of a GEMM run in chunks of K, kept on chip
    # between its chunk commands (`p_in`, `p_out`): 8 block RAMs, 64 MAC-array tiles of C
    pmem_depth: int = 4096
    bus_bits: int = 64  # AXI4 data width of the memory port
    max_divisor: int = (1 << 32) - 1  # largest IntegerSGD divisor lr_inv * amp
    max_eta: int = (1 << 16) - 1  # largest weight-decay inverse
    # largest scaling factor SF = 256 x fan-in: fan-ins up to 65 535 (VGG8B's largest SF is
    # 1 179 648); the row-wide scaling's division steps are carry chains of its width + 1
    max_scale: int = (1 << 24) - 1
    wait_cycles: int = 2  # margin added to the computed flush after a command's last C row

    def __post_init__(self) -> None:
        if self.rows != self.cols:
            raise NitroError("the engine needs a square MAC array (rows == cols): memory words "
                             "carry `cols` lanes in either orientation")
        if self.rows & (self.rows - 1) or not 4 <= self.rows <= 16:
            # >= 4: the drain's registered "last tile" flags are read three rows after they change
            raise NitroError("MAC array side must be a power of two in 4..16")
        if self.bus_bits not in BUS_WIDTHS:
            raise NitroError(f"the engine's memory port is 64 or 128 bits wide, got bus_bits = "
                             f"{self.bus_bits}")
        for k in (s.depth for s in SCRATCHPADS.values()):
            d = getattr(self, k)
            if not 1 <= d < (1 << ADDR_W):  # a transfer's 16-bit word count spans a whole scratchpad
                raise NitroError(f"{k} must be in 1..{(1 << ADDR_W) - 1}, got {d}")
        if not 2 <= self.cmem_depth <= ((1 << ADDR_W) - 1) // self.cmd_words:
            # a run is at least one GEMM command and END; CMEM's words are addressed in ADDR_W bits
            raise NitroError(f"cmem_depth must be in 2..{((1 << ADDR_W) - 1) // self.cmd_words}, "
                             f"got {self.cmem_depth}")
        if self.pmem_depth % (self.rows * self.cols) or not 0 < self.pmem_depth <= 1 << ADDR_W:
            raise NitroError(f"pmem_depth must be a multiple of rows x cols = {self.rows * self.cols} "
                             f"up to {1 << ADDR_W}, got {self.pmem_depth}")

    @property
    def lanes(self) -> int:
        return self.cols

    @property
    def lane_bits(self) -> int:
        return self.rows.bit_length() - 1

    def depth(self, sel: int) -> int:
        """Words of scratchpad `sel` (the command memory's in 64-bit words)."""
        words = getattr(self, SCRATCHPADS[sel].depth)
        return words * self.cmd_words if sel == SEL_CMEM else words

    def lane_width(self, sel: int) -> int:
        """Bits of each lane of scratchpad `sel`'s words (KeyError for the command memory)."""
        lane = SCRATCHPADS[sel].lane_bits
        if lane is None:
            raise KeyError(sel)
        return getattr(self, lane)

    @property
    def grad_div(self) -> tuple[int, int]:
        from hw.divider import prog_divider_widths
        return prog_divider_widths(self.acc_bits, self.max_divisor)

    @property
    def eta_div(self) -> tuple[int, int]:
        from hw.divider import prog_divider_widths
        return prog_divider_widths(self.weight_bits, self.max_eta)

    @property
    def word_bits(self) -> int:
        """The widest memory word (host read port width)."""
        return self.lanes * max(self.act_bits, self.weight_bits, self.delta_bits)

    @property
    def host_data_bits(self) -> int:
        """Width of the host write port: the widest memory word (commands go in 64-bit pieces)."""
        return -(-max(self.word_bits, CMD_WORD_BITS) // 8) * 8

    @property
    def cmd_bits(self) -> int:
        return _command_bits(self)

    @property
    def cmd_words(self) -> int:
        """64-bit CMEM words per command (a power of two): a narrow CMEM fits one or two block RAMs."""
        n = -(-self.cmd_bits // CMD_WORD_BITS)
        return 1 << (n - 1).bit_length()

    def key(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class EngineChoice:
    """What a user picks of the engine to generate (`nitro cosim --bus-bits/--weight-bits`); the
    weight width left open follows the network (`params`)."""

    bus_bits: int = 64
    weight_bits: int | None = None

    def params(self, spec) -> EngineParams:
        """The engine that trains `spec` (a `model.spec.NetworkSpec`): int24 weights once it has
        a convolution, int16 otherwise (module docstring)."""
        from model.spec import Conv2d

        bits = self.weight_bits
        if bits is None:
            conv = any(isinstance(b.layer, Conv2d) for b in spec.blocks.values())
            bits = CNN_WEIGHT_BITS if conv else MLP_WEIGHT_BITS
        return engine_with_weights(bits, self.bus_bits)


def engine_with_weights(bits: int, bus_bits: int = 64) -> EngineParams:
    """The engine generated with `bits`-bit weight storage (WEIGHT_STORAGE: the MLPs' or the CNNs')."""
    return EngineParams(bus_bits=bus_bits, **WEIGHT_STORAGE[bits])


def engine_params(given: EngineParams | EngineChoice | None, spec) -> EngineParams:
    """The engine a run generates: `given` itself, or the one chosen for `spec`."""
    return given if isinstance(given, EngineParams) else (given or EngineChoice()).params(spec)


def _slot() -> data.StructLayout:
    return data.StructLayout({"base": unsigned(ADDR_W), "stride": unsigned(ADDR_W)})


@cache  # (the compiler asks for it per tile)
def command_layout(p: EngineParams) -> data.StructLayout:
    """One GEMM command: C[M x N] = A[M x K] . B[K x N], tiled rows x cols, then output op.

    A word address of (m-tile mt, k) = a_base + mt*a_sm + k*a_sk   (lanes along M)
    B word address of (k, n-tile nt) = b_base + k*b_sk + nt        (lanes along N)
    (m_len / L and n_len / L tiles, rounded up.)
    Output slots (element (m, n) of C):
      o0 "col"  : word o0.base + (m / L) * o0.stride + n,  lane m % L      -> AMEM_C
      o1 "row"  : word o1.base + m * o1.stride + n / L,    lane n % L      -> AMEM_R / DMEM
      o2 "row"  : SMEM (s, y_hat written; s read by relu_bwd)
      o3 "row"  : YMEM read (scale_loss) / WMEM read-modify-write (sgd)
      o4 "tcol" : word o4.base + n * o4.stride + m / L,    lane m % L      -> WTMEM (sgd, wt_en)
    A 3x3 convolution is a GEMM whose A operand is read through a window (`conv`): every A beat
    belongs to a source pixel (x, y) of a cv_w x cv_h image and reads zero when that pixel lies
    outside it (the padding, never stored). Along K a pixel takes cv_n0 beats, a row cv_n1
    pixels, and after cv_n2 rows the pixel returns to its first row (the next image); the A
    address steps by a_skr instead of a_sk where a row ends. Along M the first tile's pixel is
    (cv_x0, cv_y0); with cv_mw > 0 each m tile is the next output pixel of rows cv_mw wide
    (the forward GEMM: M = pixels, K = window x channels), and the row slots step n_tiles
    words per m tile (pixels x channels, channels innermost); with cv_mw = 0 the pixel does not
    move along M (the weight gradient of one window position: M = channels, K = pixels).
    A max-pool (OP_POOL) with `drop` is dropout: 1x1 windows whose word is kept where the mask
    (o2, read in the marking pass that `conv` turns on) is not 0, rescaled by d_mult.
    With `bpool` the n tiles are the pixels (x channel words) of a cv_w-wide image read through a
    learning layer's max-pool map: the B tile of a pixel is its window's (kw x kh = cv_n1 x
    cv_n2, cv_n0 words per pixel, the first tile at window position (-cv_x0, -cv_y0)), so the
    delta GEMM of a pooled learning layer writes the un-pooled delta at once.
    A GEMM whose K does not fit the scratchpads runs as several commands, each a chunk of K,
    in one of two ways (`hw.engine.tiling`):
      on one C tile: k_cont (the first beat adds to the array's accumulators instead of starting
        the tile) on all but the first, k_hold (the last beat does not end the tile: nothing
        drains) on all but the last;
      on up to pmem_depth elements of C (serial ops): p_in (each element adds its partial sum,
        element (row n of the command, lane j) at PMEM word (p_base + n) * L + j) on all but the
        first, p_out (the sums go to PMEM instead of the output op) on all but the last; p_base
        gives GEMMs whose chunks interleave (the windows of a weight gradient) regions of their own.
    """
    gmw, gsw = p.grad_div
    emw, esw = p.eta_div
    return data.StructLayout({
        "op": unsigned(3), "phase": unsigned(4), "wt_en": unsigned(1),
        "k_cont": unsigned(1), "k_hold": unsigned(1), "p_in": unsigned(1), "p_out": unsigned(1),
        "p_base": unsigned((p.pmem_depth // p.lanes - 1).bit_length()),
        "a_sel": unsigned(1), "b_sel": unsigned(2),
        "k_len": unsigned(ADDR_W), "m_len": unsigned(ADDR_W + 4), "n_len": unsigned(ADDR_W + 4),
        "a_base": unsigned(ADDR_W), "a_sm": unsigned(ADDR_W), "a_sk": unsigned(ADDR_W),
        "b_base": unsigned(ADDR_W), "b_sk": unsigned(ADDR_W),
        "conv": unsigned(1), "cv_w": unsigned(CV_BITS), "cv_h": unsigned(CV_BITS),
        "cv_x0": signed(CV_BITS), "cv_y0": signed(CV_BITS), "cv_mw": unsigned(CV_BITS),
        "cv_n0": unsigned(CV_N0_BITS), "cv_n1": unsigned(CV_BITS), "cv_n2": unsigned(CV_BITS),
        "a_skr": unsigned(ADDR_W), "bpool": unsigned(1), "drop": unsigned(1),
        "o0": _slot(), "o1": _slot(), "o2": _slot(), "o3": _slot(), "o4": _slot(),
        "sc_sf": unsigned(p.max_scale.bit_length()),
        "d_mult": unsigned(gmw), "d_shift": unsigned(gsw),
        "e_mult": unsigned(emw), "e_shift": unsigned(esw),
    })


@cache
def _command_bits(p: EngineParams) -> int:
    return data.Layout.cast(command_layout(p)).size
