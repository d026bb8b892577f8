"""HwConfig.batch > 1 (no packaged config has it yet): the batch lanes of a block carry
several images (conv2d) or consecutive rows (dense); padding lanes are dropped."""

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vta_ext import HwConfig

from .specs import layer_input, layer_spec, run, trits

LANES = {b: dataclasses.replace(HwConfig.load("tiny"), name=f"tiny_b{b}", batch=b) for b in (2, 4)}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lanes=st.sampled_from([2, 4]), dense=st.booleans(), images=st.integers(1, 5),
       c=st.integers(1, 9), o=st.integers(1, 9), size=st.integers(3, 6), dual=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_batch_lanes_match_reference(lanes, dense, images, c, o, size, dual, seed):
    hw = LANES[lanes]
    rng = np.random.default_rng(seed)
    if dense:
        spec = layer_spec(rng, "dense", (images, c * size), trits(rng, (o, c * size)), dual=dual)
    else:
        spec = layer_spec(rng, "conv2d", (images, c, size, size + 1), trits(rng, (o, c, 3, 3)),
                          dual=dual, padding=(1, 1), stride=(1, 2))
    x = layer_input(rng, spec)
    y, _, _ = run(spec, hw, x)
    np.testing.assert_array_equal(y, spec.reference(x))
