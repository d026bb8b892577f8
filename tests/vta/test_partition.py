"""partition_for_vta: every fused ternary layer the HwConfig can run becomes one region whose
LayerSpec reproduces the frozen model's layer (checked with the numpy reference on the
layer's real input); the rest stays on the host with a named reason."""

import dataclasses

import numpy as np
import pytest
import torch

from tvm_ternary.errors import AcceleratorLayerError
from tvm_ternary.frontend import from_frozen
from tvm_ternary.relax import passes
from tvm_ternary.relax.legalize import legalize_by_strategy
from vta_ext import HwConfig
from vta_ext.compile import _layer_namer
from vta_ext.compiler.lower import compile_layer
from vta_ext.compiler.partition import partition_for_vta

from ..quant.helpers import frozen_integers, frozen_pair, random_digits_model

DEFAULT = HwConfig.load("default")


def _fused(frozen, x):
    mod = from_frozen(frozen, (x,))
    for step in passes.PIPELINE[:passes.PIPELINE.index(legalize_by_strategy)]:
        mod = step(mod, None)
    return mod


def _layer_io(frozen, x):
    """Each frozen layer's integer input and its output, by layer name."""
    inputs = frozen_integers(frozen, x)
    outputs, hooks = {}, []
    for layer in frozen.frozen_layers():
        hooks.append(layer.register_forward_hook(
            lambda mod, inp, out, name=layer.layer_name: outputs.__setitem__(name, out)))
    with torch.no_grad():
        frozen(x)
    for h in hooks:
        h.remove()
    return {n: (inputs[n].numpy(), outputs[n].numpy()) for n in inputs}


def _partition(frozen, x, hw, offload=None):
    specs = []

    def record(spec):
        compile_layer(spec, hw)  # the lowering judges what ``hw`` runs
        specs.append(spec)
        return f"test.partition.{len(specs)}"

    parts = partition_for_vta(_fused(frozen, x), offload or record, _layer_namer(frozen))
    return parts, specs


@pytest.mark.parametrize("kind,method,act,seed", [
    ("cnn", "twn", "int8", 1), ("cnn", "ttq", "ternary", 2), ("cnn", "absmean", "ternary_half", 3),
    ("mlp", "ttq", "int8", 4), ("mlp", "twn", "ternary", 5), ("mlp", "absmean", "int8", 6),
])
def test_specs_reproduce_each_frozen_layer(kind, method, act, seed):
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    _, frozen = frozen_pair(random_digits_model(kind, seed), method, x, act=act)
    parts, specs = _partition(frozen, x, DEFAULT)
    io = _layer_io(frozen, x)
    layers = {l.layer_name: l for l in frozen.frozen_layers()}
    float_out = [n for n, l in layers.items() if l.output_kind == "float"]
    # every layer is offloaded, the float head too (its accumulators; the host dequantizes)
    assert sorted(s.name for s in specs) == sorted(layers)
    assert parts.host_layers_names() == [] and float_out
    assert {s.name for s in specs if s.epilogue == "dequantize"} == set(float_out)
    for spec in specs:
        x_layer, y_layer = io[spec.name]
        assert spec.reference(x_layer).dtype == y_layer.dtype, spec.name
        assert np.array_equal(spec.reference(x_layer), y_layer), spec.name
        # every layer's input quantizer follows ``act``: trits in, or int8 in
        assert spec.input_ternary == act.startswith("ternary"), spec.name
    main = str(parts.mod["main"])
    assert main.count("R.call_dps_packed") == len(specs)
    assert "Composite" not in str(parts.mod)  # the composite functions are gone


def test_hw_without_dual_accumulators_keeps_dual_scale_layers_on_host():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    _, frozen = frozen_pair(random_digits_model("mlp", 7), "ttq", x)
    dual = {l.layer_name for l in frozen.frozen_layers()
            if not torch.equal(l.mult[0], l.mult[1]) and l.output_kind != "float"}
    assert dual  # TTQ learns separate positive / negative scales
    hw = dataclasses.replace(DEFAULT, dual_scale=False)
    parts, specs = _partition(frozen, x, hw)
    assert not dual & {s.name for s in specs}
    for name in dual:
        reason = parts.host_reason(name)
        assert "dual scales" in reason and "dual_scale" in reason and f"layer {name}:" in reason


def test_hw_without_ternary_activations_keeps_threshold_layers_on_host():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    _, frozen = frozen_pair(random_digits_model("cnn", 8), "twn", x, act="ternary")
    hw = dataclasses.replace(DEFAULT, ternary_act=False)
    parts, specs = _partition(frozen, x, hw)
    threshold = {l.layer_name for l in frozen.frozen_layers() if l.output_kind == "threshold"}
    assert threshold and not threshold & {s.name for s in specs}
    for name in threshold:
        assert "ternary_act" in parts.host_reason(name)


def test_two_bit_activation_hw_runs_only_ternary_in_layers_with_trit_or_float_outputs():
    """2-bit activations: trits in; trits out, or int32 accumulators (float heads), never int8."""
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    _, frozen = frozen_pair(random_digits_model("cnn", 9), "twn", x, act="ternary")
    hw = HwConfig.load("tiny_tact")
    assert hw.act_bits == 2
    parts, specs = _partition(frozen, x, hw)
    for layer in frozen.frozen_layers():
        offloaded = layer.layer_name in {s.name for s in specs}
        assert offloaded == (layer.output_kind in ("threshold", "float")), layer.layer_name
    assert all(s.input_ternary for s in specs)


def test_layer_the_lowering_refuses_runs_on_host_with_its_error():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(10))
    _, frozen = frozen_pair(random_digits_model("cnn", 10), "twn", x)
    first = frozen.frozen_layers()[0].layer_name

    def offload(spec):
        if spec.name == first:
            raise AcceleratorLayerError(f"layer {spec.name}: weights do not fit the wgt buffer")
        return f"test.refuse.{spec.name}"

    parts, _ = _partition(frozen, x, DEFAULT, offload)
    assert "lowering refused" in parts.host_reason(first)
    assert "wgt buffer" in parts.host_reason(first)
    # the refused layer is back as its fused op, for the CPU strategies
    assert "R.tternary_tconv2d_trequantize" in str(parts.mod["main"])


def test_non_constant_weights_stay_on_host():
    from tvm import relax

    from tvm_ternary.relax import ops

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([2, 8], "int8"))
    w = relax.Var("w", relax.TensorType([4, 8], "int8"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            call = ops.call("tlinear_trequantize", [
                x, w, relax.const(np.zeros(4, np.int64)), relax.const(np.full((2, 4), 1 << 14, np.int32)),
                relax.const(np.full(4, 15, np.int64))], [-127, 127, -1])
            out = bb.emit_output(bb.emit(call))
        bb.emit_func_output(out)
    parts = partition_for_vta(bb.get(), lambda spec: pytest.fail("offloaded"))
    (placement,) = parts.placements
    assert not placement.on_accelerator
    assert "not compile-time constants" in placement.reason
    assert placement.name == "tlinear_trequantize#0"


def _residual_module(rng):
    """main(x, r) = R.tternary_tconv2d_trequantize_residual(x, w, bias, mult, shift, r, mult_r,
    stride 1, pad 1, dilation 1, groups 1, pad_value 0, lo 0, hi 127, axis 1)."""
    from tvm import relax

    from tvm_ternary.relax import fused_ops, ops

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([2, 4, 5, 5], "int8"))
    r = relax.Var("r", relax.TensorType([2, 6, 5, 5], "int8"))
    consts = dict(w=rng.integers(-1, 2, (6, 4, 3, 3)).astype(np.int8),
                  bias=rng.integers(-2**20, 2**20, 6), mult=rng.integers(2**14, 2**15, (2, 6)),
                  shift=np.full(6, 17, np.int64), mult_r=rng.integers(0, 2**17, 6))
    with bb.function("main", [x, r]):
        with bb.dataflow():
            call = ops.call(fused_ops.RESIDUAL_FUSED, [
                x, relax.const(consts["w"]), relax.const(consts["bias"].astype(np.int64)),
                relax.const(consts["mult"].astype(np.int32)), relax.const(consts["shift"]), r,
                relax.const(consts["mult_r"].astype(np.int64))], [1, 1, 1, 1, 1, 1, 1, 0, 0, 127, 1])
            out = bb.emit_output(bb.emit(call))
        bb.emit_func_output(out)
    return bb.get(), consts


def test_fused_residual_layer_is_one_region_with_two_inputs():
    """The residual op's shortcut r becomes the region's second input; the spec carries
    Mr and r's shape; the compiled model (fsim) equals the numpy reference of the layer."""
    import tvm
    from tvm import relax

    from tvm_ternary import target as targets
    from tvm_ternary.quant import reference as ref
    from vta_ext.runtime import Session

    rng = np.random.default_rng(12)
    mod, c = _residual_module(rng)
    session = Session(DEFAULT, "fsim")
    parts = partition_for_vta(mod, session.offload)
    (placement,) = parts.placements
    assert placement.on_accelerator and placement.op == "tconv2d_trequantize_residual"
    spec = placement.spec
    assert spec.residual_shape == (2, 6, 5, 5) and np.array_equal(spec.residual_mult, c["mult_r"])
    assert (spec.lo, spec.hi) == (0, 127)
    assert 'R.call_dps_packed("tternary.vta.' in str(parts.mod["main"])
    executable, _, _ = passes.build(parts.mod, targets.resolve("cpu"))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = rng.integers(-128, 128, (2, 4, 5, 5)).astype(np.int8)
    r = rng.integers(-128, 128, (2, 6, 5, 5)).astype(np.int8)
    y = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(r)).numpy()
    acc_p, acc_n = ref.conv2d_acc(x, c["w"], (1, 1), (1, 1))  # independent of LayerSpec
    z = ref.scaled_acc(acc_p, acc_n, c["bias"], c["mult"][0], c["mult"][1], axis=1)
    want = ref.requantize(ref.add_residual(z, r, c["mult_r"], axis=1), c["shift"], 0, 127, axis=1)
    assert np.unique(want).size > 20
    np.testing.assert_array_equal(y, want)
    assert session.regions[0].calls == 1
