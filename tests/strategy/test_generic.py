"""The portable TE computes equal the numpy reference on random, odd-sized shapes."""

from fractions import Fraction

import numpy as np
import pytest
import tvm
from tvm import te

from tvm_ternary.quant import reference as ref
from tvm_ternary.strategy import generic

TARGET = tvm.target.Target({"kind": "llvm"})


def _run(compute, inputs: list[np.ndarray], *scalars, target=TARGET):
    placeholders = [te.placeholder(a.shape, str(a.dtype), name=f"in{i}") for i, a in enumerate(inputs)]
    out = compute(*placeholders, *scalars)
    func = tvm.compile(te.create_prim_func(placeholders + [out]), target=target)
    result = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], str(out.dtype)))
    func(*[tvm.runtime.tensor(a) for a in inputs], result)
    return result.numpy()


def _ternary(rng, shape):
    return rng.integers(-1, 2, size=shape).astype(np.int8)


@pytest.mark.parametrize("seed", range(4))
def test_tlinear(seed):
    rng = np.random.default_rng(seed)
    b, k, n = rng.integers(1, 5), rng.integers(1, 70), rng.integers(1, 9)
    x = rng.integers(-127, 128, size=(b, k)).astype(np.int8)
    w = _ternary(rng, (n, k))
    bias = rng.integers(-(2**40), 2**40, size=n).astype(np.int64)
    mult = rng.integers(2**14, 2**15, size=(2, n)).astype(np.int32)
    acc_p, acc_n = ref.linear_acc(x, w)
    expected = ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1])
    assert np.array_equal(_run(generic.tlinear, [x, w, bias, mult]), expected)


@pytest.mark.parametrize("case", [
    # (batch, cin, h, w, cout, k, stride, pad, dilation, groups, pad_value)
    (1, 3, 7, 5, 4, 3, (1, 1), (1, 1), (1, 1), 1, 0),
    (2, 4, 9, 8, 6, 3, (2, 3), (2, 0), (2, 1), 2, -1),
    (1, 3, 5, 5, 3, 3, (1, 2), (0, 1), (1, 1), 3, 0),
    (1, 5, 6, 7, 7, 1, (1, 1), (0, 0), (1, 1), 1, -1),
])
def test_tconv2d(case):
    batch, cin, h, w_, cout, k, stride, pad, dil, groups, pad_value = case
    rng = np.random.default_rng(sum(case[:6]))
    x = rng.integers(-1 if pad_value else -127, 2 if pad_value else 128,
                     size=(batch, cin, h, w_)).astype(np.int8)
    w = _ternary(rng, (cout, cin // groups, k, k))
    bias = rng.integers(-1000, 1000, size=cout).astype(np.int64)
    mult = rng.integers(2**14, 2**15, size=(2, cout)).astype(np.int32)
    acc_p, acc_n = ref.conv2d_acc(x, w, stride, pad, dil, groups, pad_value)
    expected = ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1], axis=1)
    got = _run(generic.tconv2d, [x, w, bias, mult], stride, pad, dil, groups, pad_value)
    assert np.array_equal(got, expected)


def test_epilogues_and_quantizers():
    rng = np.random.default_rng(0)
    z = rng.integers(-(2**45), 2**45, size=(3, 5, 2, 2)).astype(np.int64)
    shift = rng.integers(1, 47, size=5).astype(np.int32)
    assert np.array_equal(_run(generic.trequantize, [z, shift], 0, 127, 1),
                          ref.requantize(z, shift, 0, 127, axis=1))
    t_lo = rng.integers(-(2**44), 0, size=5).astype(np.int64)
    t_hi = rng.integers(0, 2**44, size=5).astype(np.int64)
    assert np.array_equal(_run(generic.tthreshold, [z, t_lo, t_hi], 1),
                          ref.threshold(z, t_lo, t_hi, axis=1))
    scale = (rng.random(5) * 1e-9).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    assert np.array_equal(_run(generic.tdequantize, [z, scale, bias], 1),
                          ref.dequantize(z, scale, bias, axis=1))
    x = (rng.standard_normal((4, 33)) * 3).astype(np.float32)
    x[0, :4] = [0.25, -0.25, 0.75, 127.5 * 0.01]  # exact ties at scale 0.5 / 0.01
    for scale in (0.5, 0.01, 0.0371):
        assert np.array_equal(_run(generic.tquantize, [x], scale, -127, 127), ref.quantize(x, scale))
    assert np.array_equal(_run(generic.tquantize_ternary, [x], -0.3, 0.7), ref.quantize_ternary(x, -0.3, 0.7))


def test_quantize_maps_nan_to_zero_and_clamps_infinities_as_the_reference():
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 1e30, -1e30, 0.26], np.float32)
    expected = np.array([0, 0, 127, -127, 127, -127, 1], np.int8)  # by hand at scale 0.25
    assert np.array_equal(ref.quantize(x, 0.25), expected)
    assert np.array_equal(_run(generic.tquantize, [x], 0.25, -127, 127), expected)


def _top_mults(rng, n):
    """16-bit multipliers from the top of their range [2**15, 2**16), 65535 on channel 0."""
    mult = rng.integers(2**15, 2**16, size=(2, n))
    mult[:, 0] = 2**16 - 1
    return mult.astype(np.int32)


@pytest.mark.parametrize("seed", range(3))
def test_tlinear_and_tconv2d_at_the_top_of_the_16_bit_multiplier_range(seed):
    # extreme accumulators: inputs all -128, channel 0's weights all +1, channel 1's all -1
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(300, 2000)), int(rng.integers(2, 9))
    x = np.full((2, k), -128, np.int8)
    x[1] = rng.integers(-128, 128, size=k)
    w = _ternary(rng, (n, k))
    w[0], w[1] = 1, -1
    bias = rng.integers(-(2**40), 2**40, size=n).astype(np.int64)
    mult = _top_mults(rng, n)
    acc_p, acc_n = ref.linear_acc(x, w)
    assert np.array_equal(_run(generic.tlinear, [x, w, bias, mult]),
                          ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1]))
    cin, cout = int(rng.integers(20, 60)), n
    xc = np.full((1, cin, 5, 6), -128, np.int8)
    wc = _ternary(rng, (cout, cin, 3, 3))
    wc[0], wc[1] = 1, -1
    acc_p, acc_n = ref.conv2d_acc(xc, wc, (1, 1), (1, 1), (1, 1), 1, 0)
    assert np.array_equal(_run(generic.tconv2d, [xc, wc, bias, mult], (1, 1), (1, 1), (1, 1), 1, 0),
                          ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1], axis=1))


# (z, scale, bias) where the bias cancels most of z * scale: a fused multiply-add's single
# rounding gives another float32 than the reference's two (found by a search against exact
# rational arithmetic); shared with the GEMV's fused dequantize test.
CANCELLING = [(18008646664103, 7.162394046783447, -128985023381504.0),
              (-27327347474812, 0.018759464845061302, 512646414336.0),
              (-6732480513215, 1.782840513442352e-06, 12002939.0)]


def cancelling_operands():
    """``z [1, 3]`` int64, ``scale``, ``bias`` float32 of ``CANCELLING``."""
    z, scale, bias = zip(*CANCELLING)
    return np.array([z], np.int64), np.array(scale, np.float32), np.array(bias, np.float32)


def _fused_multiply_add(z, scale, bias) -> np.ndarray:
    return np.array([float(Fraction(int(a)) * Fraction(float(s)) + Fraction(float(b)))
                     for a, s, b in zip(z.ravel(), scale, bias)], np.float64).astype(np.float32)


def test_dequantize_is_not_contracted_into_an_fma():
    z, scale, bias = cancelling_operands()
    expected = ref.dequantize(z, scale, bias)
    assert not np.array_equal(_fused_multiply_add(z, scale, bias), expected[0])  # the cases are sharp
    fma_cpu = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})  # LLVM would contract here
    assert np.array_equal(_run(generic.tdequantize, [z, scale, bias], 1, target=fma_cpu), expected)
