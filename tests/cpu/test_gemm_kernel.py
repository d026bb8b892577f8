"""The register-tiled GEMM kernel equals the integer reference (linear_acc + scaled_acc)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tvm_ternary.cpu.gemm_kernel import AVX2_CHUNK, ISA_VECTOR_BYTES, LOCAL_BYTES, X_BIAS, GemmSpec
from tvm_ternary.cpu.gemm_linear import linear_plan
from tvm_ternary.cpu.gemm_tiles import BLOCK_TILE_BYTES, KNOBS, tile_shape
from tvm_ternary.errors import KernelConfigError, OverflowRiskError
from tvm_ternary.quant import reference as ref

from tests.strategy.test_generic import cancelling_operands

from .gemm_helpers import host_isas, run_kernel
from .linear_helpers import top_multiplier_layer

ISAS = host_isas()
pytestmark = pytest.mark.skipif(not ISAS, reason="host has no AVX2")


def _run_linear(x, w, mult, bias, isa, threads=2, knobs=None):
    spec, consts = linear_plan(w, mult, x.shape[0], isa, threads, knobs)
    xu = np.full((x.shape[0], spec.k_padded), X_BIAS, np.uint8)
    xu[:, :x.shape[1]] = (x.astype(np.int16) + X_BIAS).astype(np.uint8)
    return run_kernel(spec, xu, consts, bias)


def _expected(x, w, mult, bias):
    """``mult``: M [N] or [Mp, Mn] [2, N]."""
    acc_p, acc_n = ref.linear_acc(x, w)
    mp, mn = (mult, mult) if np.ndim(mult) == 1 else mult
    return ref.scaled_acc(acc_p, acc_n, bias, mp, mn)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(ISAS or ["avx2"]), st.integers(1, 23), st.integers(1, 41), st.integers(1, 300),
       st.integers(0, 2**31), st.sampled_from([0, 2, 4, 6]))
def test_dual_scales_match_reference(isa, m, n, k, seed, tile_rows):
    # TTQ / EC2T layers (Mp != Mn): the second accumulator on the +1 codes
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    x = rng.integers(-127, 128, (m, k)).astype(np.int8)
    mult = rng.integers(2**14, 2**15, (2, n))
    bias = rng.integers(-2**40, 2**40, n)
    got = _run_linear(x, w, mult, bias, isa, knobs={"tile_rows": tile_rows, "tile_pixels": 2})
    assert np.array_equal(got, _expected(x, w, mult, bias))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("x_val,w_val", [(127, 1), (-127, 1), (127, -1)])
def test_dual_worst_case_does_not_saturate(isa, x_val, w_val):
    k, n, m = AVX2_CHUNK * 4 * 2 + 52, 5, 3
    w = np.full((n, k), w_val, np.int8)
    x = np.full((m, k), x_val, np.int8)
    mult, bias = np.stack([np.full(n, 2**15 - 1), np.full(n, 2**14)]), np.full(n, 7)
    assert np.array_equal(_run_linear(x, w, mult, bias, isa), _expected(x, w, mult, bias))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(ISAS or ["avx2"]), st.integers(2, 23), st.integers(1, 41), st.integers(1, 300),
       st.integers(0, 2**31), st.sampled_from([1, 2]))
def test_random_shapes_match_reference(isa, m, n, k, seed, threads):
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    x = rng.integers(-127, 128, (m, k)).astype(np.int8)
    mult = rng.integers(2**14, 2**15, n)
    bias = rng.integers(-2**40, 2**40, n)
    assert np.array_equal(_run_linear(x, w, mult, bias, isa, threads), _expected(x, w, mult, bias))


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(ISAS or ["avx2"]), st.sampled_from(KNOBS["tile_rows"]), st.sampled_from(KNOBS["tile_pixels"]),
       st.sampled_from(KNOBS["splits"]), st.sampled_from(KNOBS["unroll_steps"]), st.integers(1, 30),
       st.integers(1, 70), st.integers(1, 200), st.integers(0, 2**31))
def test_every_knob_value_matches_reference(isa, rows, pixels, splits, unroll, m, n, k, seed):
    # the schedule template's knobs change tiling, unrolling and parallel axis, never the result
    knobs = {"tile_rows": rows, "tile_pixels": pixels, "splits": splits, "unroll_steps": unroll}
    r, b = tile_shape(isa, knobs)
    if r * b * ISA_VECTOR_BYTES[isa] > LOCAL_BYTES:
        return  # refused (test_too_many_accumulators_are_refused)
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    x = rng.integers(-127, 128, (m, k)).astype(np.int8)
    mult, bias = rng.integers(2**14, 2**15, n), rng.integers(-2**40, 2**40, n)
    assert np.array_equal(_run_linear(x, w, mult, bias, isa, knobs=knobs), _expected(x, w, mult, bias))


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([i for i in ISAS if i != "avx2"] or ["vnni512"]), st.integers(1, 30), st.integers(1, 70),
       st.integers(17, 700), st.sampled_from([4, 8, 12, 32]), st.booleans(), st.sampled_from([1, 2, 4]),
       st.integers(0, 2**31))
def test_k_blocks_match_reference(isa, m, n, k, k_block, dual, splits, seed):
    # VNNI decoding the weights in K blocks, the sums carried across blocks in memory
    if isa not in ISAS:
        pytest.skip("host has no AVX-512 VNNI")
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    x = rng.integers(-127, 128, (m, k)).astype(np.int8)
    mult = rng.integers(2**14, 2**16, (2, n) if dual else n)
    bias = rng.integers(-2**40, 2**40, n)
    knobs = {"k_block": k_block, "splits": splits, "tile_pixels": 3}
    spec, _ = linear_plan(w, mult, m, isa, 2, knobs)
    assert spec.k_block_steps <= k_block and spec.k_blocks > 1 or spec.k_padded // 4 <= k_block
    assert np.array_equal(_run_linear(x, w, mult, bias, isa, knobs=knobs), _expected(x, w, mult, bias))


def test_default_k_block_keeps_the_decoded_block_in_l1():
    w = np.zeros((4096, 4096), np.int8)
    big, _ = linear_plan(w, np.ones(4096), 32, "vnni512", 2)
    small, _ = linear_plan(w[:, :512], np.ones(4096), 32, "vnni512", 2)
    avx2, _ = linear_plan(w, np.ones(4096), 32, "avx2", 2)
    assert big.tile_rows * big.k_block_steps * big.vector_bytes <= BLOCK_TILE_BYTES and big.k_blocks > 1
    assert small.k_blocks == 1 and avx2.k_blocks == 1


@pytest.mark.parametrize("isa", ISAS)
def test_fused_dequantize_rounds_as_the_reference_when_the_bias_cancels(isa):
    # x = 0, so z is the layer's bias; the dequantize bias cancels most of z * scale, where
    # an FMA's single rounding would give another float32 (tests/strategy/test_generic.py)
    z, scale, shift = cancelling_operands()
    m, n, k = 9, z.shape[1], 64
    x, w = np.zeros((m, k), np.int8), np.ones((n, k), np.int8)
    spec, consts = linear_plan(w, np.ones(n), m, isa, 2)
    spec = dataclasses.replace(spec, epilogue="tdequantize")
    xu = np.full((m, spec.k_padded), X_BIAS, np.uint8)
    got = run_kernel(spec, xu, consts, z[0], [scale, shift])
    assert got.dtype == np.float32 and np.array_equal(got, ref.dequantize(np.repeat(z, m, 0), scale, shift))


def test_too_many_accumulators_are_refused():
    with pytest.raises(KernelConfigError, match="GemmSpec.tile_rows x tile_pixels: 4 x 8"):
        GemmSpec(isa="vnni512", groups=1, rows=64, pixels=8, k_padded=64, x_shape=(8, 64),
                 x_group_stride=0, out_shape=(8, 64), out_channel_stride=1, tile_rows=4, tile_pixels=8)


@pytest.mark.parametrize("isa", ISAS)
def test_large_layer_with_sparse_weights(isa):
    rng = np.random.default_rng(7)
    n, k, m = 70, 4096 + 96, 9
    w = (rng.integers(-1, 2, (n, k)) * (rng.random((n, k)) < 0.3)).astype(np.int8)
    x = rng.integers(-127, 128, (m, k)).astype(np.int8)
    mult, bias = np.full(n, 2**15 - 1), np.zeros(n, np.int64)
    assert np.array_equal(_run_linear(x, w, mult, bias, isa), _expected(x, w, mult, bias))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("x_val,w_val", [(127, 1), (127, -1), (-127, 1), (-127, -1)])
def test_worst_case_does_not_saturate(isa, x_val, w_val):
    # every pmaddubsw pair is +-510 (xu = 255) or +-2 and an int16 lane takes AVX2_CHUNK of
    # them (4 k each) before widening: K spans two full chunks and a partial one
    k = AVX2_CHUNK * 4 * 2 + 52
    n, m = 5, 3
    w = np.full((n, k), w_val, np.int8)
    x = np.full((m, k), x_val, np.int8)
    mult, bias = np.full(n, 2**15 - 1), np.full(n, -3)
    got = _run_linear(x, w, mult, bias, isa)
    assert (got == (2**15 - 1) * x_val * w_val * k - 3).all()
    assert np.array_equal(got, _expected(x, w, mult, bias))


@pytest.mark.parametrize("field,value,match", [
    ("isa", "sse2", "GemmSpec.isa"), ("tile_rows", 0, "GemmSpec.tile_rows"),
    ("tile_pixels", 0, "GemmSpec.tile_pixels"), ("k_padded", 40, "GemmSpec.k_padded"),
    ("x_group_stride", 6, "GemmSpec.x_group_stride"), ("out_shape", (2**16, 2**15), "GemmSpec.out_shape"),
    ("k_block", 4, "GemmSpec.k_block"), ("k_block", -1, "GemmSpec.k_block"),
])
def test_bad_config_is_named(field, value, match):
    fields = dict(isa="avx2", groups=1, rows=4, pixels=2, k_padded=64, x_shape=(2, 64),
                  x_group_stride=0, out_shape=(2, 4), out_channel_stride=1)
    fields[field] = value
    with pytest.raises(KernelConfigError, match=match):
        GemmSpec(**fields)


def test_reduction_too_long_for_int32_is_refused():
    k = 2**31 // 255 // 16 * 16 + 16
    with pytest.raises(OverflowRiskError, match="GemmSpec.k_padded"):
        GemmSpec(isa="avx2", groups=1, rows=1, pixels=1, k_padded=k, x_shape=(1, 16),
                 x_group_stride=0, out_shape=(1, 1), out_channel_stride=1)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dual", [False, True])
@settings(max_examples=4, deadline=None)
@given(m=st.integers(2, 9), n=st.integers(2, 41), k=st.integers(1, 1200), seed=st.integers(0, 2**31))
def test_top_of_16_bit_multiplier_range_matches_reference(isa, dual, m, n, k, seed):
    # M in [2**15, 2**16) (65535 on channel 0) times the extreme accumulators +-127 k
    x, w, mult, bias = top_multiplier_layer(np.random.default_rng(seed), m, n, k, dual, x_lo=-127)
    mult = mult if dual else mult[0]
    assert np.array_equal(_run_linear(x, w, mult, bias, isa), _expected(x, w, mult, bias))
