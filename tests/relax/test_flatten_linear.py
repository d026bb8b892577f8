"""FlattenLinearBatch: linears on [..., K] run on [rows, K] and reshape back, exactly."""

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_ternary.quant import reference as ref
from tvm_ternary.relax import ops as rops
from tvm_ternary.relax.flatten_linear import flatten_linear_batch
from tvm_ternary.relax.fuse_epilogue import fuse_epilogue
from tvm_ternary.relax.passes import run
from tvm_ternary.target import host_target


def _module(lead, k, n, rng):
    w = rng.integers(-1, 2, size=(n, k)).astype("int8")
    bias = rng.integers(-500, 500, size=n).astype("int64")
    mult = rng.integers(2**14, 2**15, size=(2, n)).astype("int32")
    shift = rng.integers(15, 22, size=n).astype("int32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(list(lead) + [k], "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            z = bb.emit(rops.call("tlinear", [x, relax.const(w), relax.const(bias), relax.const(mult)], []))
            out = bb.emit_output(rops.call("trequantize", [z, relax.const(shift)], [-127, 127, -1]))
        bb.emit_func_output(out)
    return bb.get(), (w, bias, mult, shift)


@pytest.mark.parametrize("lead,k,n", [((2, 5), 13, 7), ((3, 1, 4), 40, 9), ((6,), 11, 3)])
def test_flattened_linear_equals_reference(lead, k, n):
    rng = np.random.default_rng(k * n)
    mod, (w, bias, mult, shift) = _module(lead, k, n, rng)
    flat = flatten_linear_batch(fuse_epilogue(mod))
    text = str(flat)
    if len(lead) > 1:
        assert f"R.Tensor(({int(np.prod(lead))}, {k}), dtype=\"int8\")" in text and "R.reshape" in text
    else:
        assert "R.reshape" not in text
    legalized, _ = run(mod, host_target())
    ex = tvm.compile(legalized, target=tvm.target.Target(host_target()))
    x = rng.integers(-127, 128, size=tuple(lead) + (k,)).astype("int8")
    got = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    acc_p, acc_n = ref.linear_acc(x, w)
    z = ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1])
    assert np.array_equal(got, ref.requantize(z, shift, -127, 127, axis=-1))
