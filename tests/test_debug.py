"""tt.debug.compare finds the first layer and element where a compiled model leaves the
reference; a correct build reports nothing."""

import pytest
import torch

import tvm_ternary as tt
from tvm_ternary.strategy import generic, registry

from .quant.helpers import frozen_pair, random_digits_model


def test_correct_build_reports_nothing():
    x = torch.rand(5, 1, 8, 8)
    qm, frozen = frozen_pair(random_digits_model("cnn", 31), "twn", x)
    cm = tt.compile(frozen, (x,))
    assert tt.debug.compare(cm, frozen, x) is None
    assert tt.debug.compare(cm, qm, x) is None  # the fake-quant model: its frozen reference


def _buggy_tlinear(channel: int):
    """A 'kernel' that is right except one output channel's bias is off by one."""
    def emit(bb, call):
        x, w, bias, mult = call.args
        z = bb.emit(bb.call_te(generic.tlinear, x, w, bias, mult, primfunc_name_hint="buggy"))
        return bb.call_te(lambda t: _plus_on_channel(t, channel), z, primfunc_name_hint="buggy_fix")

    return registry.Impl("buggy", lambda call, target: int(call.args[1].ty.shape[0]) == 64, emit)


def _plus_on_channel(t, channel):
    from tvm import te, tirx

    return te.compute(t.shape, lambda i, j: t[i, j] + tirx.Select(j == channel, tirx.const(2**45, "int64"),
                                                                 tirx.const(0, "int64")))


@pytest.mark.parametrize("channel", [0, 37])
def test_first_wrong_layer_and_element_are_named(channel):
    x = torch.rand(3, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("cnn", 32), "twn", x)
    impl = _buggy_tlinear(channel)
    # only the body-level registry entry: keep fused kernels out of the way for this op
    saved = {n: registry._IMPLS.pop(n, []) for n in list(registry._IMPLS) if n.startswith("tlinear_")}
    registry.register("tlinear", impl, first=True)
    try:
        cm = tt.compile(frozen, (x,))
        found = tt.debug.compare(cm, frozen, x)
    finally:
        registry.unregister("tlinear", impl)
        registry._IMPLS.update(saved)
    # the digits CNN's first linear (64 outputs) is the wrong one
    bad = [l for l in frozen.frozen_layers() if l.kind == "linear" and l.w_t.shape[0] == 64][0]
    assert found is not None and found.layer == bad.layer_name
    assert found.index[0] == 0 and found.index[-1] == channel
    assert bad.layer_name in str(found)
