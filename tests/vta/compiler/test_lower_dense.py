"""compile_layer on dense layers: fsim(program) == LayerSpec.reference, bit for bit."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vta_ext import HwConfig

from .specs import layer_input, layer_spec, run, trits, zero_blocks

CFG = {n: HwConfig.load(n) for n in ("tiny", "default", "tiny_tact", "int8")}
SETTINGS = dict(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default", "tiny_tact", "int8"]), rows=st.integers(1, 9),
       k=st.integers(1, 45), n=st.integers(1, 40), dual=st.booleans(),
       threshold=st.booleans(), relu=st.booleans(), p_zero=st.sampled_from([0.0, 0.4, 0.9]),
       block_zero=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 2**32 - 1))
def test_dense_matches_reference(cfg, rows, k, n, dual, threshold, relu, p_zero, block_zero, seed):
    hw = CFG[cfg]
    rng = np.random.default_rng(seed)
    ternary_in = hw.act_bits == 2
    dual = dual and hw.dual_scale
    epilogue = "threshold" if (threshold and hw.ternary_act) or ternary_in else "requantize"
    w = zero_blocks(rng, trits(rng, (n, k), p_zero), (hw.block_out, hw.block_in), block_zero)
    spec = layer_spec(rng, "dense", (rows, k), w, dual=dual, epilogue=epilogue,
                      input_ternary=ternary_in, relu=relu)
    x = layer_input(rng, spec)
    y, _, _ = run(spec, hw, x)
    np.testing.assert_array_equal(y, spec.reference(x))


@pytest.mark.parametrize("dual", [False, True])
def test_dense_larger_than_buffers_is_tiled(dual):
    """A 90 x 300 layer on `tiny` (256 weight blocks of 4 x 4, 1700 needed) runs in many tiles
    and reduction steps and stays exact."""
    hw = CFG["tiny"]
    rng = np.random.default_rng(7)
    spec = layer_spec(rng, "dense", (5, 300), trits(rng, (90, 300)), dual=dual)
    x = layer_input(rng, spec)
    y, cl, result = run(spec, hw, x)
    s = cl.schedule
    assert s.tile_out_blocks < cl.problem.out_blocks or s.tile_in_blocks < cl.problem.in_blocks
    gemms = [st for st in result.stats if st.opcode == "GEMM" and st.macs]
    assert len(gemms) > 4
    ref = spec.reference(x)
    assert np.unique(ref).size > 10  # the test data exercise the requantizer, not saturation
    np.testing.assert_array_equal(y, ref)


def test_dense_rows_run_in_the_hardware_loop():
    """Rows of a dense input are the GEMM's iteration count, not separate instructions."""
    hw = CFG["default"]
    rng = np.random.default_rng(3)
    spec = layer_spec(rng, "dense", (37, 20), trits(rng, (18, 20)))
    x = layer_input(rng, spec)
    y, cl, result = run(spec, hw, x)
    np.testing.assert_array_equal(y, spec.reference(x))
    gemms = [st for st in result.stats if st.opcode == "GEMM" and st.macs]
    # 2 x 2 blocks, 37 rows, one instruction
    assert len(gemms) == 1 and gemms[0].uop_execs == 4 * 37
