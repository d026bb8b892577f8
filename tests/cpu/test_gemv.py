"""The whole-layer tensorized ternary GEMV (AVX2, AVX-512 VNNI) equals the integer reference."""

import numpy as np
import pytest
import torch
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tvm_ternary as tt
from tvm_ternary.cpu.gemv import KNOBS, GemvPlan, compute, schedule
from tvm_ternary.cpu.intrin_trit import AVX2, VNNI
from tvm_ternary.errors import KernelConfigError
from tvm_ternary.quant import reference as ref
from tvm_ternary.quant.frozen import FrozenTernaryLayer
from tvm_ternary.target import cpu_info, emulated_target

from tests.strategy.test_generic import cancelling_operands

from .linear_helpers import expected_linear, run_linear_kernel, top_multiplier_layer
from .targets import AVX2_TARGET

_FLAGS = cpu_info()["flags"]
# Each ISA with the LLVM CPU it is built for (AVX2 as the Zen 3 floor: znver3, no AVX-512);
# run only where this host can execute it.
KERNELS = [
    pytest.param(AVX2, "znver3", marks=pytest.mark.skipif("avx2" not in _FLAGS, reason="no AVX2")),
    pytest.param(VNNI, "cascadelake", marks=pytest.mark.skipif(
        not {"avx512_vnni", "avx512bw"} <= _FLAGS, reason="no AVX-512 VNNI")),
]


def _run(kernel, mcpu, x, w_t, mult, bias, dual=False, **knobs):
    n, k = w_t.shape
    plan = GemvPlan(kernel, x.shape[0], n, k, dual, **knobs)
    return run_linear_kernel(schedule(plan), mcpu, x, [plan.pack(w_t)], mult, bias)


def _random_layer(rng, batch, n, k, dual=False):
    w = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
    x = rng.integers(-128, 128, size=(batch, k)).astype(np.int8)
    m = rng.integers(2**14, 2**15, size=n)
    # dual: Mp and Mn drawn independently over the full int32 multiplier range
    mn = rng.integers(1, 2**31, size=n) if dual else m
    mp = rng.integers(1, 2**31, size=n) if dual else m
    return x, w, np.stack([mp, mn]).astype(np.int32), rng.integers(-2**40, 2**40, size=n).astype(np.int64)


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), n=st.integers(1, 40), k=st.integers(1, 1100), seed=st.integers(0, 2**31))
def test_gemv_matches_reference_on_random_shapes(kernel, mcpu, batch, n, k, seed):
    x, w, mult, bias = _random_layer(np.random.default_rng(seed), batch, n, k)
    assert np.array_equal(_run(kernel, mcpu, x, w, mult, bias), expected_linear(x, w, mult, bias))


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), n=st.integers(1, 40), k=st.integers(1, 1100), seed=st.integers(0, 2**31))
def test_dual_scale_gemv_matches_reference_on_random_shapes(kernel, mcpu, batch, n, k, seed):
    x, w, mult, bias = _random_layer(np.random.default_rng(seed), batch, n, k, dual=True)
    assert np.array_equal(_run(kernel, mcpu, x, w, mult, bias, dual=True), expected_linear(x, w, mult, bias))


def _block_names(plan):
    sch = tvm.s_tir.Schedule(compute(plan))
    return [sch.get(block).name_hint for block in sch.get_child_blocks(sch.get_sblock("root"))]


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
@settings(max_examples=8, deadline=None)
@given(batch=st.integers(1, 3), n=st.integers(1, 40), groups=st.integers(1, 9), dual=st.booleans(),
       split=st.booleans(), seed=st.integers(0, 2**31))
def test_whole_group_inputs_are_read_in_place(kernel, mcpu, batch, n, groups, dual, split, seed):
    # K a whole number of groups (and of k-chunks): the dot products read x itself, no
    # zero-padded copy; the split decode reads it the same way
    knobs = SPLIT if split and kernel is VNNI and not dual else {}
    plan = GemvPlan(kernel, batch, n, groups * kernel.group, dual, groups_per_call=1, **knobs)
    assert "pad" not in _block_names(plan)
    assert "pad" in _block_names(GemvPlan(kernel, batch, n, plan.k + 1, dual, groups_per_call=1, **knobs))
    x, w, mult, bias = _random_layer(np.random.default_rng(seed), batch, n, plan.k, dual)
    assert np.array_equal(_run(kernel, mcpu, x, w, mult, bias, dual, groups_per_call=1, **knobs),
                          expected_linear(x, w, mult, bias))


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
@pytest.mark.parametrize("dual", [False, True])
@pytest.mark.parametrize("n,k", [(4096, 4096), (37, 128 * 16 * 3 + 5)])
def test_gemv_matches_reference_on_large_shapes(kernel, mcpu, dual, n, k):
    x, w, mult, bias = _random_layer(np.random.default_rng(n + k), 1, n, k, dual)
    assert np.array_equal(_run(kernel, mcpu, x, w, mult, bias, dual), expected_linear(x, w, mult, bias))


@pytest.mark.skipif(not {"avx512_vnni", "avx512bw"} <= _FLAGS, reason="no AVX-512 VNNI")
@pytest.mark.parametrize("n,k", [(4096, 4096), (37, 128 * 16 * 3 + 5)])
def test_split_decode_matches_reference_on_large_shapes(n, k):
    x, w, mult, bias = _random_layer(np.random.default_rng(n + k), 1, n, k)
    assert np.array_equal(_run(VNNI, "cascadelake", x, w, mult, bias, **SPLIT), expected_linear(x, w, mult, bias))


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
@settings(max_examples=10, deadline=None)
@given(data=st.data(), n=st.integers(1, 70), k=st.integers(1, 3000), dual=st.booleans(), seed=st.integers(0, 2**31))
def test_gemv_matches_reference_for_every_knob_value(kernel, mcpu, data, n, k, dual, seed):
    # the tuner's space: every rows / k-chunk / unroll choice computes the same layer
    knobs = {name: data.draw(st.sampled_from(choices), label=name) for name, choices in KNOBS[kernel].items()}
    plan = GemvPlan.from_knobs(kernel, 1, n, k, dual, knobs)
    x, w, mult, bias = _random_layer(np.random.default_rng(seed), 1, n, k, dual)
    out = _run(kernel, mcpu, x, w, mult, bias, dual, rows=plan.rows, groups_per_call=plan.groups_per_call,
               unroll_rows=plan.unroll_rows, split=plan.split)
    assert np.array_equal(out, expected_linear(x, w, mult, bias))


SPLIT = {"split": True, "rows": 4}  # VNNI's field-split decode (cpu/intrin_split.py)


@pytest.mark.parametrize("kernel,mcpu,knobs", [pytest.param(*p.values, {}, marks=p.marks) for p in KERNELS] + [
    pytest.param(VNNI, "cascadelake", SPLIT, marks=KERNELS[1].marks)])
@pytest.mark.parametrize("w_val,x_val", [(1, 127), (1, -128), (-1, -128), (-1, 127)])
def test_saturation_worst_case(kernel, mcpu, knobs, w_val, x_val):
    # AVX2 adds 64 pair sums of (w + 1) * x in int16 before widening: with x = -128 and
    # w = +1 each int16 lane reaches exactly -32768. K spans several such chunks plus a tail.
    # The split decode multiplies the masked field 3 (128 for w = +1) by x = -128.
    n, k = 5, 128 * 16 * 2 + 77
    w = np.full((n, k), w_val, np.int8)
    x = np.full((2, k), x_val, np.int8)
    mult = np.full((2, n), 2**15 - 1, np.int32)
    bias = np.zeros(n, np.int64)
    out = _run(kernel, mcpu, x, w, mult, bias, **knobs)
    assert (out == (2**15 - 1) * w_val * x_val * k).all()  # hand-worked: every product is w x


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
@pytest.mark.parametrize("w_val,x_val", [(1, 127), (1, -128), (-1, -128), (-1, 127)])
def test_dual_scale_saturation_worst_case(kernel, mcpu, w_val, x_val):
    # Both accumulators at their extremes: all weights +1 (acc_p = acc = x k) or all -1
    # (acc_p = 0, acc_n = -x k), with the largest int32 multipliers, Mp != Mn.
    n, k = 5, 128 * 16 * 2 + 77
    w = np.full((n, k), w_val, np.int8)
    x = np.full((2, k), x_val, np.int8)
    mp, mn = 2**31 - 1, 2**31 - 7
    mult = np.array([[mp] * n, [mn] * n], np.int32)
    bias = np.full(n, -2**40, np.int64)
    out = _run(kernel, mcpu, x, w, mult, bias, dual=True)
    # hand-worked from z = Mp acc_p - Mn acc_n + bias, acc_p / acc_n = sum x[w = +1 / -1]
    expected = (mp if w_val == 1 else -mn) * x_val * k - 2**40
    assert (out == expected).all()


def _frozen_layer(x, n, seed):
    """One Linear(x's features, n) (weights seeded by ``seed``), TWN-ternarized, calibrated
    on ``x`` and frozen."""
    torch.manual_seed(seed)
    qm = tt.quant.ternarize(nn.Sequential(nn.Linear(x.shape[1], n)), "twn")
    tt.quant.calibrate(qm, [x])
    return tt.quant.freeze(qm)


@pytest.mark.skipif("avx2" not in _FLAGS, reason="no AVX2")
@pytest.mark.parametrize("batch,k,n", [(1, 200, 37), (1, 4096, 64), (1, 129, 9)])  # batch 1: GEMM takes larger
def test_compiled_layer_equals_frozen_and_reference(batch, k, n):
    x = torch.randn(batch, k)
    frozen = _frozen_layer(x, n, k + n)
    cm = tt.compile(frozen, (x,), target="cpu")
    # the layer (tlinear, fused with its dequantize epilogue by the pipeline) ran a GEMV kernel
    assert any(s.startswith("tlinear") and s.endswith("_gemv") for s in cm.stats["kernels"])
    y = cm(x)
    assert torch.equal(y, frozen(x)) and torch.equal(y, tt.quant.run_reference(frozen, x))


@pytest.mark.skipif("avx2" not in _FLAGS, reason="no AVX2")
@pytest.mark.parametrize("mcpu,kernel_name", [
    ("znver3", "avx2_pmaddubsw_gemv"),
    pytest.param("cascadelake", "avx512_vnni_gemv", marks=pytest.mark.skipif(
        not {"avx512_vnni", "avx512bw"} <= _FLAGS, reason="no AVX-512 VNNI")),
])
def test_compiled_ttq_mlp_with_int8_activations_runs_the_dual_gemv(mcpu, kernel_name):
    from tests.quant.helpers import frozen_pair, random_digits_model

    x = torch.rand(3, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 5), "ttq", x, act="int8")
    layers = [m for m in frozen.modules() if isinstance(m, FrozenTernaryLayer) and m.kind == "linear"]
    assert layers and all(not torch.equal(m.mult[0], m.mult[1]) for m in layers)  # really dual
    cm = tt.compile(frozen, (x,), target=emulated_target(mcpu))
    linears = [s for s in cm.stats["kernels"] if s.startswith("tlinear")]
    assert linears and all(s.endswith(f": {kernel_name}") for s in linears), cm.stats["kernels"]
    y = cm(x)
    assert torch.equal(y, frozen(x)) and torch.equal(y, tt.quant.run_reference(frozen, x))


@pytest.mark.skipif("avx2" not in _FLAGS, reason="no AVX2")
def test_avx2_floor_is_chosen_for_an_avx2_only_cpu():
    x = torch.randn(1, 300)
    frozen = _frozen_layer(x, 20, 1)
    cm = tt.compile(frozen, (x,), target=AVX2_TARGET)
    assert any(s.startswith("tlinear") and s.endswith(": avx2_pmaddubsw_gemv") for s in cm.stats["kernels"])
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))


@pytest.mark.parametrize("kernel", [AVX2, VNNI])
@pytest.mark.parametrize("dual", [False, True])
@pytest.mark.parametrize("batch,n,k,field", [(0, 4, 4, "batch"), (1, 0, 4, "out_features"),
                                             (1, 4, -3, "in_features")])
def test_bad_layer_shapes_are_named(kernel, dual, batch, n, k, field):
    with pytest.raises(KernelConfigError, match=f"gemv_{kernel.name}: {field} must be a positive int"):
        GemvPlan(kernel, batch, n, k, dual)


@pytest.mark.parametrize("knob,value,message", [
    ("rows", -2, "rows per block must be >= 1"),
    ("prefetch", -5, "prefetch distance must be >= 0 bytes"),
    ("groups_per_call", 17, r"groups_per_call must be in \[1, 16\]"),  # AVX2's int16 headroom
    ("groups_per_call", -1, r"groups_per_call must be in \[1, 16\]"),
])
def test_bad_knob_values_are_named(knob, value, message):
    with pytest.raises(KernelConfigError, match=f"gemv_avx2: {message}"):
        GemvPlan(AVX2, 1, 8, 300, **{knob: value})


@pytest.mark.parametrize("kernel,dual", [(AVX2, False), (VNNI, True)])
def test_split_decode_needs_vnni_and_a_symmetric_layer(kernel, dual):
    # pmaddubsw's int16 pair sums cannot hold 128 * 127 * 2; a dual layer would need 8
    # accumulators per row
    with pytest.raises(KernelConfigError, match=f"gemv_{kernel.name}: the field-split decode needs"):
        GemvPlan(kernel, 1, 8, 300, dual, split=True)


def test_k_chunks_split_the_groups_evenly():
    # hand-worked: K = 86 groups of 128 trits; 16 per call would leave a 6-group tail, so
    # 6 calls of 15 groups (90 padded groups, 4 of zero weights) instead
    plan = GemvPlan(AVX2, 1, 8, 86 * 128)
    assert (plan.groups, plan.chunk, plan.padded_groups) == (86, 15, 90)
    assert GemvPlan(AVX2, 1, 8, 32 * 128).chunk == 16 and GemvPlan(AVX2, 1, 8, 100).padded_groups == 1


@pytest.mark.skipif("avx2" not in _FLAGS, reason="no AVX2")
def test_tuner_knob_values_reach_the_compiled_kernel():
    # a tuner's config (registry configs) picks the rows / k-chunk of the compiled kernel
    import tvm_ternary.cpu.strategy  # noqa: F401  (registers the CPU kernels, as tt.compile does)
    from tvm_ternary.pipeline import import_model
    from tvm_ternary.relax import passes

    x = torch.randn(1, 700)
    frozen = _frozen_layer(x, 21, 3)
    mod, _, _ = import_model(frozen, (x,))
    configs = {"avx2_pmaddubsw_gemv": {"rows": 4, "groups_per_call": 2, "prefetch": 2048}}
    target = AVX2_TARGET
    executable, _, _ = passes.build(mod, target, configs)
    # the kernel's symbol names its configuration (rows 4, 2 groups per intrinsic call,
    # prefetch 2 KiB ahead, dequantize fused); not the defaults (rows 8, 6 groups, 1 KiB)
    assert executable.mod.implements_function("ternary_gemv_avx2_b1_n21_k700_r4_c2_pf2048_deq", query_imports=True)
    assert not executable.mod.implements_function("ternary_gemv_avx2_b1_n21_k700_r8_c6_pf1024_deq",
                                                  query_imports=True)
    vm = tvm.relax.VirtualMachine(executable, tvm.cpu())
    y = torch.from_dlpack(vm["main"](tvm.runtime.tensor(x.numpy())))
    assert torch.equal(y, tt.quant.run_reference(frozen, x))


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
@pytest.mark.parametrize("dual", [False, True])
@settings(max_examples=4, deadline=None)
@given(batch=st.integers(2, 3), n=st.integers(2, 37), k=st.integers(1, 2100), seed=st.integers(0, 2**31))
def test_top_of_16_bit_multiplier_range_matches_reference(kernel, mcpu, dual, batch, n, k, seed):
    x, w, mult, bias = top_multiplier_layer(np.random.default_rng(seed), batch, n, k, dual)
    assert np.array_equal(_run(kernel, mcpu, x, w, mult, bias, dual), expected_linear(x, w, mult, bias))


def _run_dequantized(kernel, mcpu, x, w_t, mult, bias, scale, shift, dual=False, **knobs):
    """The GEMV with the fused dequantize epilogue: float32 ``y [batch, N]``."""
    n, k = w_t.shape
    plan = GemvPlan(kernel, x.shape[0], n, k, dual, dequantize=True, **knobs)
    target = emulated_target(mcpu)
    lib = tvm.compile(schedule(plan), target=tvm.target.Target(target))
    out = tvm.runtime.tensor(np.zeros((x.shape[0], n), np.float32))
    lib(*[tvm.runtime.tensor(a) for a in (x, plan.pack(w_t), mult, bias, scale, shift)], out)
    return out.numpy()


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 7), n=st.integers(1, 45), k=st.integers(1, 1300), dual=st.booleans(),
       split=st.booleans(), seed=st.integers(0, 2**31))
def test_fused_dequantize_matches_reference(kernel, mcpu, batch, n, k, dual, split, seed):
    rng = np.random.default_rng(seed)
    x, w, mult, bias = _random_layer(rng, batch, n, k, dual)
    # scales of either sign over many magnitudes, so float64(z) * scale needs its rounding
    scale = (rng.choice([-1, 1], n) * 10.0 ** rng.uniform(-12, 2, n)).astype(np.float32)
    shift = rng.normal(0, 100, n).astype(np.float32)
    knobs = SPLIT if split and kernel is VNNI and not dual else {}
    expected = ref.dequantize(expected_linear(x, w, mult, bias), scale, shift)
    got = _run_dequantized(kernel, mcpu, x, w, mult, bias, scale, shift, dual, **knobs)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


@pytest.mark.skipif("avx2" not in _FLAGS, reason="no AVX2")
@pytest.mark.parametrize("mcpu,kernel_name", [
    ("znver3", "avx2_pmaddubsw_gemv"),
    pytest.param("cascadelake", "avx512_vnni_gemv", marks=pytest.mark.skipif(
        not {"avx512_vnni", "avx512bw"} <= _FLAGS, reason="no AVX-512 VNNI")),
])
@pytest.mark.parametrize("batch,k,n", [(1, 333, 41), (5, 1025, 17)])
def test_compiled_linear_dequantizes_inside_the_gemv(mcpu, kernel_name, batch, k, n):
    # the layer's float32 output comes from the GEMV itself: one kernel, no int64 z tensor
    # and no separate tdequantize function in the module
    x = torch.randn(batch, k)
    frozen = _frozen_layer(x, n, batch + k)
    cm = tt.compile(frozen, (x,), target=emulated_target(mcpu))
    assert f"tlinear_tdequantize: {kernel_name}" in cm.stats["kernels"]
    text = cm.executable.as_text()
    assert "_deq in:" in text and "tdequantize" not in text.replace("_deq in:", "")
    y = cm(x)
    assert torch.equal(y, frozen(x)) and torch.equal(y, tt.quant.run_reference(frozen, x))


@pytest.mark.parametrize("kernel,mcpu", KERNELS)
def test_fused_dequantize_rounds_as_the_reference_when_the_bias_cancels(kernel, mcpu):
    # z is the layer's bias (x = 0); the dequantize bias cancels most of z * scale, where an
    # FMA's single rounding would give another float32 (tests/strategy/test_generic.py)
    z, scale, shift = cancelling_operands()
    n, k = z.shape[1], 300
    x, w, mult = np.zeros((1, k), np.int8), np.ones((n, k), np.int8), np.ones((2, n), np.int32)
    got = _run_dequantized(kernel, mcpu, x, w, mult, z[0], scale, shift)
    assert np.array_equal(got, ref.dequantize(z, scale, shift))


@pytest.mark.parametrize("axis,fused", [(-1, True), (1, True), (0, False)])
def test_gemv_dequantizes_only_per_output_channel(axis, fused):
    # a dequantize along the batch axis (scale per row of x) is not the GEMV epilogue's
    # per-channel store: that call is left to the next implementation
    import tvm_ternary.cpu.strategy  # noqa: F401  (registers the CPU kernels, as tt.compile does)
    from tvm import relax
    from tvm_ternary.relax import ops as rops
    from tvm_ternary.strategy import registry

    rng = np.random.default_rng(0)
    n, k = 3, 300
    x = relax.Var("x", relax.TensorType([3, k], "int8"))
    consts = [relax.const(a) for a in (rng.integers(-1, 2, size=(n, k)).astype(np.int8),
                                       np.zeros(n, np.int64), np.ones((2, n), np.int32))]
    f32 = [relax.Var(name, relax.TensorType([n], "float32")) for name in ("scale", "shift")]
    call = rops.call("tlinear_tdequantize", [x, *consts, *f32], [axis])
    with registry.target_scope(AVX2_TARGET):
        impl = registry.lookup("tlinear_tdequantize", call)
    assert (impl is not None and impl.name == "avx2_pmaddubsw_gemv") == fused
