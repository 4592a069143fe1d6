# amaranth: UnusedElaboratable=no
"""Truncating dividers on Verilator (bit-exact vs model.numerics.tdiv) and their host constants."""
import numpy as np
import pytest

from hw.divider import ConstDivider, ProgDivider
from model.divider import divider_constants, is_exact
from model.numerics import NitroError, tdiv_scalar
from sim.testing import run_unit


def test_const_dividers_32bit(request):
    assert sum(run_unit("divider32", request).values()) >= 1_000_000


def test_dividers_and_scaling_16bit_exhaustive(request):
    counts = run_unit("div_scale16", request)
    assert counts["all int16"] == 1 << 16


def test_programmable_divider(request):
    assert sum(run_unit("progdiv", request).values()) >= 1_000_000


@pytest.mark.parametrize("width", [2, 3, 5, 8, 10])
def test_host_constants_exact_small_widths(width):
    """The shortcut exactness check agrees with brute force over every input of small widths."""
    n = np.arange(-(1 << (width - 1)), 1 << (width - 1), dtype=np.int64)
    for d in range(1, 3 << width):
        c = divider_constants(d, width)
        assert np.array_equal(c.quotient(n), tdiv_scalar(n, d)), (d, c)
        if c.shift > 0:  # the smallest exact shift is minimal: one less must fail
            m = -(-(1 << (c.shift - 1)) // d)
            assert not is_exact(d, width, m, c.shift - 1)


@pytest.mark.parametrize("shift", [0, 9, 31])
def test_host_constants_of_a_power_of_two_are_a_shift(shift):
    """The lr schedule's divisors 512 * 3^k include powers of two: no multiplier needed."""
    c = divider_constants(1 << shift, 32)
    assert (c.mult, c.shift) == (1, shift)


def test_host_constants_reject():
    with pytest.raises(NitroError, match="positive"):
        divider_constants(0, 32)
    with pytest.raises(NitroError, match="positive"):
        divider_constants(-3, 32)
    with pytest.raises(NitroError, match="no exact constants"):
        divider_constants(7, 32, mult_width=8)  # a too-narrow multiplier cannot divide by 7
    with pytest.raises(NitroError, match="max_divisor"):
        ProgDivider(32, max_divisor=1000).constants(1001)


@pytest.mark.parametrize("args, exc, msg", [
    ((0,), ValueError, "divisor"), ((-5,), ValueError, "divisor"), ((2.5,), TypeError, "divisor"),
    ((True,), TypeError, "divisor"), ((7, 1), ValueError, "in_width"), ((7, 65), ValueError, "in_width"),
])
def test_const_divider_bad_parameters(args, exc, msg):
    with pytest.raises(exc, match=msg):
        ConstDivider(*args)


def test_prog_divider_bad_parameters():
    with pytest.raises(ValueError, match="max_divisor"):
        ProgDivider(32, max_divisor=0)
    with pytest.raises(ValueError, match="in_width"):
        ProgDivider(1)
