"""FuseEpilogue: each ternary layer becomes one fused op; the fused legalization prefers a
fused kernel, else the body's kernel + the epilogue compute; results stay exact."""

import numpy as np
import pytest
import torch
from tvm import relax

import tvm_ternary as tt
from tvm_ternary import models
from tvm_ternary.frontend import from_frozen
from tvm_ternary.relax import ops as rops
from tvm_ternary.relax.fuse_epilogue import fuse_epilogue
from tvm_ternary.strategy import generic, registry

from ..quant.helpers import frozen_pair, random_digits_model


def _count(mod, name: str) -> int:
    return str(mod).count(f"R.tternary_{name}(")


@pytest.mark.parametrize("kind,act", [("cnn", "int8"), ("cnn", "ternary"), ("mlp", "ternary")])
def test_every_layer_becomes_one_fused_op(kind, act):
    x = torch.rand(3, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model(kind, 21), "twn", x, act=act)
    mod = from_frozen(frozen, (x,))
    fused = fuse_epilogue(mod)
    layers = frozen.frozen_layers()
    for body in ("tlinear", "tconv2d"):
        assert _count(fused, body) == 0
    names = [f"{l.kind if l.kind == 'conv2d' else 'linear'}" for l in layers]
    epilogue = {"requant": "trequantize", "threshold": "tthreshold", "float": "tdequantize"}
    expected = {}
    for layer, kind_ in zip(layers, names):
        key = f"t{kind_}_{epilogue[layer.output_kind]}"
        expected[key] = expected.get(key, 0) + 1
    for key, n in expected.items():
        assert _count(fused, key) == n, key
    for e in ("trequantize", "tthreshold", "tdequantize"):
        assert _count(fused, e) == 0


def _relax_layer(z_users: int):
    """x -> tlinear -> trequantize (and, if z_users == 2, also tdequantize of the same z)."""
    rng = np.random.default_rng(z_users)
    k, n = 13, 7
    w = rng.integers(-1, 2, size=(n, k)).astype("int8")
    bias = rng.integers(-1000, 1000, size=n).astype("int64")
    mult = rng.integers(2**14, 2**15, size=(2, n)).astype("int32")
    shift = rng.integers(15, 20, size=n).astype("int32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([3, k], "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            z = bb.emit(rops.call("tlinear", [x, relax.const(w), relax.const(bias), relax.const(mult)], []))
            q = bb.emit(rops.call("trequantize", [z, relax.const(shift)], [-127, 127, -1]))
            outs = [q]
            if z_users == 2:
                outs.append(bb.emit(rops.call("tdequantize", [z, relax.const(np.ones(n, "float32")),
                                                              relax.const(np.zeros(n, "float32"))], [-1])))
            out = bb.emit_output(relax.Tuple(outs) if len(outs) > 1 else q)
        bb.emit_func_output(out)
    return bb.get()


def test_body_with_two_users_is_not_fused():
    mod = fuse_epilogue(_relax_layer(z_users=2))
    assert _count(mod, "tlinear") == 1 and _count(mod, "tlinear_trequantize") == 0
    one = fuse_epilogue(_relax_layer(z_users=1))
    assert _count(one, "tlinear") == 0 and _count(one, "tlinear_trequantize") == 1


def _generic_fused(bb, call):
    """A 'fused kernel' for the test: the reference-checked generic computes in one TE
    function (what a real fused kernel must equal)."""
    x, w, bias, mult, shift = call.args[:5]
    lo, hi, axis = (a.value for a in call.args[5:])
    return bb.call_te(lambda *t: generic.trequantize(generic.tlinear(*t[:4]), t[4], lo, hi, axis),
                      x, w, bias, mult, shift, primfunc_name_hint="test_fused")


def test_fused_kernel_is_preferred_when_registered():
    x = torch.rand(4, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 22), "twn", x)
    impl = registry.Impl("test_fused_requant", lambda call, target: True, _generic_fused)
    registry.register("tlinear_trequantize", impl, first=True)
    try:
        cm = tt.compile(frozen, (x,))
    finally:
        registry.unregister("tlinear_trequantize", impl)
    assert cm.stats["kernels"].count("tlinear_trequantize: test_fused_requant") == 2
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    # without it: the target's own kernels (fused or body-only), one record per layer
    plain = tt.compile(frozen, (x,))
    assert not any("test_fused" in k for k in plain.stats["kernels"])
    assert sum(k.startswith("tlinear") for k in plain.stats["kernels"]) == 3
    assert torch.equal(plain(x), tt.quant.run_reference(frozen, x))


def test_without_a_fused_kernel_the_body_kernel_and_epilogue_compute_are_used():
    x = torch.rand(4, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 23), "twn", x)
    body = registry.Impl("test_body", lambda call, target: True,
                         lambda bb, call: bb.call_te(generic.tlinear, *call.args[:4],
                                                     primfunc_name_hint="test_body"))
    registry.register("tlinear", body, first=True)
    saved = {n: registry._IMPLS.pop(n, []) for n in list(registry._IMPLS) if n.startswith("tlinear_")}
    try:
        cm = tt.compile(frozen, (x,))
    finally:
        registry.unregister("tlinear", body)
        registry._IMPLS.update(saved)
    assert cm.stats["kernels"].count("tlinear: test_body") == 3
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))


def test_resnet_layers_fuse_and_stay_exact_on_integer_paths():
    torch.manual_seed(3)
    model = models.resnet18_cifar(width=0.0625)
    x = torch.rand(2, 3, 32, 32)
    _, frozen = frozen_pair(model.eval(), "ttq", x, act="ternary")
    mod = fuse_epilogue(from_frozen(frozen, (x,)))
    assert _count(mod, "tconv2d") == 0 and _count(mod, "tlinear") == 0
    cm = tt.compile(frozen, (x,))
    torch.testing.assert_close(cm(x), tt.quant.run_reference(frozen, x), rtol=1e-5, atol=1e-6)
