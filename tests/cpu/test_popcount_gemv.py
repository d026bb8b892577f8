"""Ternary x ternary bit-plane popcount kernel (compute + schedule + tensorize): equals the
integer reference for every knob value, and is chosen (only) for linears whose input the
dataflow proves ternary."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tvm_ternary as tt
from tvm_ternary.cpu.popcount_gemv import (KNOBS_AVX2, KNOBS_VPOPCNTDQ, WORDS, WORDS_VPOPCNTDQ,
                                           make_popcount_gemv, weight_planes)
from tvm_ternary.quant.popcount import dot_sign_magnitude
from tvm_ternary.target import cpu_info

from ..quant.helpers import frozen_pair, random_digits_model
from .linear_helpers import expected_linear, run_linear_kernel, top_multiplier_layer
from .targets import AVX2_TARGET

_FLAGS = cpu_info()["flags"]
pytestmark = pytest.mark.skipif("avx2" not in _FLAGS, reason="host has no AVX2")
# (LLVM CPU, uint64 words per vector): the AVX2 floor (Zen 3, the CI machine), and 512-bit
# vpopcntq where present
MCPUS = [("znver3", WORDS)] + ([("icelake-server", WORDS_VPOPCNTDQ)] if "avx512_vpopcntdq" in _FLAGS else [])


def _run(x, w_t, mult, bias, dual, mcpu=("znver3", WORDS), rows=1, chunk=1):
    n, k = w_t.shape
    cpu, words = mcpu
    return run_linear_kernel(make_popcount_gemv(x.shape[0], n, k, dual, words, rows, chunk), cpu, x,
                             [weight_planes(w_t, dual, words, rows, chunk)], mult, bias)


@pytest.mark.parametrize("mcpu", MCPUS)
@pytest.mark.parametrize("dual", [False, True])
@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 3), n=st.integers(1, 30), k=st.integers(1, 3000),
       zero_frac=st.sampled_from([0.0, 0.5, 0.95]), rows=st.sampled_from(KNOBS_AVX2["rows"]),
       other=st.booleans(), seed=st.integers(0, 2**31))
def test_popcount_gemv_matches_reference(mcpu, dual, batch, n, k, zero_frac, rows, other, seed):
    # every knob value of the template: rows per step (also not dividing n); on AVX2 the
    # steps per intrinsic call (chunk, shrunk to balance odd K), on VPOPCNTDQ 4 words
    cpu, words = mcpu
    chunk = 1
    if words == WORDS:
        chunk = KNOBS_AVX2["chunk"][seed % len(KNOBS_AVX2["chunk"])]
    elif other:
        mcpu = (cpu, WORDS)
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
    w[rng.random((n, k)) < zero_frac] = 0
    x = rng.integers(-1, 2, size=(batch, k)).astype(np.int8)
    mult = rng.integers(2**14, 2**15, size=(2, n)).astype(np.int32)
    if not dual:
        mult[1] = mult[0]
    bias = rng.integers(-2**40, 2**40, size=n).astype(np.int64)
    assert np.array_equal(_run(x, w, mult, bias, dual, mcpu, rows, chunk), expected_linear(x, w, mult, bias))


def test_knob_spaces_are_valid_kernel_configs():
    assert set(KNOBS_AVX2) == {"chunk", "rows"} and set(KNOBS_VPOPCNTDQ) == {"words", "rows"}
    for rows in KNOBS_AVX2["rows"]:
        for chunk in KNOBS_AVX2["chunk"]:
            make_popcount_gemv(1, 5, 5000, True, WORDS, rows, chunk)  # schedules without error
        for words in KNOBS_VPOPCNTDQ["words"]:
            make_popcount_gemv(1, 5, 5000, True, words, rows)


def test_chunk_is_balanced_so_padding_stays_under_a_step_per_call():
    from tvm_ternary.cpu.popcount_gemv import balanced_chunk, padded_words

    # worked by hand: K = 1024 is 16 words = 4 steps of 4: chunk 8 becomes one call of 4
    assert balanced_chunk(1024, WORDS, 8) == 4 and padded_words(1024, WORDS, 8) == 16
    # K = 4097: 65 words = 17 steps; chunk 4 -> 5 calls of 4 steps (80 words)
    assert balanced_chunk(4097, WORDS, 4) == 4 and padded_words(4097, WORDS, 4) == 80
    for k in range(1, 9000, 97):
        for chunk in KNOBS_AVX2["chunk"]:
            steps = -(-k // 256)
            c = balanced_chunk(k, WORDS, chunk)
            calls = -(-steps // c)
            assert 1 <= c <= chunk and padded_words(k, WORDS, chunk) == calls * c * WORDS
            assert calls * c - steps < calls  # under one padding step per call


@pytest.mark.parametrize("mcpu", MCPUS)
@pytest.mark.parametrize("dual", [False, True])
def test_extremes_and_agreement_with_the_bitplane_reference(mcpu, dual):
    # all products +1 (acc = K), all -1 (acc = -K), and a random row checked against the
    # sign-magnitude popcount reference of quant.popcount as well
    k = 64 * 9 + 13
    rng = np.random.default_rng(1)
    w = np.stack([np.ones(k), -np.ones(k), rng.integers(-1, 2, k)]).astype(np.int8)
    x = np.ones((2, k), np.int8)
    x[1] = rng.integers(-1, 2, k)
    mult = np.ones((2, 3), np.int32)
    if dual:
        mult[1] = 2
    bias = np.zeros(3, np.int64)
    out = _run(x, w, mult, bias, dual, mcpu)
    assert out[0, 0] == k and out[0, 1] == (-k if not dual else -2 * k)  # z = -Mn * acc_n
    acc, _ = dot_sign_magnitude(x, w)
    if not dual:
        assert np.array_equal(out, acc)
    assert np.array_equal(out, expected_linear(x, w, mult, bias))


@pytest.mark.parametrize("kind,method,act", [("mlp", "twn", "ternary"), ("mlp", "ttq", "ternary"),
                                             ("cnn", "twn", "ternary_half")])
def test_ternary_activation_model_uses_popcount_and_is_exact(kind, method, act):
    x = torch.rand(16, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model(kind, 11), method, x, act=act)
    # batch 1 (the GEMV regime; batched GEMM kernels may take larger batches)
    cm = tt.compile(frozen, (x[:1],), target="cpu")
    linears = [k for k in cm.stats["kernels"] if k.startswith("tlinear")]
    # every linear after the first sees a threshold's output; the first sees the
    # model's own tquantize_ternary: all of them are ternary x ternary
    assert linears and all(k.endswith("_popcount_gemv") for k in linears), cm.stats["kernels"]
    for i in range(len(x)):
        y = cm(x[i:i + 1])
        assert torch.equal(y, frozen(x[i:i + 1])) and torch.equal(y, tt.quant.run_reference(frozen, x[i:i + 1]))


def _build_with_configs(frozen, x, configs):
    from tvm_ternary.pipeline import CompiledModel, import_model
    from tvm_ternary.relax import passes

    import tvm_ternary.cpu.strategy  # noqa: F401  (registers the CPU kernels)

    target = AVX2_TARGET
    mod, _, _ = import_model(frozen, (x,))
    executable, legalized, _ = passes.build(mod, target, configs)
    return CompiledModel(executable, target, [list(x.shape)], legalized, frozen), legalized


def test_tuned_knobs_reach_the_kernel_through_the_registry():
    from tvm_ternary.errors import KernelConfigError

    x = torch.rand(4, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 13), "ttq", x, act="ternary")
    cm, legalized = _build_with_configs(frozen, x[:1], {"avx2_popcount_gemv": {"rows": 4, "chunk": 4}})
    kernels = [gv.name_hint for gv in legalized.functions if "popcount" in gv.name_hint]
    assert kernels and all("_v4_r4_c" in name for name in kernels), kernels
    for i in range(len(x)):
        assert torch.equal(cm(x[i:i + 1]), tt.quant.run_reference(frozen, x[i:i + 1]))
    with pytest.raises(KernelConfigError, match="'avx2_popcount_gemv' has no knob 'unroll'"):
        _build_with_configs(frozen, x[:1], {"avx2_popcount_gemv": {"unroll": 2}})


def test_int8_activation_model_does_not_use_popcount():
    x = torch.rand(16, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 12), "twn", x, act="int8")
    cm = tt.compile(frozen, (x[:1],), target="cpu")
    assert not any("popcount" in k for k in cm.stats["kernels"])
    assert torch.equal(cm(x[:1]), frozen(x[:1]))


def test_bad_kernel_configs_and_weights_are_named():
    from tvm_ternary.errors import KernelConfigError, PackError

    with pytest.raises(KernelConfigError, match="popcount_gemv: words per vector must be 4 or 8, got 3"):
        make_popcount_gemv(1, 4, 64, False, words=3)
    with pytest.raises(KernelConfigError, match="popcount_gemv: in_features must be a positive int"):
        make_popcount_gemv(1, 4, 0, False)
    with pytest.raises(KernelConfigError, match="popcount_gemv: rows per step must be a positive int, got 0"):
        make_popcount_gemv(1, 4, 64, False, rows=0)
    with pytest.raises(KernelConfigError, match="chunk must be 1, or in \\[2, 31\\] with 4 words per step, "
                                                "got chunk 4 with 8 words"):
        make_popcount_gemv(1, 4, 64, False, words=8, chunk=4)
    with pytest.raises(PackError, match=r"index \(0, 1\) is 2"):
        weight_planes(np.array([[0, 2, 1]]), dual=False)


@pytest.mark.parametrize("mcpu", MCPUS)
@pytest.mark.parametrize("dual", [False, True])
@settings(max_examples=4, deadline=None)
@given(batch=st.integers(2, 3), n=st.integers(2, 30), rows=st.sampled_from(KNOBS_AVX2["rows"]),
       # beyond 32768 the product 65535 * acc leaves int32
       k=st.one_of(st.integers(1, 3000), st.integers(33000, 40000)),
       seed=st.integers(0, 2**31))
def test_top_of_16_bit_multiplier_range_matches_reference(mcpu, dual, batch, n, k, rows, seed):
    # ternary inputs: the accumulator extremes are +-k (all -1, all +1 on the +-1 channels)
    x, w, mult, bias = top_multiplier_layer(np.random.default_rng(seed), batch, n, k, dual, x_lo=-1, x_hi=1)
    assert np.array_equal(_run(x, w, mult, bias, dual, mcpu, rows), expected_linear(x, w, mult, bias))
