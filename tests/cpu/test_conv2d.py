"""tconv2d on the tiled GEMM equals the integer reference (conv2d_acc + scaled_acc)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tvm_ternary.cpu.conv2d import conv_plan
from tvm_ternary.cpu.gemm_kernel import X_BIAS
from tvm_ternary.cpu.gemm_tiles import KNOBS
from tvm_ternary.errors import KernelConfigError, ShapeMismatchError
from tvm_ternary.quant import reference as ref

from .gemm_helpers import host_isas, run_kernel

ISAS = host_isas()
pytestmark = pytest.mark.skipif(not ISAS, reason="host has no AVX2")


def _biased_nhwc(x, spec, cin_g, groups, padding, pad_value):
    """numpy: NHWC, +128, border = pad_value + 128, channels of each group padded."""
    b, c, h, w = x.shape
    ph, pw = padding
    cp = spec.x_group_stride
    xu = np.full(spec.x_shape, X_BIAS, np.uint8)
    xu[:, :, :, :] = X_BIAS  # channel padding meets zero weights: any value works
    body = np.full((b, h + 2 * ph, w + 2 * pw, c), pad_value, np.int16)
    body[:, ph:ph + h, pw:pw + w, :] = x.transpose(0, 2, 3, 1)
    for g in range(groups):
        xu[..., g * cp:g * cp + cin_g] = (body[..., g * cin_g:(g + 1) * cin_g] + X_BIAS).astype(np.uint8)
    return xu


def run_conv(x, w, mult, bias, stride, padding, dilation, groups, pad_value, isa, threads=2,
             epilogue="", clamp=(-127, 127), epilogue_operands=(), knobs=None):
    spec, consts = conv_plan(x.shape, w, mult, stride, padding, dilation, groups, isa, threads, knobs)
    spec = dataclasses.replace(spec, epilogue=epilogue, clamp=clamp)
    xu = _biased_nhwc(x, spec, w.shape[1], groups, padding, pad_value)
    return run_kernel(spec, xu, consts, bias, epilogue_operands)


def expected(x, w, mult, bias, stride, padding, dilation, groups, pad_value):
    """``mult``: M [out_ch] or [Mp, Mn] [2, out_ch]."""
    acc_p, acc_n = ref.conv2d_acc(x, w, stride, padding, dilation, groups, pad_value)
    mp, mn = (mult, mult) if np.ndim(mult) == 1 else mult
    return ref.scaled_acc(acc_p, acc_n, bias, mp, mn, axis=1)


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin_g = draw(st.integers(1, 40))
    depthwise = draw(st.booleans()) and groups == 1
    if depthwise:  # one input channel per group
        groups, cin_g = draw(st.integers(2, 9)), 1
    out_g = draw(st.integers(1, 11))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 13))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 13))
    return dict(batch=draw(st.integers(1, 3)), groups=groups, cin_g=cin_g, out_g=out_g, kh=kh, kw=kw,
                stride=stride, dilation=dilation, padding=padding, h=h, w=w,
                pad_value=draw(st.sampled_from([0, -1, 5])), seed=draw(st.integers(0, 2**31)),
                isa=draw(st.sampled_from(ISAS or ["avx2"])), dual=draw(st.booleans()),
                unroll=draw(st.sampled_from(KNOBS["unroll_steps"])), k_block=draw(st.sampled_from([0, 4, 9, 16])))


@settings(max_examples=30, deadline=None)
@given(conv_cases())
def test_random_convolutions_match_reference(case):
    rng = np.random.default_rng(case["seed"])
    g = case["groups"]
    x = rng.integers(-127, 128, (case["batch"], g * case["cin_g"], case["h"], case["w"])).astype(np.int8)
    w = rng.integers(-1, 2, (g * case["out_g"], case["cin_g"], case["kh"], case["kw"])).astype(np.int8)
    n = w.shape[0]
    mult = rng.integers(2**14, 2**15, (2, n) if case["dual"] else n)
    bias = rng.integers(-2**40, 2**40, n)
    args = (case["stride"], case["padding"], case["dilation"], g, case["pad_value"])
    got = run_conv(x, w, mult, bias, *args, case["isa"], knobs={"unroll_steps": case["unroll"], "k_block": case["k_block"]})
    assert np.array_equal(got, expected(x, w, mult, bias, *args))


@pytest.mark.parametrize("isa", ISAS)
def test_resnet_sized_layer(isa):
    rng = np.random.default_rng(3)
    x = rng.integers(-127, 128, (1, 64, 14, 15)).astype(np.int8)
    w = rng.integers(-1, 2, (72, 64, 3, 3)).astype(np.int8)
    mult, bias = rng.integers(2**14, 2**15, 72), rng.integers(-2**30, 2**30, 72)
    args = ((2, 2), (1, 1), (1, 1), 1, -1)
    assert np.array_equal(run_conv(x, w, mult, bias, *args, isa), expected(x, w, mult, bias, *args))


@settings(max_examples=20, deadline=None)
@given(conv_cases(), st.sampled_from(["trequantize", "tthreshold", "trequantize_residual", "tdequantize"]),
       st.sampled_from([(-127, 127), (0, 127)]))
def test_fused_store_epilogues_match_reference(case, epilogue, clamp):
    # the int8 / trit / float32 result written by the kernel's store == the reference's epilogue of z
    rng = np.random.default_rng(case["seed"])
    g = case["groups"]
    x = rng.integers(-127, 128, (case["batch"], g * case["cin_g"], case["h"], case["w"])).astype(np.int8)
    w = rng.integers(-1, 2, (g * case["out_g"], case["cin_g"], case["kh"], case["kw"])).astype(np.int8)
    n = w.shape[0]
    mult = rng.integers(2**14, 2**15, (2, n) if case["dual"] else n)
    bias = rng.integers(-2**20, 2**20, n)
    args = (case["stride"], case["padding"], case["dilation"], g, case["pad_value"])
    z = expected(x, w, mult, bias, *args)
    shift = rng.integers(15, 30, n)
    if epilogue == "trequantize":
        operands, want = [shift], ref.requantize(z, shift, *clamp, axis=1)
    elif epilogue == "tthreshold":
        t_lo = rng.integers(-2**24, 2**22, n)
        t_hi = t_lo + rng.integers(0, 2**24, n)
        operands, want = [t_lo, t_hi], ref.threshold(z, t_lo, t_hi, axis=1)
    elif epilogue == "tdequantize":
        scale = rng.uniform(-1e-3, 1e-3, n).astype(np.float32)
        shift_f = rng.uniform(-5, 5, n).astype(np.float32)
        operands, want = [scale, shift_f], ref.dequantize(z, scale, shift_f, axis=1)
    else:
        r = rng.integers(-127, 128, z.shape).astype(np.int8)
        mult_r = rng.integers(0, 2**22, n)
        operands = [shift, r, mult_r]
        want = ref.requantize(ref.add_residual(z, r, mult_r, axis=1), shift, *clamp, axis=1)
    got = run_conv(x, w, mult, bias, *args, case["isa"], epilogue=epilogue, clamp=clamp,
                   epilogue_operands=operands)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_unknown_epilogue_is_named():
    spec, _ = conv_plan((1, 4, 5, 5), np.zeros((4, 4, 3, 3), np.int8), np.ones(4), (1, 1), (1, 1), (1, 1), 1,
                        "avx2", 1)
    with pytest.raises(KernelConfigError, match="GemmSpec.epilogue: 'trelu'"):
        dataclasses.replace(spec, epilogue="trelu")


def test_channels_that_do_not_match_the_groups_are_named():
    w = np.zeros((6, 4, 3, 3), np.int8)
    with pytest.raises(ShapeMismatchError, match=r"tconv2d: input channels 6 / weight \(6, 4, 3, 3\) / groups 2"):
        conv_plan((1, 6, 8, 8), w, np.ones(6), (1, 1), (0, 0), (1, 1), 2, "avx2", 1)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dual", [False, True])
@pytest.mark.parametrize("epilogue", ["", "trequantize_residual"])
@settings(max_examples=3, deadline=None)
@given(cin=st.integers(1, 70), cout=st.integers(2, 19), hw=st.integers(3, 9), seed=st.integers(0, 2**31))
def test_top_of_16_bit_multiplier_range_matches_reference(isa, dual, epilogue, cin, cout, hw, seed):
    # M in [2**15, 2**16) (65535 on channel 0); image 0 all -127, channel 0's weights all +1
    # and channel 1's all -1: the accumulators' extremes; then the residual block's epilogue
    rng = np.random.default_rng(seed)
    x = rng.integers(-127, 128, (2, cin, hw, hw + 1)).astype(np.int8)
    x[0] = -127
    w = rng.integers(-1, 2, (cout, cin, 3, 3)).astype(np.int8)
    w[0], w[1] = 1, -1
    mult = rng.integers(2**15, 2**16, (2, cout))
    mult[:, 0] = 2**16 - 1
    mult = mult if dual else mult[0]
    bias = rng.integers(-2**30, 2**30, cout)
    args = ((1, 1), (1, 1), (1, 1), 1, -1)
    z = expected(x, w, mult, bias, *args)
    if not epilogue:
        assert np.array_equal(run_conv(x, w, mult, bias, *args, isa), z)
        return
    shift = rng.integers(24, 36, cout)  # |z| < 2**33: outputs mostly inside int8, not clamped
    r = rng.integers(-127, 128, z.shape).astype(np.int8)
    mult_r = rng.integers(0, 2**24, cout)
    want = ref.requantize(ref.add_residual(z, r, mult_r, axis=1), shift, axis=1)
    got = run_conv(x, w, mult, bias, *args, isa, epilogue=epilogue, epilogue_operands=[shift, r, mult_r])
    assert got.dtype == np.int8 and np.array_equal(got, want)
