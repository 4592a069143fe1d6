"""Integer primitives against the spec's measured vectors (spec 1, Appendix A)."""
import numpy as np
import pytest

from model.numerics import (F64_EXACT, NitroError, WidthOverflowError, WidthPolicy, Widths, int_mean,
                            int_mean_and_mad, isqrt, range_report, tdiv, tdiv_scalar, wrap)


@pytest.mark.parametrize("n,d,q", [(-7, 2, -3), (7, -2, -3), (-7, -2, 3), (7, 2, 3), (-8, 4, -2),
                                   (0, 5, 0), (-1, 4, 0), (-5, 4, -1)])
def test_tdiv_truncates_toward_zero(n, d, q):
    assert tdiv(n, d) == q


def test_tdiv_extremes_and_scalar_path_agree():
    n = np.array([-(1 << 31), (1 << 31) - 1, -1, 0, 1, -200705, 200703], dtype=np.int32)
    for d in (1, 3, 200704, (1 << 31) - 1, 1 << 40):
        exp = np.array([(abs(v) // d) * (1 if v >= 0 else -1) for v in n.tolist()])
        np.testing.assert_array_equal(tdiv(n, d), exp)
        np.testing.assert_array_equal(tdiv_scalar(n, d), exp)


def test_tdiv_scalar_exact_beyond_float64():
    """From 2^53 on (numerator or divisor) float64 division may round: tdiv_scalar divides in
    integers there, still toward zero, exact multiples and their neighbours included."""
    for d in (3, F64_EXACT - 1, F64_EXACT, F64_EXACT + 1, 3 * F64_EXACT, (1 << 62) + 1):
        n = [k * d + e for k in (-3, -1, 0, 1, 3) for e in (-1, 0, 1) if abs(k * d + e) < 1 << 63]
        n = np.array(n + [-(1 << 62) - 3, -F64_EXACT - 1, -7, 7, F64_EXACT + 1, (1 << 62) + 3], np.int64)
        assert max(abs(int(v)) for v in n) >= F64_EXACT
        np.testing.assert_array_equal(tdiv_scalar(n, d), tdiv(n, d))
    assert tdiv_scalar(np.array([-7, 7], np.int64), F64_EXACT).tolist() == [0, 0]


def test_tdiv_rejects_zero_and_bad_divisors():
    with pytest.raises(ZeroDivisionError):
        tdiv(np.array([1]), 0)
    with pytest.raises(NitroError):
        tdiv_scalar(np.array([1]), 0)
    with pytest.raises(NitroError):
        tdiv_scalar(np.array([1]), -3)


def test_wrap_is_twos_complement():
    v = np.array([127, 128, -129, -128, 255, 256, (1 << 31), -(1 << 31) - 1])
    np.testing.assert_array_equal(wrap(v, 8), [127, -128, 127, -128, -1, 0, 0, -1])
    assert wrap(v, 8).dtype == np.int8
    np.testing.assert_array_equal(wrap(v, 32)[-2:], [-(1 << 31), (1 << 31) - 1])
    np.testing.assert_array_equal(wrap(np.array([15, 16, -17, -16]), 5), [15, -16, 15, -16])


def test_int_mean_and_mad_truncate():
    x = np.array([[-3, -4], [5, 0]], dtype=np.int16)
    assert int(int_mean(x)) == 0  # -2/4 truncates to 0
    m, mad = int_mean_and_mad(np.array([-7, -1, 0, 1]))
    assert int(m) == -1 and int(mad) == 2  # |x+1| = 6,0,1,2 -> 9/4 -> 2


@pytest.mark.parametrize("n,r", [(9, 3), (27, 5), (50, 7), (784, 28), (1152, 33), (3584, 59), (4608, 67), (0, 0)])
def test_isqrt_values_used_by_init(n, r):
    assert isqrt(n) == r


def test_width_policy_wrap_counts_and_check_names_the_value():
    exact = np.array([1, (1 << 31), -5, -(1 << 31) - 2], dtype=np.int64)
    pol = WidthPolicy()
    out = pol.narrow(exact, "accumulator", "linear_encoder_00", "output")
    np.testing.assert_array_equal(out, [1, -(1 << 31), -5, (1 << 31) - 2])
    assert pol.wraps[("linear_encoder_00", "output")] == 2
    pol.narrow(np.array([7, -9]), "accumulator", "linear_encoder_00", "output")
    # the largest magnitude over every call, here a negative one: what sizes the hardware
    assert pol.observed[("linear_encoder_00", "output")] == ("accumulator", (1 << 31) + 2)
    (row,) = range_report(pol)
    assert (row["max_abs"], row["bits_needed"], row["wraps"], row["declared_bits"]) == ((1 << 31) + 2, 33, 2, 32)
    strict = WidthPolicy(Widths(weight=16), mode="check")
    with pytest.raises(WidthOverflowError, match=r"linear_pred_00: weight value 40000 at index \(1,\)"):
        strict.narrow(np.array([3, 40000]), "weight", "linear_pred_00", "weight")
    np.testing.assert_array_equal(strict.narrow(np.array([-32768, 32767]), "weight", "l", "w"), [-32768, 32767])


def test_widths_validate():
    with pytest.raises(NitroError, match="weight"):
        Widths(weight=1)
    with pytest.raises(NitroError, match="mode"):
        WidthPolicy(mode="saturate")


def test_range_report_and_check_mode_on_real_training(tmp_path, capsys):
    """`nitro numerics` reports observed ranges; a too-narrow declared width fails naming layer and tensor."""
    from scripts.cli import main

    from conftest import REPO

    cfg = tmp_path / "c.toml"
    base = (REPO / "configs/embedded_mlp.toml").read_text()
    cfg.write_text(base)
    assert main(["numerics", "--config", str(cfg), "--steps", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("linear_encoder_00") and "output" in line)
    assert row.split()[-1] == "0" and int(row.split()[-2]) <= 32  # no wraps, fits its 32 bits
    cfg.write_text(base + '\n[numerics]\nmode = "check"\nwidths = { accumulator = 12 }\n')
    assert main(["numerics", "--config", str(cfg), "--steps", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "linear_encoder_00: output value" in err and "12-bit accumulator" in err
