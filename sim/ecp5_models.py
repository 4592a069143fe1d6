"""Simulation models of the ECP5 primitives `hw` instantiates, so that the RTL synthesis gets (with
`hw.dsp`'s MULT18X18D and `hw.fanout`'s TRELLIS_FF instances, not the behavioural products and
registers the other simulations use) runs against the golden model too. yosys ships only a black
box of MULT18X18D.

Each model covers the configuration `hw` uses and refuses any other at elaboration:
- MULT18X18D: P = A x B (each operand signed when its SIGNED input, a constant, is 1), with the
  A, B and output registers on CLK0 (CE0, synchronous RST0) or absent, no pipeline register, no
  bypass; C, SOURCEA/B unused.
- TRELLIS_FF: Q takes DI at each rising CLK (CE used unless CEMUX = "1"), cleared by LSR at once.
"""
from __future__ import annotations


def _bus(prefix: str, n: int) -> str:
    """{P<n-1>, ..., P0}: the primitive's one-bit ports as one vector."""
    return "{" + ", ".join(f"{prefix}{k}" for k in reversed(range(n))) + "}"


def _ports(prefix: str, n: int) -> str:
    return ", ".join(f"{prefix}{k}" for k in range(n))


def ecp5_models() -> str:
    return mult18x18d() + TRELLIS_FF


TRELLIS_FF = """// verilator coverage_off
module TRELLIS_FF #(
    parameter GSR = "ENABLED", CEMUX = "CE", CLKMUX = "CLK", LSRMUX = "LSR", REGSET = "RESET",
    parameter SRMODE = "LSR_OVER_CE"
) (input CLK, LSR, CE, DI, output reg Q = 0);
    initial begin
        if (CLKMUX != "CLK" || LSRMUX != "LSR" || REGSET != "RESET" || SRMODE != "ASYNC"
            || !(CEMUX inside {"1", "CE"}))
            $fatal(1, "TRELLIS_FF: a configuration the simulation model does not cover");
    end
    always @(posedge CLK or posedge LSR) begin
        if (LSR) Q <= 0;
        else if (CEMUX == "1" || CE) Q <= DI;
    end
endmodule
// verilator coverage_on
"""


def mult18x18d() -> str:
    regs = [f'REG_{r}_{s} = "{d}"' for r in ("INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT")
            for s, d in (("CLK", "NONE"), ("CE", "CE0"), ("RST", "RST0"))]
    return f"""// verilator coverage_off
module MULT18X18D #(
    parameter {', '.join(regs)},
    parameter GSR = "ENABLED", RESETMODE = "SYNC", SOURCEB_MODE = "B_SHIFT",
    parameter MULT_BYPASS = "DISABLED"
) (
    input {_ports("A", 18)},
    input {_ports("B", 18)},
    input {_ports("C", 18)},
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0,
    output {_ports("P", 36)}
);
    /* verilator lint_off UNUSEDSIGNAL */
    initial begin
        if (!(REG_INPUTA_CLK inside {{"NONE", "CLK0"}}) || !(REG_INPUTB_CLK inside {{"NONE", "CLK0"}})
            || !(REG_OUTPUT_CLK inside {{"NONE", "CLK0"}}) || REG_PIPELINE_CLK != "NONE"
            || REG_INPUTC_CLK != "NONE" || MULT_BYPASS != "DISABLED" || RESETMODE != "SYNC"
            || REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_OUTPUT_CE != "CE0"
            || REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0" || REG_OUTPUT_RST != "RST0")
            $fatal(1, "MULT18X18D: a configuration the simulation model does not cover");
    end
    wire [17:0] a = {_bus("A", 18)};
    wire [17:0] b = {_bus("B", 18)};
    reg [17:0] a_r = 0, b_r = 0;
    reg [35:0] p_r = 0;
    wire [17:0] a_q = REG_INPUTA_CLK == "CLK0" ? a_r : a;
    wire [17:0] b_q = REG_INPUTB_CLK == "CLK0" ? b_r : b;
    wire signed [18:0] a_x = {{SIGNEDA & a_q[17], a_q}};
    wire signed [18:0] b_x = {{SIGNEDB & b_q[17], b_q}};
    wire signed [37:0] prod = a_x * b_x;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_r <= 0; b_r <= 0; p_r <= 0;
        end else if (CE0) begin
            a_r <= a; b_r <= b; p_r <= prod[35:0];
        end
    end
    assign {_bus("P", 36)} = REG_OUTPUT_CLK == "CLK0" ? p_r : prod[35:0];
endmodule
// verilator coverage_on
"""
