"""Float-output (tdequantize) layers on the accelerator: the program stores the int32
accumulators (STORE ACC, no ALU) and the host applies scaled_acc + dequantize. The stored
accumulators equal the numpy reference's, and the float32 output equals
LayerSpec.reference bit for bit."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tvm_ternary.quant import reference as ref
from vta_ext import HwConfig
from vta_ext.isa import Alu, MemType, Store
from vta_ext.sim.perf import estimate

from .specs import (conv_layers, conv_spec, dequantize_spec, layer_input, layer_spec, run,
                    trits, zero_blocks)

CFG = {n: HwConfig.load(n) for n in ("tiny", "default", "tiny_tact", "int8")}
SETTINGS = dict(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(spec, hw, x):
    y, cl, result = run(spec, hw, x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, spec.reference(x))
    acc_p, acc_n = spec.accumulators(x)  # the reference's integer accumulators
    got_p, got_n = cl.unpack_accumulators(result.dram.read("output").tobytes())
    if cl.problem.dual:
        np.testing.assert_array_equal(got_p, acc_p)
        np.testing.assert_array_equal(got_n, acc_n)
    else:
        np.testing.assert_array_equal(got_p, acc_p - acc_n)
        assert not got_n.any()
    return cl


@settings(**SETTINGS)
@given(cfg=st.sampled_from(list(CFG)), rows=st.integers(1, 9), k=st.integers(1, 45),
       n=st.integers(1, 40), dual=st.booleans(), block_zero=st.sampled_from([0.0, 0.5]),
       seed=st.integers(0, 2**32 - 1))
def test_dense_dequantize_matches_reference(cfg, rows, k, n, dual, block_zero, seed):
    hw = CFG[cfg]
    rng = np.random.default_rng(seed)
    w = zero_blocks(rng, trits(rng, (n, k)), (hw.block_out, hw.block_in), block_zero)
    spec = dequantize_spec(rng, layer_spec(rng, "dense", (rows, k), w, dual=dual and hw.dual_scale,
                                           input_ternary=hw.act_bits == 2))
    _check(spec, hw, layer_input(rng, spec))


@settings(**SETTINGS)
@given(cfg=st.sampled_from(list(CFG)), layer=conv_layers(), dual=st.booleans(),
       block_zero=st.sampled_from([0.0, 0.6]), seed=st.integers(0, 2**32 - 1))
def test_conv2d_dequantize_matches_reference(cfg, layer, dual, block_zero, seed):
    hw = CFG[cfg]
    rng = np.random.default_rng(seed)
    spec = dequantize_spec(rng, conv_spec(rng, hw, layer, dual=dual, threshold=False,
                                          block_zero=block_zero))
    assume(min(spec.output_shape()) > 0)
    _check(spec, hw, layer_input(rng, spec))


@pytest.mark.parametrize("dual", [False, True])
def test_dequantize_in_many_tiles_has_no_alu(dual):
    """A layer larger than tiny's buffers: many tiles, double-buffered accumulator slots
    (STORE -> next GEMM tokens), and no ALU instruction at all."""
    hw = CFG["tiny"]
    rng = np.random.default_rng(11)
    spec = dequantize_spec(rng, layer_spec(rng, "conv2d", (2, 13, 9, 9),
                                           trits(rng, (22, 13, 3, 3)), dual=dual,
                                           padding=(1, 1)))
    cl = _check(spec, hw, layer_input(rng, spec))
    insns = cl.program.insns
    assert not any(isinstance(i, Alu) for i in insns)
    stores = [i for i in insns if isinstance(i, Store)]
    assert len(stores) > 4 and all(s.mem == MemType.ACC for s in stores)


def test_accumulator_stores_move_four_times_the_bytes():
    """int32 results are 4x the bytes of int8 ones in DRAM traffic, the cycle model and the
    energy model (counted independently: output elements x 4 bytes x pairs)."""
    hw = CFG["default"]
    rng = np.random.default_rng(5)
    base = layer_spec(rng, "conv2d", (1, 16, 8, 8), trits(rng, (32, 16, 3, 3)), padding=(1, 1))
    out = {}
    for name, spec in (("int8", base), ("acc", dequantize_spec(rng, base))):
        _, cl, _ = run(spec, hw, layer_input(rng, spec))
        out[name] = estimate(cl.program, hw).stats()["dram_write_bytes"]
    elems = 1 * 32 * 8 * 8  # batch 1: blocks hold whole channel blocks, no padding
    assert out["int8"] == {"out": elems}
    assert out["acc"] == {"acc": elems * 4}


def test_host_epilogue_is_the_float32_formula():
    """HOST_EPILOGUE on a hand-worked example: z = 3*5 - 2*1 + 7 = 20 -> 20 * 0.5 + 0.25."""
    spec = layer_spec(np.random.default_rng(0), "dense", (1, 2), np.array([[1, -1]], np.int8))
    spec = dequantize_spec(np.random.default_rng(0), spec)
    from dataclasses import replace

    spec = replace(spec, bias=np.array([7]), mult_p=np.array([3]), mult_n=np.array([2]),
                   dq_scale=np.array([0.5], np.float32), dq_bias=np.array([0.25], np.float32))
    y = spec.host_epilogue(np.array([[5]]), np.array([[1]]))
    assert y.dtype == np.float32 and y.tolist() == [[10.25]]
    assert ref.dequantize(np.array([[20]]), [0.5], [0.25], axis=1).tolist() == [[10.25]]


@pytest.mark.parametrize("field, value", [("dq_scale", None), ("dq_bias", np.zeros(3, np.float32))])
def test_dequantize_parameters_must_match_the_channels(field, value):
    from dataclasses import replace

    from tvm_ternary.errors import AcceleratorLayerError
    from vta_ext.compiler.lower import compile_layer

    rng = np.random.default_rng(0)
    spec = dequantize_spec(rng, layer_spec(rng, "dense", (2, 8), trits(rng, (5, 8))))
    with pytest.raises(AcceleratorLayerError, match=rf"layer dense_test: {field} must have shape \(5,\)"):
        compile_layer(replace(spec, **{field: value}), CFG["tiny"])
