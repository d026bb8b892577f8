"""The fused residual epilogue ``R.tternary_tconv2d_trequantize_residual``: FuseEpilogue
builds it from a conv and its ``trequantize_residual``; compiled for the CPU (body kernel,
then the epilogue compute) and for a portable CPU it equals the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax

from tvm_ternary.cpu.strategy import has_avx2
from tvm_ternary.quant import reference as ref
from tvm_ternary.relax import fused_ops, passes
from tvm_ternary.relax import ops as rops
from tvm_ternary.relax.fuse_epilogue import fuse_epilogue
from tvm_ternary.target import resolve

PORTABLE = {"kind": "llvm", "mcpu": "x86-64", "num-cores": 1}


def _count(mod, name: str) -> int:
    return str(mod).count(f"R.tternary_{name}(")


def _case(rng, batch, cin, cout, size, k, stride, pad, relu):
    """A conv + residual-requantize problem with the numbers freeze produces: 16-bit
    multipliers, shifts around 20, Mr up to 2**24, z outputs inside and outside int8."""
    return dict(
        x=rng.integers(-127, 128, size=(batch, cin, size, size)).astype("int8"),
        w=rng.integers(-1, 2, size=(cout, cin, k, k)).astype("int8"),
        bias=rng.integers(-(2**22), 2**22, size=cout).astype("int64"),
        mult=np.repeat(rng.integers(2**14, 2**15, size=(1, cout)), 2, axis=0).astype("int32"),
        shift=rng.integers(17, 23, size=cout).astype("int32"),
        mult_r=rng.integers(0, 2**24, size=cout).astype("int64"),
        stride=stride, pad=pad, lo=0 if relu else -127)


def _out_hw(c):
    size, k = c["x"].shape[2], c["w"].shape[2]
    return ref.conv_out_size(size, k, c["stride"], c["pad"], 1)


def _module(c, body: str = "tconv2d"):
    """x, r -> body -> trequantize_residual (r a runtime input, as a block's shortcut is)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(list(c["x"].shape), "int8"))
    oh = _out_hw(c)
    r = relax.Var("r", relax.TensorType([c["x"].shape[0], c["w"].shape[0], oh, oh], "int8"))
    consts = [relax.const(c[n]) for n in ("w", "bias", "mult")]
    s, p = c["stride"], c["pad"]
    with bb.function("main", [x, r]):
        with bb.dataflow():
            z = bb.emit(rops.call(body, [x, *consts], [s, s, p, p, 1, 1, 1, 0]))
            y = bb.emit(rops.call("trequantize_residual", [z, relax.const(c["shift"]), r,
                                                           relax.const(c["mult_r"])], [c["lo"], 127, 1]))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _reference(c, r):
    acc_p, acc_n = ref.conv2d_acc(c["x"], c["w"], (c["stride"],) * 2, (c["pad"],) * 2)
    z = ref.scaled_acc(acc_p, acc_n, c["bias"], c["mult"][0], c["mult"][1], axis=1)
    return ref.requantize(ref.add_residual(z, r, c["mult_r"], axis=1), c["shift"], c["lo"], 127, axis=1)


def _run(mod, target, *inputs):
    executable, _, state = passes.build(mod, target)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in inputs]).numpy(), state


def test_conv_and_residual_requantize_fuse_into_one_op():
    c = _case(np.random.default_rng(0), 1, 3, 4, 5, 3, 1, 1, relu=True)
    fused = fuse_epilogue(_module(c))
    assert _count(fused, fused_ops.RESIDUAL_FUSED) == 1
    assert _count(fused, "tconv2d") == 0 and _count(fused, "trequantize_residual") == 0


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 2), cin=st.integers(1, 9),
       cout=st.integers(1, 11), size=st.integers(3, 9), k=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), relu=st.booleans())
def test_compiled_residual_conv_equals_reference(seed, batch, cin, cout, size, k, stride, relu):
    rng = np.random.default_rng(seed)
    c = _case(rng, batch, cin, cout, size, k, stride, k // 2, relu)
    oh = _out_hw(c)
    r = rng.integers(-127, 128, size=(batch, cout, oh, oh)).astype("int8")
    expected = _reference(c, r)
    got, state = _run(_module(c), resolve("cpu"), c["x"], r)
    np.testing.assert_array_equal(got, expected)
    # one record per layer: "tconv2d: <kernel>" when the body kernel runs and the
    # epilogue compute reads its z; "tconv2d_trequantize_residual: <kernel>" once a
    # kernel applies the residual epilogue in its store
    assert len(state.kernels) == 1
    op, impl = state.kernels[0].split(": ")
    assert op in ("tconv2d", fused_ops.RESIDUAL_FUSED)
    if has_avx2(resolve("cpu")):
        assert impl == "conv2d_gemm_tiled"


def test_portable_cpu_residual_conv_equals_reference():
    rng = np.random.default_rng(5)
    c = _case(rng, 2, 5, 7, 7, 3, 2, 1, relu=False)
    r = rng.integers(-127, 128, size=(2, 7, 4, 4)).astype("int8")
    with pytest.warns(UserWarning, match="no target-specific kernel for tconv2d"):
        got, state = _run(_module(c), PORTABLE, c["x"], r)
    np.testing.assert_array_equal(got, _reference(c, r))
    assert state.kernels == ["tconv2d: generic"]


def test_residual_after_a_linear_is_not_fused_and_stays_exact():
    rng = np.random.default_rng(7)
    k, n = 13, 6
    w = rng.integers(-1, 2, size=(n, k)).astype("int8")
    bias = rng.integers(-1000, 1000, size=n).astype("int64")
    mult = rng.integers(2**14, 2**15, size=(2, n)).astype("int32")
    shift = rng.integers(15, 20, size=n).astype("int32")
    mult_r = rng.integers(0, 2**20, size=n).astype("int64")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([3, k], "int8"))
    r = relax.Var("r", relax.TensorType([3, n], "int8"))
    with bb.function("main", [x, r]):
        with bb.dataflow():
            z = bb.emit(rops.call("tlinear", [x, relax.const(w), relax.const(bias), relax.const(mult)], []))
            y = bb.emit(rops.call("trequantize_residual", [z, relax.const(shift), r, relax.const(mult_r)],
                                  [-127, 127, -1]))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    mod = bb.get()
    assert _count(fuse_epilogue(mod), "tlinear") == 1
    xs = rng.integers(-127, 128, size=(3, k)).astype("int8")
    rs = rng.integers(-127, 128, size=(3, n)).astype("int8")
    acc_p, acc_n = ref.linear_acc(xs, w)
    z = ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1])
    expected = ref.requantize(ref.add_residual(z, rs, mult_r), shift)
    got, _ = _run(mod, resolve("cpu"), xs, rs)
    np.testing.assert_array_equal(got, expected)
