// Generic stream testbench around an Amaranth unit `dut` (ports i__*/o__* of lib.stream).
// Stimulus and responses live in memories filled / dumped with $readmemh / $writememh, so cocotb
// only sets a few registers and waits for `done`: no Python work per cycle. The source presents
// stim[0..n_in-1] with a random valid pattern (never dropping valid before the transfer), the
// sink accepts with a random ready pattern and records every output transfer in order. A monitor
// counts stream-rule violations of the DUT output (valid dropped or payload changed while stalled).
// verilator coverage_off
// (coverage is for the unit under test only; the testbench's own lines and memories are excluded)
module tb #(
    parameter int IN_W = 8,
    parameter int OUT_W = 8,
    parameter int DEPTH = 1024
) (
    input  logic        clk,
    input  logic        rst,
    input  logic [31:0] n_in,
    input  logic [31:0] n_out,
    input  logic [8:0]  valid_th,   // source valid probability = valid_th / 256
    input  logic [8:0]  ready_th,   // sink ready probability   = ready_th / 256
    input  logic [31:0] seed,
    input  logic        load,       // rising edge: stim.hex -> stim
    input  logic        dump,       // rising edge: resp[0..n_out-1] -> resp.hex
    output logic [31:0] n_sent,
    output logic [31:0] n_got,
    output logic [31:0] proto_err,
    output logic        done
);
    logic [IN_W-1:0]  stim [DEPTH];
    logic [OUT_W-1:0] resp [DEPTH];

    always @(posedge load) $readmemh("stim.hex", stim);
    always @(posedge dump) $writememh("resp.hex", resp, 0, n_out - 1);

    function automatic logic [31:0] xorshift(input logic [31:0] x);
        logic [31:0] y;
        y = x ^ (x << 13);
        y = y ^ (y >> 17);
        return y ^ (y << 5);
    endfunction

    logic [31:0] rng_v, rng_r;
    logic src_valid, i_ready, o_valid, o_ready;
    logic [IN_W-1:0] i_payload;
    logic [OUT_W-1:0] o_payload, last_payload;
    logic stalled;
    wire fire_in = src_valid & i_ready;
    wire fire_out = o_valid & o_ready;
    wire [31:0] next_sent = fire_in ? n_sent + 1 : n_sent;

    assign i_payload = stim[n_sent[$clog2(DEPTH)-1:0]];
    assign o_ready = {1'b0, rng_r[7:0]} < ready_th;
    assign done = n_got >= n_out;

    always_ff @(posedge clk) begin
        if (rst) begin
            rng_v <= seed | 32'h1;
            rng_r <= (seed ^ 32'h9e3779b9) | 32'h1;
            n_sent <= 0;
            n_got <= 0;
            src_valid <= 0;
            proto_err <= 0;
            stalled <= 0;
        end else begin
            rng_v <= xorshift(rng_v);
            rng_r <= xorshift(rng_r);
            n_sent <= next_sent;
            // lib.stream rule: once valid, hold it until the transfer.
            if (!src_valid || fire_in)
                src_valid <= (next_sent < n_in) && ({1'b0, rng_v[7:0]} < valid_th);
            if (fire_out) begin
                if (n_got < DEPTH) resp[n_got[$clog2(DEPTH)-1:0]] <= o_payload;
                n_got <= n_got + 1;
            end
            if (stalled && (!o_valid || o_payload != last_payload))
                proto_err <= proto_err + 1;
            stalled <= o_valid & ~o_ready;
            last_payload <= o_payload;
        end
    end

    dut u_dut (
        .clk(clk), .rst(rst),
        .i__valid(src_valid), .i__ready(i_ready), .i__payload(i_payload),
        .o__valid(o_valid), .o__ready(o_ready), .o__payload(o_payload)
    );
endmodule
