"""The numpy integer reference against independent statements of its contract.

Expected values come from exact rational arithmetic (``fractions.Fraction``), plain Python
integer loops, torch float64 convolution / pooling (exact for the small integers used) and
hand-worked examples; never from the code under test.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tvm_ternary.errors import OverflowRiskError, ShapeMismatchError
from tvm_ternary.quant import reference as ref

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
INT64_MAX = 2**63 - 1
# The largest double below 0.5: 0.5 - 2**-54. ``x + 0.5`` rounds up to 1.0 in float64.
JUST_BELOW_HALF = 0.5 - 2.0**-54

FAST = settings(max_examples=60, deadline=None)
MEDIUM = settings(max_examples=120, deadline=None)


# ----------------------------------------------------------------------------- independent oracles

def rha(q) -> int:
    """Round half away from zero, exactly, of a rational (or int / float, taken exactly)."""
    q = Fraction(q)
    n = math.floor(abs(q) + Fraction(1, 2))
    return n if q >= 0 else -n


def clampi(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


ternary = st.sampled_from([-1, 0, 1])
int8s = st.integers(-128, 127)


def int8_arrays(shape):
    return hnp.arrays(np.int8, shape, elements=int8s)


def ternary_arrays(shape):
    return hnp.arrays(np.int8, shape, elements=ternary)


@st.composite
def conv_cases(draw):
    """A grouped conv problem: groups 1, 2 or depthwise; kernel 1..3, stride 1..3,
    padding 0..2, dilation 1..2; spatial sizes from "kernel just fits" upwards."""
    kind = draw(st.sampled_from(["dense", "two", "depthwise"]))
    if kind == "dense":
        groups, cin_g, out_ch = 1, draw(st.integers(1, 3)), draw(st.integers(1, 4))
    elif kind == "two":
        groups, cin_g, out_ch = 2, draw(st.integers(1, 3)), 2 * draw(st.integers(1, 2))
    else:
        chans = draw(st.integers(1, 4))
        groups, cin_g, out_ch = chans, 1, chans * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    sizes = []
    for k, p, d in ((kh, padding[0], dilation[0]), (kw, padding[1], dilation[1])):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # the kernel (with padding) just fits
        sizes.append(smallest + draw(st.integers(0, 4)))
    batch = draw(st.integers(1, 2))
    x = draw(int8_arrays((batch, groups * cin_g, *sizes)))
    w = draw(ternary_arrays((out_ch, cin_g, kh, kw)))
    pad_value = draw(st.sampled_from([0, 0, -1]))
    return x, w, stride, padding, dilation, groups, pad_value


def torch_conv64(x, w, stride, padding, dilation, groups, pad_value=0) -> np.ndarray:
    """float64 torch convolution (exact for these integers); the input padded with pad_value."""
    xt = torch.from_numpy(np.asarray(x, np.float64))
    ph, pw = padding
    xt = F.pad(xt, (pw, pw, ph, ph), value=float(pad_value))
    out = F.conv2d(xt, torch.from_numpy(np.asarray(w, np.float64)), None, stride, 0, dilation, groups)
    return out.numpy()


# ----------------------------------------------------------------------------- 1. rounding

@pytest.mark.parametrize("x, expected", [
    (0.5, 1), (-0.5, -1), (1.5, 2), (-1.5, -2), (2.5, 3), (-2.5, -3),
    (0.49999, 0), (-0.49999, 0), (0.0, 0), (-0.0, 0), (0.51, 1), (-0.51, -1),
    (1.4999, 1), (3.0, 3), (-3.0, -3), (126.5, 127), (-126.5, -127), (-127.5, -128),
    (1e6 + 0.5, 1_000_001), (-(2.0**51) - 0.5, -(2**51) - 1),
])
def test_round_half_away_hand_examples(x, expected):
    got = ref.round_half_away(x)
    assert got.dtype == np.int64
    assert int(got) == expected


def test_round_half_away_keeps_shape():
    got = ref.round_half_away([[0.5, -0.5, 2.5], [-2.5, 0.2, -7.5]])
    assert got.shape == (2, 3) and got.dtype == np.int64
    np.testing.assert_array_equal(got, [[1, -1, 3], [-3, 0, -8]])


# Where the naive floor(|x| + 0.5) goes wrong: the float sum rounds before the floor.
@pytest.mark.parametrize("x, expected", [
    pytest.param(JUST_BELOW_HALF, 0, id="0.5-2**-54"),
    pytest.param(-JUST_BELOW_HALF, 0, id="-(0.5-2**-54)"),
    pytest.param(2.0**52 + 1, 2**52 + 1, id="2**52+1"),
    pytest.param(-(2.0**52) - 3, -(2**52) - 3, id="-(2**52+3)"),
    pytest.param(2.0**62 + 2.0**10, 2**62 + 2**10, id="2**62+2**10"),
])
def test_round_half_away_float_edge_cases(x, expected):
    assert int(ref.round_half_away(x)) == expected
    assert float(ref.round_half_away_float(x)) == float(expected)


@MEDIUM
@given(x=st.floats(min_value=-(2.0**62), max_value=2.0**62, allow_nan=False))
@example(x=0.5)
@example(x=-0.5)
@example(x=JUST_BELOW_HALF)
@example(x=-JUST_BELOW_HALF)
@example(x=1.5 - 2.0**-52)
@example(x=2.0**51 + 0.5)
@example(x=-(2.0**51) - 0.5)
@example(x=2.0**52 + 1)
def test_round_half_away_matches_fraction(x):
    assert int(ref.round_half_away(x)) == rha(x)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@MEDIUM
@given(x=st.floats(allow_nan=False))
def test_round_half_away_float_matches_fraction(x):
    got = ref.round_half_away_float(x)
    assert got.dtype == np.float64
    if math.isinf(x):
        assert float(got) == x
    else:
        assert float(got) == rha(x)  # every rounded double is exactly an integer double


@FAST
@given(n=st.integers(-(2**50), 2**50))
def test_round_half_away_exact_ties(n):
    x = n + 0.5  # exactly representable for |n| <= 2**50
    expected = n + 1 if x > 0 else n
    assert int(ref.round_half_away(x)) == expected == rha(x)


# Safe domain: 2*|num| + den must fit int64 (the documented contract values are far below).
SAFE_NUM = 2**62 - 2**33


@MEDIUM
@given(num=st.integers(-SAFE_NUM, SAFE_NUM), den=st.integers(1, 2**31))
@example(num=5, den=2)
@example(num=-5, den=2)
@example(num=7, den=2)
@example(num=-7, den=2)
@example(num=0, den=3)
@example(num=-1, den=2)
def test_rounding_div_matches_fraction(num, den):
    got = ref.rounding_div(num, den)
    assert int(got) == rha(Fraction(num, den))


@FAST
@given(k=st.integers(-(2**40), 2**40), half=st.integers(1, 2**20))
def test_rounding_div_exact_ties(k, half):
    den = 2 * half
    num = k * den + (half if k >= 0 else -half)  # num/den = k +- 1/2 exactly
    expected = k + 1 if k >= 0 else k - 1
    assert int(ref.rounding_div(num, den)) == expected


@FAST
@given(data=st.data())
def test_rounding_div_vectorized(data):
    n = data.draw(st.integers(1, 20))
    num = data.draw(hnp.arrays(np.int64, n, elements=st.integers(-(2**40), 2**40)))
    den = data.draw(hnp.arrays(np.int64, n, elements=st.integers(1, 1000)))
    got = ref.rounding_div(num, den)
    assert [int(v) for v in got] == [rha(Fraction(int(a), int(b))) for a, b in zip(num, den)]


@pytest.mark.parametrize("den", [0, -1, -7])
def test_rounding_div_rejects_non_positive_denominator(den):
    with pytest.raises(ValueError):
        ref.rounding_div(5, den)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("num, den", [
    pytest.param(2**62, 3, id="2**62/3"),
    pytest.param(INT64_MAX, 2, id="int64max/2"),
    pytest.param(-INT64_MAX, 5, id="-int64max/5"),
])
def test_rounding_div_beyond_its_domain_raises(num, den):
    with pytest.raises(OverflowRiskError, match="2\\*\\*62"):
        ref.rounding_div(np.int64(num), den)


@MEDIUM
@given(z=st.integers(-(2**62), 2**62), shift=st.integers(1, 62))
@example(z=3 * 2**14, shift=15)     # 1.5 -> 2
@example(z=-3 * 2**14, shift=15)    # -1.5 -> -2
@example(z=2**45, shift=46)         # 0.5 -> 1
@example(z=-(2**45), shift=46)      # -0.5 -> -1
@example(z=2**45 - 1, shift=46)     # just below 0.5 -> 0
@example(z=-(2**45) + 1, shift=46)
def test_rounding_shift_matches_fraction(z, shift):
    assert int(ref.rounding_shift(z, shift)) == rha(Fraction(z, 2**shift))


@FAST
@given(k=st.integers(-(2**30), 2**30), shift=st.integers(1, 30))
def test_rounding_shift_exact_ties(k, shift):
    half = 2 ** (shift - 1)
    z = k * 2**shift + (half if k >= 0 else -half)
    assert int(ref.rounding_shift(z, shift)) == (k + 1 if k >= 0 else k - 1)


@FAST
@given(data=st.data())
def test_rounding_shift_per_element_shifts(data):
    n = data.draw(st.integers(1, 20))
    z = data.draw(hnp.arrays(np.int64, n, elements=st.integers(-(2**48), 2**48)))
    s = data.draw(hnp.arrays(np.int64, n, elements=st.integers(1, 46)))
    got = ref.rounding_shift(z, s)
    assert [int(v) for v in got] == [rha(Fraction(int(a), 2 ** int(b))) for a, b in zip(z, s)]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("z, shift", [
    pytest.param(INT64_MAX, 1, id="int64max>>1"),
    pytest.param(INT64_MAX - 5, 40, id="int64max-5>>40"),
    pytest.param(-INT64_MAX, 3, id="-int64max>>3"),
])
def test_rounding_shift_beyond_its_domain_raises(z, shift):
    with pytest.raises(OverflowRiskError, match="2\\*\\*62"):
        ref.rounding_shift(np.int64(z), shift)


# ----------------------------------------------------------------------------- 2. quantize_multiplier
# Contract as documented in reference.py: M in [2**15, 2**16) (the full 16-bit unsigned
# multiplier), s in [1, 46], so multipliers in [2**-31, 2**15). (DESIGN.md says M in
# [2**14, 2**15) and s in [15, 46]; docs/numerics.md records why both were widened.)
S_MIN, S_MAX = 1, 46
M_LO, M_HI = 2**15, 2**16   # the integer mantissa's range
M_MAX = 2.0**15             # the largest real multiplier (exclusive): (2**16 - 1) / 2**1
M_MIN = 2.0**-31            # the smallest: 2**15 / 2**46


def _check_multiplier(m: float):
    mult, shift = ref.quantize_multiplier(m)
    assert isinstance(mult, int) and isinstance(shift, int)
    assert M_LO <= mult < M_HI
    assert S_MIN <= shift <= S_MAX
    exact = Fraction(m)
    approx = Fraction(mult, 2**shift)
    assert abs(approx - exact) / exact <= Fraction(1, 2**16)
    # nearest 16-bit mantissa: within half a unit in the last place of M at this shift
    assert abs(mult - exact * 2**shift) <= Fraction(1, 2)


# Below M_MAX * (1 - 2**-17) the mantissa never rounds up at the smallest shift (see below).
SAFE_M_MAX = M_MAX * (1 - 2.0**-17)


@MEDIUM
@given(m=st.floats(min_value=M_MIN, max_value=SAFE_M_MAX, exclude_max=True))
@example(m=M_MIN)
@example(m=0.5)
@example(m=0.75)
@example(m=1 / 3)
@example(m=0.99999)
@example(m=1 - 2.0**-53)
@example(m=1.0)
@example(m=2.0**-30 * (1 - 2.0**-18))  # mantissa rounds up: M = 2**15 at shift - 1
def test_quantize_multiplier_accuracy(m):
    _check_multiplier(m)


@MEDIUM
@given(mant=st.floats(min_value=0.5, max_value=1.0, exclude_max=True), exp=st.integers(-30, 15))
def test_quantize_multiplier_accuracy_log_uniform(mant, exp):
    m = mant * 2.0**exp  # every binade of [2**-31, 2**15) equally often
    assume(M_MIN <= m < SAFE_M_MAX)
    _check_multiplier(m)


@pytest.mark.parametrize("k", range(-31, 15))
def test_quantize_multiplier_powers_of_two(k):
    # 2**k = 2**15 / 2**(15 - k): worked by hand
    assert ref.quantize_multiplier(2.0**k) == (2**15, 15 - k)


def test_quantize_multiplier_hand_examples():
    # 0.75 = 49152 / 2**16 ; 0.3 = 0.6 * 2**-1 -> M = round(0.6 * 2**16) = round(39321.6) = 39322
    assert ref.quantize_multiplier(0.75) == (49152, 16)
    assert ref.quantize_multiplier(0.3) == (39322, 17)
    # 100 = 0.78125 * 2**7 -> M = 51200, s = 9 ; 1.5 = 0.75 * 2 -> (49152, 15)
    assert ref.quantize_multiplier(100.0) == (51200, 9)
    assert ref.quantize_multiplier(1.5) == (49152, 15)
    # the top of the range: 65535 / 2**16 = 1 - 2**-16 is exactly representable
    assert ref.quantize_multiplier(1 - 2.0**-16) == (65535, 16)


def test_quantize_multiplier_zero():
    mult, shift = ref.quantize_multiplier(0.0)
    assert mult == 0 and S_MIN <= shift <= S_MAX
    assert ref.requantize(np.array([[123456789]]) * mult, np.array([shift])).tolist() == [[0]]


@pytest.mark.parametrize("m", [
    M_MAX, 2.0**16, 1e10, math.inf, -math.inf, math.nan, -0.5, -1e-9, -(2.0**-40),
    2.0**-32, 2.0**-40, 1e-300, 5e-324, M_MIN * (1 - 2.0**-16),
])
def test_quantize_multiplier_out_of_range_raises(m):
    with pytest.raises(ValueError):
        ref.quantize_multiplier(m)


@pytest.mark.parametrize("m", [M_MAX * (1 - 2.0**-17), 32767.9, M_MAX * (1 - 2.0**-20),
                               M_MAX * (1 - 2.0**-53)])
def test_quantize_multiplier_just_below_upper_bound(m):
    # The nearest mantissa, 2**16, is not representable at the smallest shift: the largest
    # multiplier is the closest one left, still within the 2**-16 relative bound.
    assert ref.quantize_multiplier(m) == (2**16 - 1, 1)
    assert abs(Fraction(2**16 - 1, 2) - Fraction(m)) / Fraction(m) <= Fraction(1, 2**16)


# ----------------------------------------------------------------------------- 3. quantizers

def test_quantize_hand_examples():
    x = np.array([0.25, -0.25, 0.74, 0.75, -0.75, 0.0, 63.0, 63.25, 63.5, -63.75, 100.0, -100.0,
                  -1e6, 1e6])
    # x / 0.5 = .5, -.5, 1.48, 1.5, -1.5, 0, 126, 126.5, 127, -127.5, 200, -200, ...
    expected = [1, -1, 1, 2, -2, 0, 126, 127, 127, -127, 127, -127, -127, 127]
    got = ref.quantize(x, 0.5)
    assert got.dtype == np.int8
    assert got.tolist() == expected
    assert got.min() >= -127  # -128 is never produced


def test_quantize_custom_range_fused_relu():
    got = ref.quantize(np.array([-3.0, -0.5, 0.5, 2.5, 500.0]), 1.0, lo=0, hi=127)
    assert got.tolist() == [0, 0, 1, 3, 127]


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan])
def test_quantize_rejects_bad_scale(scale):
    with pytest.raises(ValueError):
        ref.quantize(np.zeros(3), scale)


@MEDIUM
@given(
    x=hnp.arrays(np.float32, st.integers(1, 30),
                 elements=st.floats(-3e4, 3e4, allow_nan=False, width=32)),
    scale=st.one_of(st.floats(1e-3, 100.0), st.sampled_from([2.0**-7, 0.5, 1.0, 4.0])),
    relu=st.booleans(),
)
def test_quantize_matches_fraction(x, scale, relu):
    lo = 0 if relu else -127
    got = ref.quantize(x, scale, lo=lo, hi=127)
    assert got.dtype == np.int8
    expected = []
    for v in x:
        q = float(np.float64(v) / np.float64(scale))  # the contract: division in float64
        expected.append(clampi(rha(q), lo, 127))
    assert got.tolist() == expected


@FAST
@given(ks=st.lists(st.integers(-300, 300), min_size=1, max_size=20), j=st.integers(-8, 4))
def test_quantize_exact_ties_round_away(ks, j):
    scale = 2.0**j
    x = np.array([(k + 0.5) * scale for k in ks], dtype=np.float32)  # exact x / scale ties
    got = ref.quantize(x, scale)
    assert got.tolist() == [clampi(k + 1 if k >= 0 else k, -127, 127) for k in ks]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("x", [-math.inf, -1e30, -(2.0**63), -1e18])
def test_quantize_huge_negative_saturates(x):
    assert ref.quantize(np.array([x]), 1.0).tolist() == [-127]
    assert ref.quantize(np.array([x], np.float32), 1e-30).tolist() == [-127]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("x", [math.inf, 1e30, 2.0**63, 1e18])
def test_quantize_huge_positive_saturates(x):
    # x / scale beyond int64 must saturate to +127, not wrap through INT64_MIN to -127
    assert ref.quantize(np.array([x]), 1.0).tolist() == [127]
    assert ref.quantize(np.array([x], np.float32), 1e-30).tolist() == [127]


def test_quantize_just_below_half():
    assert ref.quantize(np.array([JUST_BELOW_HALF, -JUST_BELOW_HALF]), 1.0).tolist() == [0, 0]
    # float32 input, float64 division: 1 / (2 + 2**-51) rounds to 0.5 - 2**-53 -> 0
    assert ref.quantize(np.array([1.0], np.float32), 2.0 + 2.0**-51).tolist() == [0]


def test_quantize_ternary_hand_examples():
    x = np.array([-1.0, -0.5, -0.49, 0.0, 0.5, 0.51, 2.0])
    got = ref.quantize_ternary(x, -0.5, 0.5)
    assert got.dtype == np.int8
    assert got.tolist() == [-1, 0, 0, 0, 0, 1, 1]
    # asymmetric thresholds
    assert ref.quantize_ternary(np.array([-0.2, -0.1, 0.3, 0.7, 0.71]), -0.1, 0.7).tolist() == \
        [-1, 0, 0, 0, 1]


@FAST
@given(
    x=hnp.arrays(np.float32, st.integers(1, 30), elements=st.floats(-10, 10, width=32)),
    t_lo=st.floats(-5, 0), gap=st.floats(0, 5),
)
def test_quantize_ternary_property(x, t_lo, gap):
    t_hi = t_lo + gap
    got = ref.quantize_ternary(x, t_lo, t_hi)
    expected = [1 if Fraction(float(v)) > Fraction(t_hi) else
                -1 if Fraction(float(v)) < Fraction(t_lo) else 0 for v in x]
    assert got.tolist() == expected


# ----------------------------------------------------------------------------- 4. accumulation

def test_linear_acc_hand_example():
    x = np.array([[1, 2, 3, 4], [-5, 6, -7, 8]], dtype=np.int8)
    w = np.array([[1, 0, -1, 1], [0, 0, 0, 0], [-1, -1, -1, -1]], dtype=np.int8)
    acc_p, acc_n = ref.linear_acc(x, w)
    assert acc_p.tolist() == [[5, 0, 0], [3, 0, 0]]
    assert acc_n.tolist() == [[3, 0, 10], [-7, 0, 2]]


@MEDIUM
@given(data=st.data())
def test_linear_acc_matches_direct_sums(data):
    lead = data.draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    k, n = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 6))
    x = data.draw(int8_arrays((*lead, k)))
    w = data.draw(ternary_arrays((n, k)))
    acc_p, acc_n = ref.linear_acc(x, w)
    assert acc_p.shape == acc_n.shape == (*lead, n)
    rows = x.reshape(-1, k)
    exp_p = [[sum(int(r[i]) for i in range(k) if w[o, i] == 1) for o in range(n)] for r in rows]
    exp_n = [[sum(int(r[i]) for i in range(k) if w[o, i] == -1) for o in range(n)] for r in rows]
    assert acc_p.reshape(-1, n).tolist() == exp_p
    assert acc_n.reshape(-1, n).tolist() == exp_n


def test_conv2d_acc_hand_example():
    x = np.arange(1, 10, dtype=np.int8).reshape(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    w = np.array([[1, -1], [0, 1]], dtype=np.int8).reshape(1, 1, 2, 2)
    acc_p, acc_n = ref.conv2d_acc(x, w)
    # window at (i, j): +x[i,j] + x[i+1,j+1], -x[i,j+1]
    assert acc_p.tolist() == [[[[1 + 5, 2 + 6], [4 + 8, 5 + 9]]]]
    assert acc_n.tolist() == [[[[2, 3], [5, 6]]]]
    # stride 2, padding 1: windows at rows/cols (-1, 1) x (-1, 1) of the input
    acc_p, acc_n = ref.conv2d_acc(x, w, stride=(2, 2), padding=(1, 1))
    assert acc_p.tolist() == [[[[0 + 1, 0 + 3], [0 + 7, 5 + 9]]]]
    assert acc_n.tolist() == [[[[0, 0], [4, 6]]]]
    # pad_value -1 (a real zero of half-range ternary activations) fills the border instead
    acc_p, acc_n = ref.conv2d_acc(x, w, stride=(2, 2), padding=(1, 1), pad_value=-1)
    assert acc_p.tolist() == [[[[-1 + 1, -1 + 3], [-1 + 7, 5 + 9]]]]
    assert acc_n.tolist() == [[[[-1, -1], [4, 6]]]]


@settings(max_examples=150, deadline=None)
@given(case=conv_cases())
def test_conv2d_acc_matches_torch(case):
    x, w, stride, padding, dilation, groups, pad_value = case
    acc_p, acc_n = ref.conv2d_acc(x, w, stride, padding, dilation, groups, pad_value=pad_value)
    exp_p = torch_conv64(x, (w == 1), stride, padding, dilation, groups, pad_value)
    exp_n = torch_conv64(x, (w == -1), stride, padding, dilation, groups, pad_value)
    assert acc_p.shape == acc_n.shape == exp_p.shape
    np.testing.assert_array_equal(acc_p, exp_p.astype(np.int64))
    np.testing.assert_array_equal(acc_n, exp_n.astype(np.int64))
    full = torch_conv64(x, w, stride, padding, dilation, groups, pad_value)
    np.testing.assert_array_equal(acc_p - acc_n, full.astype(np.int64))
    if pad_value == 0:  # zero padding is torch's own padding
        plain = F.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                         None, stride, padding, dilation, groups).numpy()
        np.testing.assert_array_equal(acc_p - acc_n, plain.astype(np.int64))


@pytest.mark.parametrize("bad", [2, -2, 127, -128])
def test_non_ternary_weights_raise(bad):
    w = np.array([[1, 0, bad]], dtype=np.int8)
    with pytest.raises(ValueError):
        ref.linear_acc(np.ones((1, 3), np.int8), w)
    with pytest.raises(ValueError):
        ref.conv2d_acc(np.ones((1, 1, 3, 3), np.int8), w.reshape(1, 1, 1, 3))


def test_conv2d_acc_channel_mismatch_raises():
    with pytest.raises(ValueError):
        ref.conv2d_acc(np.ones((1, 3, 4, 4), np.int8), np.ones((2, 2, 1, 1), np.int8), groups=1)
    with pytest.raises(ValueError):  # out channels not divisible by groups
        ref.conv2d_acc(np.ones((1, 4, 4, 4), np.int8), np.ones((3, 2, 1, 1), np.int8), groups=2)


# ----------------------------------------------------------------------------- 5. epilogues

def expected_requant(ap, an, b, mp, mn, s, lo, hi):
    """The contract: z = Mp*acc_p - Mn*acc_n + bias (bias in 2**-s output steps), one rounding."""
    return clampi(rha(Fraction(mp * ap - mn * an + b, 2**s)), lo, hi)


def test_scaled_acc_requantize_hand_example():
    # Mp = Mn = 2**14, s = 15: out = round((acc_p - acc_n) / 2 + bias / 2**15)
    acc_p = np.array([[10, 3, 0, 0]])
    acc_n = np.array([[3, 0, 3, 300]])
    bias = np.array([2**14, 0, 0, 0])  # 2**14 / 2**15: half an output step = 1 acc unit
    m = np.full(4, 2**14)
    z = ref.scaled_acc(acc_p, acc_n, bias, m, m)
    assert z.dtype == np.int64
    assert z.tolist() == [[8 * 2**14, 3 * 2**14, -3 * 2**14, -300 * 2**14]]
    shift = np.full(4, 15)
    assert ref.requantize(z, shift).tolist() == [[4, 2, -2, -127]]  # 1.5 -> 2, -1.5 -> -2
    assert ref.requantize(z, shift, lo=0).tolist() == [[4, 2, 0, 0]]  # fused ReLU


def test_scaled_acc_dual_scale_hand_example():
    # Mp = 3 * 2**13 (0.75), Mn = 2**14 (0.5), s = 15, bias = 2**13 (a quarter output step):
    # 0.75 * 4 - 0.5 * 1 + 0.25 = 2.75 -> 3
    z = ref.scaled_acc(np.array([[4]]), np.array([[1]]), np.array([2**13]),
                       np.array([3 * 2**13]), np.array([2**14]))
    assert int(z[0, 0]) == 3 * 2**13 * 4 - 2**14 + 2**13
    assert ref.requantize(z, np.array([15])).tolist() == [[3]]
    # without the quarter step: 2.5 -> 3 (tie away); with minus a quarter: 2.25 -> 2
    z0 = ref.scaled_acc(np.array([[4]]), np.array([[1]]), np.array([0]),
                        np.array([3 * 2**13]), np.array([2**14]))
    assert ref.requantize(z0, np.array([15])).tolist() == [[3]]
    zm = ref.scaled_acc(np.array([[4]]), np.array([[1]]), np.array([-(2**13)]),
                        np.array([3 * 2**13]), np.array([2**14]))
    assert ref.requantize(zm, np.array([15])).tolist() == [[2]]


@st.composite
def epilogue_cases(draw, layout):
    """Accumulators, per-channel params; layout 'last' ([B, N], axis -1) or 'nchw' (axis 1)."""
    c = draw(st.integers(1, 4))
    if layout == "last":
        shape, axis = (draw(st.integers(1, 3)), c), -1
    else:
        shape, axis = (draw(st.integers(1, 2)), c, draw(st.integers(1, 3)), draw(st.integers(1, 3))), 1
    shift = draw(hnp.arrays(np.int64, c, elements=st.integers(1, 46)))
    # accumulator magnitude tied to the shift so outputs land inside and outside [-127, 127]
    mag = min(INT32_MAX, 2 ** max(1, int(shift.min()) - 14) * 300)
    acc = st.integers(-mag, mag)
    acc_p = draw(hnp.arrays(np.int64, shape, elements=acc))
    acc_n = draw(hnp.arrays(np.int64, shape, elements=acc))
    bias = draw(hnp.arrays(np.int64, c, elements=st.integers(-mag * 2**15, mag * 2**15)))
    mult = st.one_of(st.integers(2**14, 2**15 - 1), st.just(0))
    mp = draw(hnp.arrays(np.int64, c, elements=mult))
    mn = mp.copy() if draw(st.booleans()) else draw(hnp.arrays(np.int64, c, elements=mult))
    return acc_p, acc_n, bias, mp, mn, shift, axis


@settings(max_examples=120, deadline=None)
@given(case=st.one_of(epilogue_cases("last"), epilogue_cases("nchw")), relu=st.booleans())
def test_scaled_acc_requantize_matches_fraction(case, relu):
    acc_p, acc_n, bias, mp, mn, shift, axis = case
    lo = 0 if relu else -127
    z = ref.scaled_acc(acc_p, acc_n, bias, mp, mn, axis=axis)
    out = ref.requantize(z, shift, lo=lo, hi=127, axis=axis)
    assert z.dtype == np.int64 and out.dtype == np.int8 and out.shape == acc_p.shape
    for idx in np.ndindex(acc_p.shape):
        c = idx[axis]
        ap, an, b = int(acc_p[idx]), int(acc_n[idx]), int(bias[c])
        assert int(z[idx]) == int(mp[c]) * ap - int(mn[c]) * an + b
        assert int(out[idx]) == expected_requant(ap, an, b, int(mp[c]), int(mn[c]),
                                                 int(shift[c]), lo, 127)


@settings(max_examples=120, deadline=None)
@given(data=st.data(), axis=st.sampled_from([-1, 1]), relu=st.booleans())
def test_requantize_ties_and_saturation(data, axis, relu):
    c = data.draw(st.integers(1, 4))
    shape = (2, c) if axis == -1 else (1, c, 2, 2)
    shift = data.draw(hnp.arrays(np.int64, c, elements=st.integers(1, 46)))
    q = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-200, 200)))
    kind = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 3)))
    z = np.empty(shape, np.int64)
    for idx in np.ndindex(shape):
        s = int(shift[idx[axis]])
        # exact tie, just below a tie, just above a tie, or an exact multiple
        frac = [2 ** (s - 1), 2 ** (s - 1) - 1, 2 ** (s - 1) + 1, 0][int(kind[idx])]
        z[idx] = int(q[idx]) * 2**s + (frac if q[idx] >= 0 else -frac)
    lo = 0 if relu else -127
    out = ref.requantize(z, shift, lo=lo, axis=axis)
    for idx in np.ndindex(shape):
        assert int(out[idx]) == clampi(rha(Fraction(int(z[idx]), 2 ** int(shift[idx[axis]]))), lo, 127)


def test_scaled_acc_extreme_values_exact():
    # int32 extremes times 16-bit multipliers plus a large int64 bias: exact in int64
    acc_p = np.array([[INT32_MAX, INT32_MIN]])
    acc_n = np.array([[INT32_MIN, INT32_MAX]])
    bias = np.array([2**40, -(2**40)])
    mp = np.array([2**15 - 1, 2**15 - 1])
    mn = np.array([2**15 - 1, 2**14])
    z = ref.scaled_acc(acc_p, acc_n, bias, mp, mn)
    assert z.tolist() == [[(2**15 - 1) * INT32_MAX - (2**15 - 1) * INT32_MIN + 2**40,
                           (2**15 - 1) * INT32_MIN - 2**14 * INT32_MAX - 2**40]]


def test_threshold_hand_example():
    z = np.array([[-10, -5, 0, 5, 10], [3, 3, 3, 3, 3]])
    t_lo = np.array([-5, -6, 0, 4, 10])
    t_hi = np.array([5, -5, 0, 6, 12])
    got = ref.threshold(z, t_lo, t_hi)
    assert got.dtype == np.int8
    # row 0: -10 < -5 ; -5 is neither > -5 nor < -6 ; 0 ; 5 in [4, 6] ; 10 in [10, 12]
    # row 1 (z = 3): in [-5, 5] ; > -5 ; > 0 ; < 4 ; < 10
    assert got.tolist() == [[-1, 0, 0, 0, 0], [0, 1, 1, -1, -1]]


@FAST
@given(data=st.data(), axis=st.sampled_from([-1, 1]))
def test_threshold_property(data, axis):
    c = data.draw(st.integers(1, 4))
    shape = (data.draw(st.integers(1, 3)), c) if axis == -1 else (1, c, 2, 3)
    z = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-50, 50)))
    t_lo = data.draw(hnp.arrays(np.int64, c, elements=st.integers(-40, 40)))
    t_hi = t_lo + data.draw(hnp.arrays(np.int64, c, elements=st.integers(0, 20)))
    got = ref.threshold(z, t_lo, t_hi, axis=axis)
    for idx in np.ndindex(shape):
        ch = idx[axis]
        v = int(z[idx])
        assert int(got[idx]) == (1 if v > t_hi[ch] else -1 if v < t_lo[ch] else 0)


def test_dequantize_hand_example():
    z = np.array([[10, -4], [0, 2**40]])
    got = ref.dequantize(z, np.array([0.5, 0.25], np.float32), np.array([1.0, -1.0], np.float32))
    assert got.dtype == np.float32
    # 2**40 * 0.25 - 1 = 2**38 - 1 needs 38 bits: float32 rounds it to 2**38
    assert got.tolist() == [[6.0, -2.0], [1.0, 2.0**38]]
    # axis 1 of NCHW
    z4 = np.arange(8).reshape(1, 2, 2, 2)
    got4 = ref.dequantize(z4, np.array([2.0, 0.5]), np.array([0.0, 10.0]), axis=1)
    assert got4.tolist() == [[[[0, 2], [4, 6]], [[12, 12.5], [13, 13.5]]]]


@FAST
@given(data=st.data())
def test_dequantize_property(data):
    c = data.draw(st.integers(1, 4))
    z = data.draw(hnp.arrays(np.int64, (3, c), elements=st.integers(-(2**47), 2**47)))
    scale = data.draw(hnp.arrays(np.float32, c, elements=st.floats(2.0**-30, 1.0, width=32)))
    bias = data.draw(hnp.arrays(np.float32, c, elements=st.floats(-100, 100, width=32)))
    got = ref.dequantize(z, scale, bias)
    for i, j in np.ndindex(z.shape):
        prod = Fraction(int(z[i, j])) * Fraction(float(scale[j]))
        exact = float(prod + Fraction(float(bias[j])))
        # float32 rounding (half a float32 ulp) plus the two float64 roundings of z*s + b
        tol = float(np.spacing(np.float32(abs(exact)))) + 2 * float(np.spacing(abs(float(prod)) + 128.0))
        assert abs(float(got[i, j]) - exact) <= tol


# ----------------------------------------------------------------------------- 6. other integer ops

def test_add_rescale_hand_example():
    a = np.array([3, -3, 100, 127], np.int8)
    b = np.array([-1, 1, 100, 127], np.int8)
    # (2**14 * a + 2**15 * b) / 2**15 = a/2 + b
    got = ref.add_rescale(a, b, 2**14, 2**15, 15)
    assert got.dtype == np.int8
    assert got.tolist() == [1, -1, 127, 127]  # 0.5 -> 1, -0.5 -> -1, 150 -> 127
    assert ref.add_rescale(a, b, 2**14, 2**15, 15, lo=0).tolist() == [1, 0, 127, 127]


@MEDIUM
@given(data=st.data(), relu=st.booleans())
def test_add_rescale_matches_fraction(data, relu):
    n = data.draw(st.integers(1, 20))
    a = data.draw(int8_arrays(n))
    b = data.draw(int8_arrays(n))
    ma, mb = data.draw(st.integers(0, 2**15 - 1)), data.draw(st.integers(0, 2**15 - 1))
    shift = data.draw(st.integers(15, 30))
    lo = 0 if relu else -127
    got = ref.add_rescale(a, b, ma, mb, shift, lo=lo)
    assert got.tolist() == [clampi(rha(Fraction(ma * int(p) + mb * int(q), 2**shift)), lo, 127)
                            for p, q in zip(a, b)]


@st.composite
def pool_cases(draw):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h = max(1, kernel[0] - 2 * padding[0]) + draw(st.integers(0, 4))
    w = max(1, kernel[1] - 2 * padding[1]) + draw(st.integers(0, 4))
    x = draw(int8_arrays((draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)))
    return x, kernel, stride, padding


@MEDIUM
@given(case=pool_cases())
def test_max_pool2d_matches_torch(case):
    x, kernel, stride, padding = case
    got = ref.max_pool2d(x, kernel, stride, padding)
    exp = F.max_pool2d(torch.from_numpy(x.astype(np.float64)), kernel, stride or kernel, padding)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, exp.numpy().astype(np.int64))


def test_max_pool2d_padding_never_wins():
    x = -np.arange(1, 10, dtype=np.int8).reshape(1, 1, 3, 3)
    got = ref.max_pool2d(x, (3, 3), (1, 1), (1, 1))
    assert got.tolist() == [[[[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]]]]


def windows_sum(x, kernel, stride, padding):
    """Python loops: window sums over the zero-padded input."""
    b, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    out = np.zeros((b, c, oh, ow), dtype=object)
    for n, ch, i, j in np.ndindex(b, c, oh, ow):
        total = 0
        for di in range(kh):
            for dj in range(kw):
                r, q = i * sh + di - ph, j * sw + dj - pw
                if 0 <= r < h and 0 <= q < w:
                    total += int(x[n, ch, r, q])
        out[n, ch, i, j] = total
    return out


@MEDIUM
@given(case=pool_cases())
def test_avg_pool2d_matches_fraction(case):
    x, kernel, stride, padding = case
    got = ref.avg_pool2d(x, kernel, stride, padding)
    sums = windows_sum(x, kernel, stride or kernel, padding)
    area = kernel[0] * kernel[1]  # padding counted, like torch's count_include_pad=True
    assert got.dtype == x.dtype
    assert got.shape == sums.shape
    torch_shape = F.avg_pool2d(torch.zeros(x.shape), kernel, stride or kernel, padding).shape
    assert got.shape == tuple(torch_shape)
    for idx in np.ndindex(sums.shape):
        assert int(got[idx]) == rha(Fraction(sums[idx], area))


def test_avg_pool2d_hand_example():
    x = np.array([[1, 2], [3, 4]], np.int8).reshape(1, 1, 2, 2)
    assert ref.avg_pool2d(x, (2, 2)).tolist() == [[[[3]]]]        # 2.5 -> 3
    assert ref.avg_pool2d(-x, (2, 2)).tolist() == [[[[-3]]]]      # -2.5 -> -3
    # padding counted: 3x3 windows over a 1-padded 2x2 each hold all 4 values: 10/9 -> 1
    assert ref.avg_pool2d(x, (3, 3), (1, 1), (1, 1)).tolist() == [[[[1, 1], [1, 1]]]]


@FAST
@given(x=hnp.arrays(np.int8, st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5),
                                       st.integers(1, 5)), elements=int8s))
def test_global_avg_pool2d_matches_fraction(x):
    got = ref.global_avg_pool2d(x)
    b, c, h, w = x.shape
    assert got.shape == (b, c, 1, 1) and got.dtype == x.dtype
    for n, ch in np.ndindex(b, c):
        assert int(got[n, ch, 0, 0]) == rha(Fraction(int(x[n, ch].astype(np.int64).sum()), h * w))


def test_global_avg_pool2d_ties():
    x = np.array([1, 2, 3, 4, -1, -2, -3, -4], np.int8).reshape(1, 2, 2, 2)
    assert ref.global_avg_pool2d(x).tolist() == [[[[3]], [[-3]]]]  # +-2.5


# ----------------------------------------------------------------------------- 7. overflow checks

def test_check_accumulator_range_fits():
    ref.check_accumulator_range(INT32_MAX // 127, 127, layer="fc1")  # 16909320 x 127
    ref.check_accumulator_range(1, INT32_MAX, layer="fc1")  # exactly INT32_MAX
    ref.check_accumulator_range(0, 127, layer="fc1")


@pytest.mark.parametrize("k, mx", [(INT32_MAX // 127 + 1, 127), (2, INT32_MAX), (2**20, 2**12)])
def test_check_accumulator_range_raises_naming_layer(k, mx):
    with pytest.raises(OverflowRiskError, match=r"layer3\.conv2"):
        ref.check_accumulator_range(k, mx, layer="layer3.conv2")


def test_linear_acc_overflow_raises():
    big = np.array([[2**30, 2**30]], np.int64)  # sum 2**31 > INT32_MAX
    with pytest.raises(OverflowRiskError):
        ref.linear_acc(big, np.array([[1, 1]], np.int8))
    with pytest.raises(OverflowRiskError):
        ref.linear_acc(big, np.array([[-1, -1]], np.int8))
    with pytest.raises(OverflowRiskError):
        ref.linear_acc(np.array([[-(2**30), -(2**30) - 1]]), np.array([[1, 1]], np.int8))
    # exactly INT32_MIN and INT32_MAX fit
    acc_p, acc_n = ref.linear_acc(np.array([[-(2**30), -(2**30)], [2**30, 2**30 - 1]]),
                                  np.array([[1, 1]], np.int8))
    assert acc_p.tolist() == [[INT32_MIN], [INT32_MAX]]


def test_conv2d_acc_overflow_raises():
    x = np.full((1, 1, 2, 2), 2**30, np.int64)
    with pytest.raises(OverflowRiskError):
        ref.conv2d_acc(x, np.array([[[[1, 1], [0, 0]]]], np.int8))
    with pytest.raises(OverflowRiskError):
        ref.conv2d_acc(x, np.array([[[[0, -1], [0, -1]]]], np.int8))


# ----------------------------------------------------------------------------- 7. fused residual

def test_add_residual_requantize_hand_example():
    # shift 15, Mr = 2**15 (the shortcut has the output's scale: one step per unit of r)
    # and Mr = 2**14 (half the output's scale). z = 2**14 is half an output step.
    z = np.array([[2**14, -(2**14), 3 * 2**15, 0]])
    r = np.array([[1, -1, -3, 127]], np.int8)
    total = ref.add_residual(z, r, np.array([2**15, 2**15, 2**14, 2**14]))
    assert total.dtype == np.int64
    assert total.tolist() == [[2**14 + 2**15, -(2**14) - 2**15, 3 * 2**15 - 3 * 2**14, 127 * 2**14]]
    shift = np.full(4, 15)
    # 1.5 -> 2, -1.5 -> -2, 3 - 1.5 = 1.5 -> 2, 63.5 -> 64
    assert ref.requantize(total, shift).tolist() == [[2, -2, 2, 64]]
    assert ref.requantize(total, shift, lo=0).tolist() == [[2, 0, 2, 64]]  # fused ReLU


@MEDIUM
@given(case=st.one_of(epilogue_cases("last"), epilogue_cases("nchw")), data=st.data(),
       relu=st.booleans())
def test_add_residual_requantize_matches_fraction(case, data, relu):
    acc_p, acc_n, bias, mp, mn, shift, axis = case
    c = bias.shape[0]
    r = data.draw(int8_arrays(acc_p.shape))
    mr = data.draw(hnp.arrays(np.int64, c, elements=st.integers(0, 2**20)))
    lo = 0 if relu else -127
    total = ref.add_residual(ref.scaled_acc(acc_p, acc_n, bias, mp, mn, axis=axis), r, mr, axis=axis)
    out = ref.requantize(total, shift, lo=lo, axis=axis)
    for idx in np.ndindex(acc_p.shape):
        ch = idx[axis]
        exact = (int(mp[ch]) * int(acc_p[idx]) - int(mn[ch]) * int(acc_n[idx]) + int(bias[ch])
                 + int(mr[ch]) * int(r[idx]))
        assert int(total[idx]) == exact
        assert int(out[idx]) == clampi(rha(Fraction(exact, 2 ** int(shift[ch]))), lo, 127)


def test_add_residual_wrong_shape_raises():
    with pytest.raises(ShapeMismatchError, match="residual shape"):
        ref.add_residual(np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 4), np.int8), [1, 1], axis=1)


def test_add_residual_negative_multiplier_raises():
    with pytest.raises(ValueError, match=">= 0"):
        ref.add_residual(np.zeros((2, 2)), np.zeros((2, 2), np.int8), [1, -1])


def test_add_residual_beyond_int64_headroom_raises():
    with pytest.raises(OverflowRiskError, match="add_residual"):
        ref.add_residual(np.array([[2**62]]), np.array([[1]], np.int8), [2**20])
