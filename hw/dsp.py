"""A registered 18x18 multiplier: behavioural RTL for simulation and formal, an ECP5 MULT18X18D with its
input and output registers enabled when elaborated for ECP5 synthesis.

Why: yosys `synth_ecp5` maps `a * b` to a MULT18X18D without its internal registers, so every product
costs a 3.93 ns combinational DSP path plus the routing into and out of the DSP column (TOOLCHAIN.md
section 6: 120-140 MHz at best). With the DSP's own input and output registers the fabric only sees
register-to-register routing, which nextpnr-ecp5 times as such.

Both forms have the same two register levels (operands, product) and no clock enable, so the
cycle behaviour is identical; the behavioural form is what Verilator, the formal proofs and the
exhaustive divider check run. `sim.synth` selects the primitive by elaborating with a platform object
that has `ecp5_dsp = True` (an Amaranth Lattice ECP5 platform does too).
"""
from __future__ import annotations

from amaranth import ClockSignal, Const, Instance, Module, Shape, Signal, Value, signed, unsigned

DSP_WIDTH = 18


def targets_ecp5(platform) -> bool:
    """True when elaborating for ECP5 synthesis (sim.synth's marker or an Amaranth ECP5 platform)."""
    if platform is None:
        return False
    if getattr(platform, "ecp5_dsp", False):
        return True
    return getattr(platform, "family", None) == "ecp5"


def _fits(shape: Shape) -> bool:
    return shape.width + (0 if shape.signed else 1) <= DSP_WIDTH


def splits_operand(a: Shape, b: Shape) -> bool:
    """True when `registered_mul_terms` cuts one operand of an a x b product into limbs (one
    operand fits a DSP port, the other does not), so that it returns several terms."""
    return not (_fits(a) and _fits(b)) and (_fits(a) or _fits(b))


def registered_mul(m: Module, platform, a: Value, b: Value | int, name: str) -> Value:
    """a * b two register levels later (operand registers, then product register).

    a and b are signed or unsigned Values (b may be an int constant). When both fit the DSP's
    18-bit ports (17 bits unsigned, 18 bits signed) and the platform asks for it, one registered
    MULT18X18D is used. When one operand fits and the other does not (the engine's int8 x int24
    MACs), the wide one is cut into 17-bit unsigned limbs and a top limb, each limb product is a
    registered multiplier of its own, and the result is their shifted sum after the product
    registers (left to yosys, the wide product becomes two unregistered DSPs and an adder in one
    cycle, about two clock periods). Returns a Value of the exact product width.
    """
    terms, shape = registered_mul_terms(m, platform, a, b, name)
    if len(terms) == 1:
        return terms[0][0]
    p = Signal(shape, name=f"{name}_p", reset_less=True)
    m.d.comb += p.eq(sum(t << off for t, off in terms))
    return p


def registered_mul_terms(m: Module, platform, a: Value, b: Value | int, name: str
                         ) -> tuple[list[tuple[Value, int]], Shape]:
    """`registered_mul` before the limb sum: [(registered product, left shift)] whose shifted sum
    is a * b, and the product's shape. One term when the operands fit one multiplier; a caller
    that registers the limb products before adding them (the MAC) keeps the route out of the
    DSP column and the adder in separate cycles."""
    a = Value.cast(a)
    b_const = isinstance(b, int)
    if b_const:
        b = Const(b, unsigned(max(b.bit_length(), 1)) if b >= 0 else signed(b.bit_length() + 1))
    b = Value.cast(b)
    sa, sb = a.shape().signed, b.shape().signed
    width = len(a) + len(b)
    out_shape = signed(width) if (sa or sb) else unsigned(width)
    fits = _fits(a.shape()) and _fits(b.shape())
    if not b_const and splits_operand(a.shape(), b.shape()):
        narrow, wide = (a, b) if _fits(a.shape()) else (b, a)
        terms, off, k = [], 0, 0
        while off < len(wide):
            w = min(DSP_WIDTH - 1, len(wide) - off)
            limb = wide[off:off + w]  # unsigned, except the top limb of a signed operand
            if off + w == len(wide) and wide.shape().signed:
                limb = limb.as_signed()
            terms.append((registered_mul(m, platform, narrow, limb, f"{name}_l{k}"), off))
            off, k = off + w, k + 1
        return terms, out_shape
    p = Signal(out_shape, name=f"{name}_p", reset_less=True)
    if fits and targets_ecp5(platform):  # two wide operands stay behavioural (yosys splits them)
        raw = Signal(36, name=f"{name}_raw")
        ax = Signal(DSP_WIDTH, name=f"{name}_a")
        bx = Signal(DSP_WIDTH, name=f"{name}_b")
        m.d.comb += [ax.eq(a), bx.eq(b), p.eq(raw[:width])]  # .eq sign- or zero-extends
        ports = {f"i_A{k}": ax[k] for k in range(DSP_WIDTH)}
        ports.update({f"i_B{k}": bx[k] for k in range(DSP_WIDTH)})
        ports.update({f"i_C{k}": 0 for k in range(DSP_WIDTH)})
        ports.update({f"o_P{k}": raw[k] for k in range(36)})
        regs = {}
        for r in ("INPUTA", "INPUTB", "OUTPUT"):
            regs.update({f"p_REG_{r}_CLK": "CLK0", f"p_REG_{r}_CE": "CE0", f"p_REG_{r}_RST": "RST0"})
        m.submodules[f"{name}_dsp"] = Instance(
            "MULT18X18D", **regs,
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED",
            i_SIGNEDA=int(sa), i_SIGNEDB=int(sb), i_SOURCEA=0, i_SOURCEB=0,
            i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0,
            **ports,
        )  # (CLK1-3, CE1-3, RST1-3 unconnected: no register selects them, and nextpnr-ecp5
        #    routes a DSP's constant control inputs from one die-wide constant net each)
        return [(p, 0)], out_shape
    a_r = Signal(a.shape(), name=f"{name}_ar", reset_less=True)
    m.d.sync += a_r.eq(a)
    if b_const:
        b_r = b
    else:
        b_r = Signal(b.shape(), name=f"{name}_br", reset_less=True)
        m.d.sync += b_r.eq(b)
    m.d.sync += p.eq(a_r * b_r)
    return [(p, 0)], out_shape
