"""The ``tternary::*`` torch custom ops agree with the numpy integer reference with ``==``,
and their fake (meta) kernels / registrations pass ``torch.library.opcheck``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch._subclasses.fake_tensor import FakeTensorMode

from tests.quant.test_reference import conv_cases, int8_arrays, rha, ternary_arrays
from tvm_ternary.errors import OverflowRiskError, ShapeMismatchError
from tvm_ternary.quant import ops
from tvm_ternary.quant import reference as ref

T = torch.ops.tternary
INT32_MIN = -(2**31)

FAST = settings(max_examples=40, deadline=None)
MEDIUM = settings(max_examples=80, deadline=None)


def t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def assert_same(got: torch.Tensor, expected: np.ndarray):
    """Bit-exact: same dtype, shape and values."""
    exp = np.asarray(expected)
    assert got.numpy().dtype == exp.dtype, (got.dtype, exp.dtype)
    assert tuple(got.shape) == exp.shape
    np.testing.assert_array_equal(got.numpy(), exp)


def mults(n):
    """int32 [2, n]: Mp, Mn each in reference.MULT_BITS = 16's [2**15, 2**16) (65535 often:
    the top of the range) or 0 (a constant channel)."""
    m = st.one_of(st.integers(2**15, 2**16 - 1), st.just(2**16 - 1), st.just(0))
    return hnp.arrays(np.int32, (2, n), elements=m)


def biases(n):
    return hnp.arrays(np.int64, n, elements=st.integers(-(2**45), 2**45))


# ----------------------------------------------------------------------------- quantizers

small_shapes = st.one_of(st.tuples(st.integers(1, 16)), st.tuples(st.integers(1, 3), st.integers(1, 6)))


@MEDIUM
@given(
    x=hnp.arrays(np.float32, small_shapes, elements=st.floats(allow_nan=False, width=32)),
    scale=st.one_of(st.floats(1e-4, 1e3), st.sampled_from([2.0**-7, 0.5, 1.0, 3.0, 0.1])),
    lo=st.sampled_from([-127, 0]),
)
def test_quantize_matches_reference(x, scale, lo):
    with np.errstate(invalid="ignore"):
        expected = ref.quantize(x, scale, lo, 127)
    assert_same(T.tquantize(t(x), scale, lo, 127), expected)


@MEDIUM
@given(ks=st.lists(st.integers(-200, 200), min_size=1, max_size=16), j=st.integers(-8, 4),
       dtype=st.sampled_from([np.float32, np.float64]), lo=st.sampled_from([-127, 0]))
def test_quantize_exact_ties(ks, j, dtype, lo):
    scale = 2.0**j
    x = np.array([(k + 0.5) * scale for k in ks], dtype=dtype)  # x / scale is exactly k + 1/2
    got = T.tquantize(t(x), scale, lo, 127)
    assert_same(got, ref.quantize(x, scale, lo, 127))
    assert got.tolist() == [max(lo, min(127, rha(k + 0.5))) for k in ks]


@FAST
@given(ks=st.lists(st.integers(-200, 200), min_size=1, max_size=16),
       scale=st.floats(1e-3, 10.0))
def test_quantize_near_ties_any_scale(ks, scale):
    # float32 images of (k + 1/2) * scale: x / scale lands on or next to a tie
    x = np.array([(k + 0.5) * scale for k in ks], dtype=np.float32)
    x = np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))])
    assert_same(T.tquantize(t(x), scale, -127, 127), ref.quantize(x, scale, -127, 127))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_quantize_special_values():
    x = np.array([np.inf, -np.inf, 1e30, -1e30, 0.5 - 2.0**-54, -(0.5 - 2.0**-54), 0.0, -0.0])
    expected = [127, -127, 127, -127, 0, 0, 0, 0]
    assert ref.quantize(x, 1.0).tolist() == expected
    assert T.tquantize(t(x), 1.0, -127, 127).tolist() == expected


@MEDIUM
@given(x=st.floats(allow_nan=False))
@example(x=0.5 - 2.0**-54)
@example(x=2.0**52 + 1)
@example(x=-2.5)
def test_round_half_away_twin(x):
    with np.errstate(invalid="ignore"):
        expected = ref.round_half_away_float(x)
    got = ops.round_half_away(torch.tensor([x], dtype=torch.float64))
    assert got.item() == float(expected)


@MEDIUM
@given(
    x=hnp.arrays(np.float32, small_shapes, elements=st.floats(-4, 4, width=32)),
    t_lo=st.floats(-2, 1), gap=st.floats(0, 2),
)
@example(x=np.array([-0.5, 0.5, 0.25], np.float32), t_lo=-0.5, gap=1.0)
def test_quantize_ternary_matches_reference(x, t_lo, gap):
    t_hi = t_lo + gap
    assert_same(T.tquantize_ternary(t(x), t_lo, t_hi), ref.quantize_ternary(x, t_lo, t_hi))


# ----------------------------------------------------------------------------- ternary layers

@MEDIUM
@given(data=st.data())
def test_tlinear_matches_reference(data):
    lead = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    k, n = data.draw(st.integers(1, 48)), data.draw(st.integers(1, 6))
    x = data.draw(int8_arrays((*lead, k)))
    w = data.draw(ternary_arrays((n, k)))
    bias = data.draw(biases(n))
    mult = data.draw(mults(n))
    if data.draw(st.booleans()):
        mult[1] = mult[0]  # symmetric layer
    acc_p, acc_n = ref.linear_acc(x, w)
    expected = ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1])
    assert_same(T.tlinear(t(x), t(w), t(bias), t(mult)), expected)


@settings(max_examples=100, deadline=None)
@given(case=conv_cases(), data=st.data())
def test_tconv2d_matches_reference(case, data):
    x, w, stride, padding, dilation, groups, pad_value = case
    o = w.shape[0]
    bias = data.draw(biases(o))
    mult = data.draw(mults(o))
    acc_p, acc_n = ref.conv2d_acc(x, w, stride, padding, dilation, groups, pad_value=pad_value)
    expected = ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1], axis=1)
    got = T.tconv2d(t(x), t(w), t(bias), t(mult), list(stride), list(padding), list(dilation),
                    groups, pad_value)
    assert_same(got, expected)


def test_tconv2d_default_pad_value_is_zero():
    x = np.arange(1, 10, dtype=np.int8).reshape(1, 1, 3, 3)
    w = np.array([[1, -1], [0, 1]], np.int8).reshape(1, 1, 2, 2)
    got = T.tconv2d(t(x), t(w), t(np.zeros(1, np.int64)), t(np.ones((2, 1), np.int32)),
                    [2, 2], [1, 1], [1, 1], 1)
    # hand-worked in test_reference: acc_p [[1, 3], [7, 14]], acc_n [[0, 0], [4, 6]]
    assert got.tolist() == [[[[1, 3], [3, 8]]]]


def test_tlinear_accumulator_overflow_raises():
    # int32-valued inputs make an int32 overflow cheap to reach (int8 would need K > 16.9M)
    x = t(np.array([[2**30, 2**30]], np.int32))
    bias, mult = t(np.zeros(1, np.int64)), t(np.full((2, 1), 2**14, np.int32))
    with pytest.raises(OverflowRiskError):
        T.tlinear(x, t(np.array([[1, 1]], np.int8)), bias, mult)
    with pytest.raises(OverflowRiskError):
        T.tlinear(x, t(np.array([[-1, -1]], np.int8)), bias, mult)
    with pytest.raises(OverflowRiskError):
        ref.linear_acc(x.numpy(), np.array([[1, 1]], np.int8))


def test_tlinear_accumulator_exactly_int32_min():
    k = 2**24  # int8 input -128 x 2**24 = -2**31 exactly
    x = torch.full((1, k), -128, dtype=torch.int8)
    w = torch.ones((1, k), dtype=torch.int8)
    got = T.tlinear(x, w, torch.zeros(1, dtype=torch.int64),
                    torch.tensor([[2**14], [2**14]], dtype=torch.int32))
    assert got.tolist() == [[2**14 * INT32_MIN]]


@pytest.mark.parametrize("which", ["tlinear", "tconv2d"])
def test_non_ternary_weights_rejected_like_reference(which):
    w = np.array([[2, 1, -1]], np.int8)
    bias, mult = t(np.zeros(1, np.int64)), t(np.ones((2, 1), np.int32))
    with pytest.raises(ValueError):
        if which == "tlinear":
            T.tlinear(t(np.ones((1, 3), np.int8)), t(w), bias, mult)
        else:
            T.tconv2d(t(np.ones((1, 1, 1, 3), np.int8)), t(w.reshape(1, 1, 1, 3)), bias, mult,
                      [1, 1], [0, 0], [1, 1], 1, 0)


# ----------------------------------------------------------------------------- epilogues

@st.composite
def z_cases(draw):
    axis = draw(st.sampled_from([-1, 1]))
    c = draw(st.integers(1, 4))
    if axis == -1:
        shape = (draw(st.integers(1, 3)), c) if draw(st.booleans()) else (2, draw(st.integers(1, 2)), c)
    else:
        shape = (draw(st.integers(1, 2)), c, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return axis, c, shape


@settings(max_examples=100, deadline=None)
@given(case=z_cases(), data=st.data(), lo=st.sampled_from([-127, 0]))
def test_requantize_matches_reference(case, data, lo):
    axis, c, shape = case
    shift = data.draw(hnp.arrays(np.int32, c, elements=st.integers(1, 46)))
    q = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-200, 200)))
    r = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 2**46)))
    kind = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 3)))
    z = np.empty(shape, np.int64)
    for idx in np.ndindex(shape):
        s = int(shift[idx[axis]])
        # an exact tie, a tie -+ 1, or an arbitrary remainder below 2**s
        frac = [2 ** (s - 1), 2 ** (s - 1) - 1, 2 ** (s - 1) + 1, int(r[idx]) % 2**s][int(kind[idx])]
        z[idx] = int(q[idx]) * 2**s + (frac if q[idx] >= 0 else -frac)
    expected = ref.requantize(z, shift, lo, 127, axis)
    assert_same(T.trequantize(t(z), t(shift), lo, 127, axis), expected)


@MEDIUM
@given(case=z_cases(), data=st.data())
def test_requantize_arbitrary_z(case, data):
    axis, c, shape = case
    shift = data.draw(hnp.arrays(np.int32, c, elements=st.integers(1, 46)))
    z = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-(2**48), 2**48)))
    assert_same(T.trequantize(t(z), t(shift), -127, 127, axis), ref.requantize(z, shift, -127, 127, axis))


@MEDIUM
@given(case=z_cases(), data=st.data())
def test_threshold_matches_reference(case, data):
    axis, c, shape = case
    z = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-60, 60)))
    t_lo = data.draw(hnp.arrays(np.int64, c, elements=st.integers(-50, 50)))
    t_hi = t_lo + data.draw(hnp.arrays(np.int64, c, elements=st.integers(0, 20)))
    dt = data.draw(st.sampled_from([np.int32, np.int64]))
    expected = ref.threshold(z, t_lo, t_hi, axis)
    assert_same(T.tthreshold(t(z), t(t_lo.astype(dt)), t(t_hi.astype(dt)), axis), expected)


@MEDIUM
@given(case=z_cases(), data=st.data())
def test_dequantize_matches_reference(case, data):
    axis, c, shape = case
    z = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-(2**47), 2**47)))
    scale = data.draw(hnp.arrays(np.float32, c, elements=st.floats(2.0**-40, 1.0, width=32)))
    bias = data.draw(hnp.arrays(np.float32, c, elements=st.floats(-1e3, 1e3, width=32)))
    assert_same(T.tdequantize(t(z), t(scale), t(bias), axis), ref.dequantize(z, scale, bias, axis))


def test_dequantize_float64_params_rounded_to_float32_first():
    z = np.array([[2**40]], np.int64)
    scale, bias = np.array([0.1]), np.array([0.1])  # float64: both ops round them to float32
    expected = ref.dequantize(z, scale, bias)
    assert_same(T.tdequantize(t(z), t(scale), t(bias), -1), expected)
    exact32 = np.float32(2**40 * float(np.float32(0.1)) + float(np.float32(0.1)))
    assert expected.tolist() == [[float(exact32)]]


@settings(max_examples=100, deadline=None)
@given(case=z_cases(), data=st.data(), lo=st.sampled_from([-127, 0]))
def test_requantize_residual_matches_reference(case, data, lo):
    axis, c, shape = case
    shift = data.draw(hnp.arrays(np.int32, c, elements=st.integers(1, 46)))
    z = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-(2**48), 2**48)))
    r = data.draw(int8_arrays(shape))
    mult_r = data.draw(hnp.arrays(np.int64, c, elements=st.integers(0, 2**40)))
    expected = ref.requantize(ref.add_residual(z, r, mult_r, axis), shift, lo, 127, axis)
    assert_same(T.trequantize_residual(t(z), t(shift), t(r), t(mult_r), lo, 127, axis), expected)


def test_requantize_residual_hand_example():
    # shift 15: z = 2**14 is half an output step; Mr = 2**15 adds r whole steps
    z = torch.tensor([[2**14, -(2**14), 0]])
    r = torch.tensor([[1, -1, -3]], dtype=torch.int8)
    out = T.trequantize_residual(z, torch.full((3,), 15), r, torch.tensor([2**15, 2**15, 2**14]),
                                 -127, 127, -1)
    assert out.tolist() == [[2, -2, -2]]  # 1.5 -> 2, -1.5 -> -2, -1.5 -> -2


def test_requantize_residual_wrong_shape_raises():
    z = torch.zeros(1, 2, 3, 3, dtype=torch.int64)
    with pytest.raises(ShapeMismatchError, match=r"residual r has shape \[1, 2, 3, 4\]"):
        T.trequantize_residual(z, torch.ones(2), torch.zeros(1, 2, 3, 4, dtype=torch.int8),
                               torch.ones(2), -127, 127, 1)


def test_requantize_residual_beyond_int64_headroom_raises():
    z = torch.tensor([[2**61]])
    r = torch.tensor([[127]], dtype=torch.int8)
    with pytest.raises(OverflowRiskError, match="trequantize_residual"):
        T.trequantize_residual(z, torch.ones(1), r, torch.tensor([2**56]), -127, 127, -1)


# ----------------------------------------------------------------------------- registration, fake kernels

def _i8(*shape, lo=-127, hi=127):
    return torch.randint(lo, hi + 1, shape, dtype=torch.int8)


def _opcheck_cases():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    z2 = torch.randint(-(2**40), 2**40, (3, 4), dtype=torch.int64, generator=g)
    z4 = torch.randint(-(2**40), 2**40, (2, 4, 3, 5), dtype=torch.int64, generator=g)
    sh = torch.randint(1, 47, (4,), dtype=torch.int32, generator=g)
    mult = lambda n: torch.randint(2**14, 2**15, (2, n), dtype=torch.int32, generator=g)  # noqa: E731
    bias = lambda n: torch.randint(-(2**30), 2**30, (n,), dtype=torch.int64, generator=g)  # noqa: E731
    return {
        "quantize": (T.tquantize.default, (torch.randn(3, 5) * 10, 0.1, -127, 127)),
        "quantize_relu_f64": (T.tquantize.default, (torch.randn(2, 3, 4, dtype=torch.float64), 0.05, 0, 127)),
        "quantize_grad": (T.tquantize.default, (torch.randn(4, requires_grad=True), 0.1, -127, 127)),
        "quantize_ternary": (T.tquantize_ternary.default, (torch.randn(2, 7), -0.3, 0.4)),
        "tlinear_2d": (T.tlinear.default, (_i8(3, 10), _i8(5, 10, lo=-1, hi=1), bias(5), mult(5))),
        "tlinear_3d": (T.tlinear.default, (_i8(2, 3, 10), _i8(4, 10, lo=-1, hi=1), bias(4), mult(4))),
        "tconv2d": (T.tconv2d.default, (_i8(2, 3, 7, 6), _i8(4, 3, 3, 3, lo=-1, hi=1), bias(4), mult(4),
                                        [1, 1], [1, 1], [1, 1], 1, 0)),
        "tconv2d_strided_grouped": (T.tconv2d.default, (_i8(1, 4, 9, 8), _i8(6, 2, 3, 2, lo=-1, hi=1),
                                                        bias(6), mult(6), [2, 3], [2, 0], [2, 1], 2, -1)),
        "tconv2d_depthwise": (T.tconv2d.default, (_i8(1, 3, 5, 5), _i8(3, 1, 3, 3, lo=-1, hi=1), bias(3),
                                                  mult(3), [1, 2], [0, 1], [1, 1], 3, 0)),
        "requantize_last": (T.trequantize.default, (z2, sh, -127, 127, -1)),
        "requantize_nchw_relu": (T.trequantize.default, (z4, sh, 0, 127, 1)),
        "threshold_last": (T.tthreshold.default, (z2, torch.tensor([-5, 0, 1, 2]), torch.tensor([5, 0, 3, 9]), -1)),
        "threshold_nchw": (T.tthreshold.default, (z4, torch.full((4,), -(2**39)), torch.full((4,), 2**39), 1)),
        "dequantize_last": (T.tdequantize.default, (z2, torch.rand(4) * 1e-6, torch.randn(4), -1)),
        "dequantize_nchw": (T.tdequantize.default, (z4, torch.rand(4) * 1e-6, torch.randn(4), 1)),
        "requantize_residual_last": (T.trequantize_residual.default,
                                     (z2, sh, _i8(3, 4), torch.randint(0, 2**20, (4,)), -127, 127, -1)),
        "requantize_residual_nchw_relu": (T.trequantize_residual.default,
                                          (z4, sh, _i8(2, 4, 3, 5), torch.randint(0, 2**20, (4,)), 0, 127, 1)),
    }


OPCHECK_CASES = _opcheck_cases()


@pytest.mark.parametrize("name", list(OPCHECK_CASES))
def test_opcheck(name):
    op, args = OPCHECK_CASES[name]
    results = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in results.values()), results


@pytest.mark.parametrize("name", list(OPCHECK_CASES))
def test_fake_kernel_shapes_and_dtypes(name):
    op, args = OPCHECK_CASES[name]
    real = op(*args)
    mode = FakeTensorMode()
    fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
    with mode:
        fake = op(*fake_args)
    assert fake.shape == real.shape
    assert fake.dtype == real.dtype
    expected_dtype = {"tquantize": torch.int8, "tquantize_ternary": torch.int8, "tlinear": torch.int64,
                      "tconv2d": torch.int64, "trequantize": torch.int8, "tthreshold": torch.int8,
                      "trequantize_residual": torch.int8,
                      "tdequantize": torch.float32}[op._schema.name.removeprefix("tternary::")]
    assert real.dtype == expected_dtype


@settings(max_examples=30, deadline=None)
@given(case=conv_cases())
def test_tconv2d_fake_shape_matches_real(case):
    x, w, stride, padding, dilation, groups, pad_value = case
    o = w.shape[0]
    args = (t(x), t(w), t(np.zeros(o, np.int64)), t(np.ones((2, o), np.int32)),
            list(stride), list(padding), list(dilation), groups, pad_value)
    real = T.tconv2d(*args)
    mode = FakeTensorMode()
    with mode:
        fake = T.tconv2d(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])
    assert fake.shape == real.shape and fake.dtype == real.dtype == torch.int64


def test_tquantize_maps_nan_to_zero_and_clamps_infinities_as_the_reference():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30, 0.26])
    expected = ref.quantize(x.numpy(), 0.25)
    assert expected.tolist() == [0, 127, -127, 127, 1]  # by hand at scale 0.25
    assert ops.tquantize(x, 0.25, -127, 127).tolist() == expected.tolist()
