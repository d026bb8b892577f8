"""Random HwConfigs (block shapes, buffer depths down to a few tiles, dual/ternary features):
the lowering picks a tiling that fits, or raises AcceleratorLayerError, and is exact."""

import dataclasses

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tvm_ternary.errors import AcceleratorLayerError, HwConfigError
from vta_ext import HwConfig

from .specs import layer_input, layer_spec, run, trits

BASE = HwConfig.load("tiny")


@st.composite
def configs(draw):
    try:
        return dataclasses.replace(
            BASE, name="random", block_in=draw(st.sampled_from([4, 8, 16])),
            block_out=draw(st.sampled_from([4, 8, 16])),
            uop_buffer_bytes=2 ** draw(st.integers(7, 11)),
            inp_buffer_bytes=2 ** draw(st.integers(6, 11)),
            wgt_buffer_bytes=2 ** draw(st.integers(6, 11)),
            acc_buffer_bytes=2 ** draw(st.integers(8, 12)),
            par_buffer_bytes=2 ** draw(st.integers(9, 12)),
            dual_scale=draw(st.booleans()))
    except HwConfigError:
        return None


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(hw=configs(), dense=st.booleans(), c=st.integers(1, 20), o=st.integers(1, 20),
       h=st.integers(3, 8), k=st.integers(1, 3), stride=st.integers(1, 2),
       threshold=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_random_configs(hw, dense, c, o, h, k, stride, threshold, seed):
    if hw is None:
        event("invalid HwConfig")
        return
    rng = np.random.default_rng(seed)
    dual = hw.dual_scale and bool(seed % 2)
    epilogue = "threshold" if threshold else "requantize"
    if dense:
        spec = layer_spec(rng, "dense", (h, c * k), trits(rng, (o, c * k)), dual=dual,
                          epilogue=epilogue)
    else:
        spec = layer_spec(rng, "conv2d", (1, c, h, h + 1), trits(rng, (o, c, k, k)), dual=dual,
                          epilogue=epilogue, stride=(stride, stride), padding=(k // 2, k // 2))
    x = layer_input(rng, spec)
    try:
        y, _, _ = run(spec, hw, x)
    except AcceleratorLayerError as err:
        assert "no tiling fits" in str(err) and spec.name in str(err)
        event("no tiling fits")
        return
    event("compiled and ran")
    np.testing.assert_array_equal(y, spec.reference(x))
