"""Layers the accelerator cannot run raise AcceleratorLayerError naming the layer and the
field (so the partitioner keeps them on the host); bad schedules and inputs raise too."""

import dataclasses

import numpy as np
import pytest

from tvm_ternary.errors import (AcceleratorLayerError, KernelConfigError, OverflowRiskError,
                                ShapeMismatchError, TernaryError)
from vta_ext import HwConfig
from vta_ext.compiler.lower import compile_layer
from vta_ext.compiler.schedule import Schedule

from .specs import layer_spec, trits

CFG = {n: HwConfig.load(n) for n in ("tiny", "default", "tiny_tact", "int8")}


def _conv(rng=None, **kw):
    rng = rng or np.random.default_rng(0)
    shape = kw.pop("input_shape", (1, 8, 6, 6))
    w = kw.pop("weight", trits(rng, (8, 8, 3, 3)))
    return layer_spec(rng, "conv2d", shape, w, **kw)


def _dense(rng=None, **kw):
    rng = rng or np.random.default_rng(0)
    return layer_spec(rng, "dense", (2, 10), trits(rng, (6, 10)), **kw)


CASES = [
    ("dual scales without dual accumulators", "int8", lambda: _dense(dual=True), "mult_n"),
    ("threshold without ternary_act", "int8", lambda: _dense(epilogue="threshold"), "epilogue"),
    ("requantize on a 2-bit activation config", "tiny_tact",
     lambda: _dense(input_ternary=True), "epilogue"),
    ("int8 input on a 2-bit activation config", "tiny_tact",
     lambda: _dense(epilogue="threshold"), "input_ternary"),
    ("padding beyond the LOAD pad field", "default",
     lambda: _conv(input_shape=(1, 8, 40, 40), weight=trits(np.random.default_rng(1), (8, 8, 17, 17)),
                   padding=(16, 16)), "padding"),
    ("padding wider than the kernel", "default", lambda: _conv(padding=(3, 0)), "padding"),
    ("non-ternary pad_value with ternary inputs", "tiny_tact",
     lambda: _conv(input_ternary=True, epilogue="threshold", pad_value=2, padding=(1, 1)),
     "pad_value"),
    ("groups that do not divide the channels", "default", lambda: _conv(groups=3), "groups"),
    ("zero stride", "default", lambda: _conv(stride=(0, 1)), "stride"),
    ("input smaller than the kernel", "default",
     lambda: _conv(input_shape=(1, 8, 2, 6)), "input_shape"),
    ("shift outside [1, 46]", "default",
     lambda: dataclasses.replace(_dense(), shift=np.full(6, 50)), "shift"),
    ("multiplier above 16 bits", "default",
     lambda: dataclasses.replace(_dense(), mult_p=np.full(6, 2**16), mult_n=np.full(6, 2**16)),
     "mult_p"),
    ("non-ternary weights", "default",
     lambda: dataclasses.replace(_dense(), weight=np.full((6, 10), 2, np.int8)), "weight"),
    ("a kernel too large for any tiling", "tiny",
     lambda: _conv(input_shape=(1, 4, 13, 13), weight=trits(np.random.default_rng(2), (4, 4, 12, 12))),
     "no tiling fits"),
]


@pytest.mark.parametrize("what,cfg,make,field", CASES, ids=[c[0] for c in CASES])
def test_unsupported_layers_raise_naming_layer_and_field(what, cfg, make, field):
    spec = make()
    with pytest.raises(AcceleratorLayerError) as err:
        compile_layer(spec, CFG[cfg])
    assert spec.name in str(err.value) and field in str(err.value)
    assert isinstance(err.value, TernaryError)


def test_accumulator_overflow_risk_is_refused():
    k = 2**31 // 128 + 1
    spec = layer_spec(np.random.default_rng(0), "dense", (1, k), np.ones((1, k), np.int8))
    with pytest.raises(OverflowRiskError, match=spec.name):
        compile_layer(spec, CFG["default"])


def test_schedule_that_does_not_fit_raises():
    big = _conv(input_shape=(1, 8, 14, 14))
    with pytest.raises(KernelConfigError, match="inp"):  # 2 x 14 x 14 > 256 input blocks
        compile_layer(big, CFG["tiny"], Schedule(2, 2, 12, 12, double_buffer=False))
    spec = _conv()
    with pytest.raises(KernelConfigError, match="tile_rows"):
        compile_layer(spec, CFG["default"], Schedule(1, 1, 5, 4))
    with pytest.raises(KernelConfigError, match="lowering"):
        compile_layer(spec, CFG["default"], lowering="halide")
    with pytest.raises(KernelConfigError, match="reuse"):
        compile_layer(spec, CFG["default"], Schedule(1, 1, 1, 1, reuse="both"))


def test_bad_inputs_and_outputs_raise():
    spec = _conv()
    cl = compile_layer(spec, CFG["default"])
    with pytest.raises(ShapeMismatchError, match="input shape"):
        cl.pack_input(np.zeros((1, 8, 6, 5), np.int8))
    with pytest.raises(ShapeMismatchError, match="dtype"):
        cl.pack_input(np.zeros((1, 8, 6, 6), np.float32))
    with pytest.raises(ShapeMismatchError, match="values"):
        cl.pack_input(np.full((1, 8, 6, 6), 300, np.int64))
    with pytest.raises(ShapeMismatchError, match="output region"):
        cl.unpack_output(b"\0" * 3)
    tact = CFG["tiny_tact"]
    tspec = _dense(input_ternary=True, epilogue="threshold")
    with pytest.raises(ShapeMismatchError, match="values"):
        compile_layer(tspec, tact).pack_input(np.full((2, 10), 2, np.int8))
