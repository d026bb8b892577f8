"""FoldBatchNorm: a host batch norm after a dequantize joins the dequantize's per-channel
scale and bias; checked against the float64 formula and on a residual network."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import tvm_ternary as tt
from tvm_ternary import models
from tvm_ternary.frontend import from_frozen
from tvm_ternary.relax import ops as rops
from tvm_ternary.relax.fold_batchnorm import fold_batchnorm
from tvm_ternary.relax.passes import CompileState
from tvm_ternary.target import host_target

from ..quant.helpers import frozen_pair, randomize_batchnorm


def _dequant_bn_module(rng, shape, axis, training=False):
    c = shape[axis]
    z = relax.Var("z", relax.TensorType(list(shape), "int64"))
    scale = (rng.random(c) * 1e-3 + 1e-4).astype("float32")
    bias = rng.standard_normal(c).astype("float32")
    gamma = (rng.standard_normal(c)).astype("float32")  # some negative
    beta = rng.standard_normal(c).astype("float32")
    mean = rng.standard_normal(c).astype("float32")
    var = (rng.random(c) + 0.1).astype("float32")
    bb = relax.BlockBuilder()
    with bb.function("main", [z]):
        with bb.dataflow():
            d = bb.emit(rops.call("tdequantize", [z, relax.const(scale), relax.const(bias)], [axis]))
            bn = bb.emit(relax.op.nn.batch_norm(d, *(relax.const(p) for p in (gamma, beta, mean, var)),
                                                axis=axis, epsilon=1e-5, training=training))
            out = bb.emit_output(relax.TupleGetItem(bn, 0))
        bb.emit_func_output(out)
    params = dict(scale=scale, bias=bias, gamma=gamma, beta=beta, mean=mean, var=var)
    return bb.get(), params


def _expected(z, p, axis):
    """Dequantize then batch norm, each in float64 (the unfused definition)."""
    view = [1] * z.ndim
    view[axis] = -1
    f = lambda k: p[k].astype(np.float64).reshape(view)  # noqa: E731
    y = z.astype(np.float64) * f("scale") + f("bias")
    return (y - f("mean")) / np.sqrt(f("var") + 1e-5) * f("gamma") + f("beta")


@pytest.mark.parametrize("shape,axis", [((2, 5, 3, 3), 1), ((4, 7), 1), ((3, 9), -1)])
def test_folded_dequantize_equals_dequantize_then_batchnorm(shape, axis):
    rng = np.random.default_rng(len(shape) * 10 + shape[1])
    mod, params = _dequant_bn_module(rng, shape, axis)
    state = CompileState(target=host_target())
    folded = fold_batchnorm(mod, state)
    assert "batch_norm" not in str(folded) and state.folded == ["nn.batch_norm"]
    z = rng.integers(-(2**20), 2**20, size=shape).astype("int64")
    ex = tvm.compile(folded, target=tvm.target.Target(host_target()))
    got = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(z)).numpy()
    # one float32 rounding of the folded parameters and of the result
    np.testing.assert_allclose(got, _expected(z, params, axis), rtol=2e-6, atol=1e-6)


def test_training_mode_batchnorm_is_not_folded():
    mod, _ = _dequant_bn_module(np.random.default_rng(0), (2, 4), 1, training=True)
    assert "batch_norm" in str(fold_batchnorm(mod, CompileState(target=host_target())))


def test_residual_network_batchnorms_fold_and_output_matches():
    torch.manual_seed(1)
    model = models.resnet18_cifar(width=0.125)
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    x = torch.rand(2, 3, 32, 32)
    _, frozen = frozen_pair(model, "twn", x)
    mod = from_frozen(frozen, (x,))
    n_bn = str(mod).count("R.nn.batch_norm(")
    assert n_bn > 0  # residual branches keep BN on the host after freeze
    state = CompileState(target=host_target())
    assert str(fold_batchnorm(mod, state)).count("R.nn.batch_norm(") == 0
    assert len(state.folded) == n_bn
    cm = tt.compile(frozen, (x,))
    assert cm.stats["folded"] == state.folded
    torch.testing.assert_close(cm(x), tt.quant.run_reference(frozen, x), rtol=1e-5, atol=1e-5)
