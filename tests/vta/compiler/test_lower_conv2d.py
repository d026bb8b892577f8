"""compile_layer on conv2d layers (stride, padding with pad_value, dilation, groups,
depthwise, ternary inputs, dual scales, several tiles): fsim == LayerSpec.reference."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vta_ext import HwConfig
from vta_ext.compiler.geometry import problem_of
from vta_ext.compiler.schedule import schedule_space

from .specs import conv_layers, conv_spec as _spec, layer_input, run

CFG = {n: HwConfig.load(n) for n in ("tiny", "default", "tiny_tact", "int8")}
SETTINGS = dict(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default", "tiny_tact", "int8"]), layer=conv_layers(),
       dual=st.booleans(), threshold=st.booleans(), block_zero=st.sampled_from([0.0, 0.6]),
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference(cfg, layer, dual, threshold, block_zero, seed):
    hw = CFG[cfg]
    rng = np.random.default_rng(seed)
    spec = _spec(rng, hw, layer, dual=dual, threshold=threshold, block_zero=block_zero)
    assume(min(spec.reference(np.zeros(spec.input_shape, np.int8)).shape) > 0)
    x = layer_input(rng, spec)
    y, _, _ = run(spec, hw, x)
    np.testing.assert_array_equal(y, spec.reference(x))


@pytest.mark.parametrize("cfg", ["tiny", "default"])
def test_depthwise(cfg):
    hw = CFG[cfg]
    rng = np.random.default_rng(11)
    layer = dict(groups=6, c=6, o=6, kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
                 padding=(1, 1), hw=(7, 5), batch=1)
    spec = _spec(rng, hw, layer, dual=True, threshold=False, pad_value=0)
    x = layer_input(rng, spec)
    y, _, _ = run(spec, hw, x)
    np.testing.assert_array_equal(y, spec.reference(x))


@pytest.mark.parametrize("dual", [False, True])
def test_conv2d_in_many_tiles(dual):
    """12 -> 10 channels, 13 x 11 pixels, 3 x 3, stride 2, padding 1 on `tiny`: the input
    image (4 channel blocks x 15 x 13 padded pixels) is larger than the input buffer, so
    rows, output channels and the reduction are all tiled, with padding at tile edges."""
    hw = CFG["tiny"]
    rng = np.random.default_rng(5)
    layer = dict(groups=1, c=12, o=10, kernel=(3, 3), stride=(2, 2), dilation=(1, 1),
                 padding=(1, 1), hw=(13, 11), batch=1)
    spec = _spec(rng, hw, layer, dual=dual, threshold=False, pad_value=-3)
    x = layer_input(rng, spec)
    y, cl, _ = run(spec, hw, x)
    p = cl.problem
    assert p.in_blocks * (p.h + 2) * (p.w + 2) > hw.inp_depth
    ref = spec.reference(x)
    assert np.unique(ref).size > 10
    np.testing.assert_array_equal(y, ref)


def _small_conv():
    return dict(groups=1, c=6, o=7, kernel=(3, 2), stride=(2, 1), dilation=(1, 2),
                padding=(1, 2), hw=(7, 6), batch=2)


SPACE = schedule_space(problem_of(_spec(np.random.default_rng(0), CFG["tiny"], _small_conv(),
                                        dual=True, threshold=False), CFG["tiny"]), CFG["tiny"])


@settings(max_examples=30, deadline=None)
@given(schedule=st.sampled_from(SPACE), seed=st.integers(0, 2**32 - 1))
def test_every_schedule_of_the_space_is_exact(schedule, seed):
    """The knobs change the program, never the result: any schedule the tuner may pick."""
    hw = CFG["tiny"]
    rng = np.random.default_rng(seed)
    spec = _spec(rng, hw, _small_conv(), dual=True, threshold=bool(seed % 2), block_zero=0.3)
    x = layer_input(rng, spec)
    y, cl, _ = run(spec, hw, x, schedule)
    assert cl.schedule == schedule
    np.testing.assert_array_equal(y, spec.reference(x))
