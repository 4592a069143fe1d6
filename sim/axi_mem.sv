// AXI4 subordinate memory model for long Verilator runs (no Python per cycle): INCR bursts, reads
// and writes in flight, and the memory system's behaviour as run-time settings sampled at reset:
//   latency   cycles from accepting AR (or a write burst's last W beat) to its first R beat (B)
//   gap       idle cycles between R beats: bandwidth = 1 / (1 + gap) beats per cycle
//   stall_pct each cycle each channel's ready (AR, AW, W) or valid (R, B) is withheld with this
//             probability, from a per-channel xorshift generator seeded by `seed`
// One outstanding queue per direction (QUEUE bursts); W beats are taken for the oldest accepted
// AW only. Memory: WORDS bus words; a rising `load` reads mem.hex into it (only the words the
// file names: `@address` lines place regions), a rising `dump` writes words dump_lo..dump_hi to
// mem_out.hex (files in the simulation's folder).
// The wires of a harness that connects a DUT's AXI4 port (m_axi__*) to this model, and the two
// port lists (sim/dma_tb.sv, sim/engine/engine_tb.sv: this file is compiled before them).
`define AXI_MEM_WIRES \
    logic [31:0] araddr, awaddr; \
    logic [7:0] arlen, awlen; \
    logic [2:0] arsize, awsize; \
    logic [1:0] arburst, awburst, rresp, bresp; \
    logic arid, awid, rid, bid, arvalid, arready, awvalid, awready, wvalid, wready, wlast; \
    logic rvalid, rready, rlast, bvalid, bready; \
    logic [DATA_W-1:0] wdata, rdata; \
    logic [DATA_W/8-1:0] wstrb;
`define AXI_MEM_DUT_PORTS \
        .m_axi__arid(arid), .m_axi__araddr(araddr), .m_axi__arlen(arlen), .m_axi__arsize(arsize), \
        .m_axi__arburst(arburst), .m_axi__arvalid(arvalid), .m_axi__arready(arready), \
        .m_axi__rid(rid), .m_axi__rdata(rdata), .m_axi__rresp(rresp), .m_axi__rlast(rlast), \
        .m_axi__rvalid(rvalid), .m_axi__rready(rready), \
        .m_axi__awid(awid), .m_axi__awaddr(awaddr), .m_axi__awlen(awlen), .m_axi__awsize(awsize), \
        .m_axi__awburst(awburst), .m_axi__awvalid(awvalid), .m_axi__awready(awready), \
        .m_axi__wdata(wdata), .m_axi__wstrb(wstrb), .m_axi__wlast(wlast), .m_axi__wvalid(wvalid), \
        .m_axi__wready(wready), .m_axi__bid(bid), .m_axi__bresp(bresp), .m_axi__bvalid(bvalid), \
        .m_axi__bready(bready)
`define AXI_MEM_PORTS \
        .arid(arid), .awid(awid), .araddr(araddr), .awaddr(awaddr), .arlen(arlen), .awlen(awlen), \
        .arsize(arsize), .awsize(awsize), .arburst(arburst), .awburst(awburst), \
        .arvalid(arvalid), .awvalid(awvalid), .wvalid(wvalid), .wlast(wlast), .rready(rready), \
        .bready(bready), .arready(arready), .awready(awready), .wready(wready), .rvalid(rvalid), \
        .rlast(rlast), .bvalid(bvalid), .wdata(wdata), .wstrb(wstrb), .rdata(rdata), .rid(rid), \
        .bid(bid), .rresp(rresp), .bresp(bresp)
// verilator coverage_off
module axi_mem #(
    parameter int DATA_W = 64,
    parameter int ADDR_W = 32,
    parameter int ID_W = 1,
    parameter int WORDS = 1 << 17,
    parameter int QUEUE = 16
) (
    input  logic clk, rst, load, dump,
    input  logic [15:0] latency, gap,
    input  logic [7:0]  stall_pct,
    input  logic [31:0] seed,
    input  logic [31:0] dump_lo, dump_hi,
    input  logic [ID_W-1:0] arid, awid,
    input  logic [ADDR_W-1:0] araddr, awaddr,
    input  logic [7:0] arlen, awlen,
    input  logic [2:0] arsize, awsize,
    input  logic [1:0] arburst, awburst,
    input  logic arvalid, awvalid, wvalid, wlast, rready, bready,
    output logic arready, awready, wready, rvalid, rlast, bvalid,
    input  logic [DATA_W-1:0] wdata,
    input  logic [DATA_W/8-1:0] wstrb,
    output logic [DATA_W-1:0] rdata,
    output logic [ID_W-1:0] rid, bid,
    output logic [1:0] rresp, bresp
);
    localparam int SHIFT = $clog2(DATA_W / 8);
    localparam int QB = $clog2(QUEUE);
    logic [DATA_W-1:0] mem [WORDS];
    logic load_q = 0, dump_q = 0;

    // ---- per-channel stall generators -----------------------------------------------------
    logic [31:0] rnd [5];
    logic [4:0] stall;
    function automatic logic [31:0] xorshift(input logic [31:0] x);
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        return x;
    endfunction
    always_ff @(posedge clk) begin
        for (int c = 0; c < 5; c++) begin
            rnd[c] <= rst ? (seed ^ (32'h9E3779B9 * (c + 1))) | 1 : xorshift(rnd[c]);
            stall[c] <= !rst && (rnd[c] % 100) < stall_pct;
        end
    end

    // ---- reads ----------------------------------------------------------------------------
    logic [ADDR_W-1:0] rq_addr [QUEUE];
    logic [7:0]        rq_len [QUEUE];
    logic [63:0]       rq_due [QUEUE];
    logic [QB:0] rq_head, rq_tail;
    logic [7:0] r_beat;
    logic [15:0] r_wait;
    logic [63:0] now;
    wire rq_full = (rq_tail - rq_head) == QUEUE;
    wire rq_any = rq_tail != rq_head;
    wire [QB-1:0] rh = rq_head[QB-1:0];
    assign arready = !rst && !rq_full && !stall[0];
    assign rvalid = rq_any && now >= rq_due[rh] && r_wait == 0 && !stall[3];
    assign rdata = mem[(rq_addr[rh] >> SHIFT) + r_beat];
    assign rlast = r_beat == rq_len[rh];
    assign rid = '0;
    assign rresp = 2'b00;
    always_ff @(posedge clk) begin
        if (rst) begin
            rq_head <= 0; rq_tail <= 0; r_beat <= 0; r_wait <= 0; now <= 0;
        end else begin
            now <= now + 1;
            if (arvalid && arready) begin
                rq_addr[rq_tail[QB-1:0]] <= araddr;
                rq_len[rq_tail[QB-1:0]] <= arlen;
                rq_due[rq_tail[QB-1:0]] <= now + 64'(latency);
                rq_tail <= rq_tail + 1;
            end
            if (r_wait != 0) r_wait <= r_wait - 1;
            if (rvalid && rready) begin
                r_wait <= gap;
                if (rlast) begin
                    r_beat <= 0;
                    rq_head <= rq_head + 1;
                end else r_beat <= r_beat + 1;
            end
        end
    end

    // ---- writes ---------------------------------------------------------------------------
    logic [ADDR_W-1:0] wq_addr [QUEUE];
    logic [7:0]        wq_len [QUEUE];
    logic [QB:0] wq_head, wq_tail;
    logic [63:0] b_due [QUEUE];
    logic [QB:0] b_head, b_tail;
    logic [7:0] w_beat;
    wire wq_full = (wq_tail - wq_head) == QUEUE || (b_tail - b_head) == QUEUE;
    wire [QB-1:0] wh = wq_head[QB-1:0];
    assign awready = !rst && !wq_full && !stall[1];
    assign wready = !rst && wq_tail != wq_head && !stall[2];
    assign bvalid = b_tail != b_head && now >= b_due[b_head[QB-1:0]] && !stall[4];
    assign bid = '0;
    assign bresp = 2'b00;
    always_ff @(posedge clk) begin
        load_q <= load;
        dump_q <= dump;
        if (load && !load_q) $readmemh("mem.hex", mem);
        if (dump && !dump_q) $writememh("mem_out.hex", mem, dump_lo, dump_hi);
        if (rst) begin
            wq_head <= 0; wq_tail <= 0; b_head <= 0; b_tail <= 0; w_beat <= 0;
        end else begin
            if (awvalid && awready) begin
                wq_addr[wq_tail[QB-1:0]] <= awaddr;
                wq_len[wq_tail[QB-1:0]] <= awlen;
                wq_tail <= wq_tail + 1;
            end
            if (wvalid && wready) begin  // (a load only happens while the harness holds rst)
                for (int b = 0; b < DATA_W / 8; b++)
                    if (wstrb[b]) mem[(wq_addr[wh] >> SHIFT) + w_beat][8*b +: 8] <= wdata[8*b +: 8];
                if (w_beat == wq_len[wh]) begin
                    if (!wlast) $error("axi_mem: wlast missing on the burst's last beat");
                    w_beat <= 0;
                    wq_head <= wq_head + 1;
                    b_due[b_tail[QB-1:0]] <= now + 64'(latency);
                    b_tail <= b_tail + 1;
                end else begin
                    if (wlast) $error("axi_mem: wlast before the burst's last beat");
                    w_beat <= w_beat + 1;
                end
            end
            if (bvalid && bready) b_head <= b_head + 1;
        end
    end

    // ---- protocol checks the manager must meet -------------------------------------------
    always_ff @(posedge clk) begin
        if (!rst && arvalid && arready && (4096 - (araddr & 12'hFFF)) < ((32'(arlen) + 1) << SHIFT))
            $error("axi_mem: read burst crosses a 4 KiB boundary");
        if (!rst && awvalid && awready && (4096 - (awaddr & 12'hFFF)) < ((32'(awlen) + 1) << SHIFT))
            $error("axi_mem: write burst crosses a 4 KiB boundary");
        if (!rst && ((arvalid && arburst != 2'b01) || (awvalid && awburst != 2'b01)))
            $error("axi_mem: only INCR bursts are modelled");
    end
endmodule
