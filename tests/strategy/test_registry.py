"""The strategy registry: per (op, target) choice, recorded; knob configs per workload."""

import pytest
import torch
from tvm import relax

import tvm_ternary as tt
from tvm_ternary.errors import KernelConfigError
from tvm_ternary.relax import ops as rops
from tvm_ternary.strategy import generic, registry


def _call(k: int, n: int):
    x = relax.Var("x", relax.TensorType([2, k], "int8"))
    w = relax.Var("w", relax.TensorType([n, k], "int8"))
    b = relax.Var("b", relax.TensorType([n], "int64"))
    m = relax.Var("m", relax.TensorType([2, n], "int32"))
    return rops.call("tlinear", [x, w, b, m], [])


def test_first_applicable_implementation_is_chosen_and_recorded():
    only_avx2 = registry.Impl("t_avx2", lambda call, t: t.get("mcpu") == "znver3", None)
    anything = registry.Impl("t_any", lambda call, t: True, None)
    registry.register("t_op", only_avx2)
    registry.register("t_op", anything)
    try:
        with registry.target_scope({"kind": "llvm", "mcpu": "znver3"}) as chosen:
            assert registry.select("t_op", _call(4, 3)) is only_avx2
        with registry.target_scope({"kind": "llvm", "mcpu": "x86-64"}) as other:
            assert registry.select("t_op", _call(4, 3)) is anything
            assert registry.select("t_none", _call(4, 3)) is None
        assert chosen == [("t_op", "t_avx2")]
        assert other == [("t_op", "t_any"), ("t_none", registry.GENERIC)]
    finally:
        registry.unregister("t_op", only_avx2)
        registry.unregister("t_op", anything)


def test_knob_defaults_overrides_and_workload_specific_configs():
    impl = registry.Impl("t_tiled", lambda c, t: True, None, knobs={"tile": [8, 16, 32], "unroll": [0, 1]})
    small, big = _call(5, 3), _call(64, 32)
    with registry.target_scope({"kind": "llvm"}):
        assert registry.config(impl, small) == {"tile": 8, "unroll": 0}
    configs = {"t_tiled": {"unroll": 1}, ("t_tiled", registry.workload(big)): {"tile": 32}}
    with registry.target_scope({"kind": "llvm"}, configs):
        assert registry.config(impl, small) == {"tile": 8, "unroll": 1}
        assert registry.config(impl, big) == {"tile": 32, "unroll": 1}
    with registry.target_scope({"kind": "llvm"}, {"t_tiled": {"tiles": 4}}):
        with pytest.raises(KernelConfigError, match="t_tiled.*tiles"):
            registry.config(impl, small)


def test_knob_values_reach_the_emit_through_the_pipeline():
    from tvm_ternary.frontend import from_frozen
    from tvm_ternary.relax import passes

    from ..quant.helpers import frozen_pair, random_digits_model

    seen = []

    def emit(bb, call):
        cfg = registry.config(impl, call)
        seen.append(cfg["variant"])
        return bb.call_te(generic.tlinear, *call.args[:4], primfunc_name_hint=f"t_knob_{cfg['variant']}")

    impl = registry.Impl("t_knob", lambda c, t: True, emit, knobs={"variant": ["a", "b"]})
    x = torch.rand(2, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 51), "twn", x)
    saved = {n: registry._IMPLS.pop(n, []) for n in list(registry._IMPLS) if n.startswith("tlinear_")}
    registry.register("tlinear", impl, first=True)
    try:
        mod = from_frozen(frozen, (x,))
        _, state = passes.run(mod, tt.target.host_target(), {"t_knob": {"variant": "b"}})
    finally:
        registry.unregister("tlinear", impl)
        registry._IMPLS.update(saved)
    assert seen == ["b", "b", "b"] and state.kernels.count("tlinear: t_knob") == 3
