# amaranth: UnusedElaboratable=no
"""The core's drain (`drain.RowDrain`) alone, and with the serializer behind it as the core wires
them: each C row that leaves the MAC array comes out once, in order, with its data and the indices
and output word addresses that `params.command_layout` documents for its slots (o0 col, o1-o3
row, o4 tcol; the partial-sum row p_base + its index), under random valid gaps from the array; a
serial op's row holds the array off for L - 1 cycles and is cut into elements, each inside
m_len x n_len once with its own words; `done` rises after the command's last row."""
import numpy as np
from amaranth import Module

from hw.engine.compiler import pack_command
from hw.engine.drain import ROW_SLOTS, RowDrain
from hw.engine.params import EngineParams
from hw.engine.serializer import DRAIN_FIELDS, RowSerializer
from sim.testing import simulate

P = EngineParams()
L = P.lanes


def _command(rng, m_len: int, n_len: int, cv_mw: int = 0) -> dict:
    slot = lambda: {"base": int(rng.integers(0, 3000)), "stride": int(rng.integers(1, 40))}  # noqa: E731
    return {"m_len": m_len, "n_len": n_len, "k_len": 3, "p_base": int(rng.integers(0, 8)),
            "cv_mw": cv_mw, **{f"o{s}": slot() for s in range(5)}}


def _expected(c: dict) -> list[dict]:
    """Per drained row, in the array's order (m tiles, then n tiles, then rows): the outputs. A
    row slot's word is base + m * stride + n tile, or for a convolution's forward (cv_mw > 0:
    pixels x channels, channels innermost) base + m tile * n tiles + row * stride + n tile."""
    out, n_tiles = [], -(-c["n_len"] // L)
    for mt in range(-(-c["m_len"] // L)):
        for nt in range(n_tiles):
            for r in range(L):
                m = mt * L + r

                def row_word(s: int) -> int:
                    o = c[f"o{s}"]
                    if c["cv_mw"]:
                        return o["base"] + mt * n_tiles + r * o["stride"] + nt
                    return o["base"] + m * o["stride"] + nt

                out.append({"m_row": m, "nt": nt, "row_n": c["p_base"] + len(out),
                            "col_addr": c["o0"]["base"] + mt * c["o0"]["stride"] + nt * L,
                            "tcol_addr": c["o4"]["base"] + nt * L * c["o4"]["stride"] + mt,
                            **{f"row_addr{s}": row_word(s) for s in ROW_SLOTS}})
    return out


def _elements(c: dict, rows: list[list[int]]) -> list[dict]:
    """The serializer's elements of the drained rows: those inside m_len x n_len, in row order."""
    out = []
    for i, (row, d) in enumerate(zip(rows, _expected(c))):
        m, nt = d["m_row"], d["nt"]
        for j in range(L):
            n = nt * L + j
            if m < c["m_len"] and n < c["n_len"]:
                out.append({"z": row[j], "j": j, "r": m % L, "p": (c["p_base"] + i) * L + j,
                            "a": [c["o0"]["base"] + (m // L) * c["o0"]["stride"] + n,
                                  *(d[f"row_addr{s}"] for s in ROW_SLOTS),
                                  c["o4"]["base"] + n * c["o4"]["stride"] + m // L]})
    return out


def _run(c: dict, serial: int, valid_p: float, seed: int):
    rng = np.random.default_rng(seed)
    dut, ser = RowDrain(P), RowSerializer(P)
    top = Module()
    top.submodules.drain, top.submodules.ser = dut, ser
    top.d.comb += [ser.cmd.eq(dut.cmd), ser.load.eq(dut.o_fire & serial), ser.row.eq(dut.row_data),
                   *(getattr(ser, n).eq(getattr(dut, n)) for n in DRAIN_FIELDS)]
    want = _expected(c)
    rows = [[int(v) for v in rng.integers(-(1 << 31), 1 << 31, L)] for _ in want]
    got, fires, done_at, elements = [], [], [], []

    async def bench(ctx):
        ctx.set(dut.cmd.as_value(), pack_command(P, c))
        ctx.set(dut.serial, serial)
        ctx.set(dut.start, 0b1111)
        ctx.set(dut.launch, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.launch, 0)
        sent = 0
        for cyc in range(40 * len(want) + 50):
            offer = sent < len(rows) and rng.random() < valid_p
            ctx.set(dut.i.valid, int(offer))
            if offer:
                ctx.set(dut.i.payload.as_value(), sum((v % (1 << P.acc_bits)) << (P.acc_bits * j)
                                                      for j, v in enumerate(rows[sent])))
            if ctx.get(dut.row_v):
                got.append({k: ctx.get(getattr(dut, k)) for k in want[0]}
                           | {"data": [ctx.get(dut.row_data[j]) for j in range(L)],
                              "lanes": [ctx.get(dut.row_lanes[j]) for j in range(L)]})
            if ctx.get(ser.valid):
                e = ctx.get(ser.e)
                elements.append({"z": e.z, "j": e.j, "r": e.r, "p": e.p, "a": list(e.a)})
            if ctx.get(dut.done):
                done_at.append(len(got))
                if len(done_at) > 2 * L:  # the last row's elements are out
                    break
            if offer and ctx.get(dut.i.ready):
                fires.append(cyc)
                sent += 1
            await ctx.tick()

    simulate(top, bench)
    return want, rows, got, fires, done_at, elements


def test_rows_carry_their_documented_addresses():
    rng = np.random.default_rng(11)
    for k, (m_len, n_len, cv_mw, serial, valid_p) in enumerate(
            [(L, L, 0, 0, 1.0), (3 * L - 2, 2 * L + 1, 0, 0, 0.5), (2 * L, 3 * L, 0, 1, 1.0),
             (L + 1, 1, 0, 1, 0.3), (5 * L, 2 * L - 3, 3, 0, 0.7), (4 * L, L + 2, 2, 1, 1.0)]):
        c = _command(rng, m_len, n_len, cv_mw)
        want, rows, got, fires, done_at, elements = _run(c, serial, valid_p, k)
        assert len(want) > 0 and len(got) == len(want)
        assert [{k: g[k] for k in want[0]} for g in got] == want
        assert [g["data"] for g in got] == rows and [g["lanes"] for g in got] == rows
        assert done_at[0] == len(want)  # done with the last row, not before
        if serial:
            assert elements == _elements(c, rows) and len(elements) > 0
        gaps = np.diff(fires)
        if serial:  # the serializer takes one row every L cycles
            assert (gaps >= L).all() and (valid_p < 1 or (gaps == L).all())
        elif valid_p == 1:  # a row a cycle otherwise
            assert (gaps == 1).all()
