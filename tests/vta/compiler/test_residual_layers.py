"""Fused residual layers (ISA v1.6): LOAD OUT brings the int8 residual r into the
accumulator buffer and REQUANT residual computes requantize(z + Mr * r). fsim ==
LayerSpec.reference (scaled_acc + reference.add_residual + requantize), and every bad input
is a typed error naming the layer and the field, or a simulator trap naming the
instruction."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tvm_ternary.errors import AcceleratorLayerError, ShapeMismatchError, SimulatorError
from vta_ext import HwConfig, isa
from vta_ext.isa import Alu, Load, MemType
from vta_ext.compiler.lower import compile_layer
from vta_ext.sim.fsim import simulate
from vta_ext.sim.perf import estimate

from .specs import (conv_layers, conv_spec, layer_input, layer_spec, residual_input,
                    residual_spec, run, run_residual, trits, zero_blocks)

CFG = {n: HwConfig.load(n) for n in ("tiny", "default", "int8")}  # int8 activations only
SETTINGS = dict(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(spec, hw, rng):
    x, r = layer_input(rng, spec), residual_input(rng, spec)
    y, cl, _ = run_residual(spec, hw, x, r)
    want = spec.reference(x, r)
    np.testing.assert_array_equal(y, want)
    return y, cl, x, r


@settings(**SETTINGS)
@given(cfg=st.sampled_from(list(CFG)), rows=st.integers(1, 9), k=st.integers(1, 45),
       n=st.integers(1, 40), dual=st.booleans(), relu=st.booleans(),
       block_zero=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 2**32 - 1))
def test_dense_residual_matches_reference(cfg, rows, k, n, dual, relu, block_zero, seed):
    hw = CFG[cfg]
    rng = np.random.default_rng(seed)
    w = zero_blocks(rng, trits(rng, (n, k)), (hw.block_out, hw.block_in), block_zero)
    spec = residual_spec(rng, layer_spec(rng, "dense", (rows, k), w,
                                         dual=dual and hw.dual_scale, relu=relu))
    _check(spec, hw, rng)


@settings(**SETTINGS)
@given(cfg=st.sampled_from(list(CFG)), layer=conv_layers(), dual=st.booleans(),
       relu=st.booleans(), block_zero=st.sampled_from([0.0, 0.6]),
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_residual_matches_reference(cfg, layer, dual, relu, block_zero, seed):
    hw = CFG[cfg]
    rng = np.random.default_rng(seed)
    spec = conv_spec(rng, hw, layer, dual=dual, threshold=False, block_zero=block_zero)
    spec = residual_spec(rng, replace(spec, lo=0 if relu else -127))
    assume(min(spec.output_shape()) > 0)
    _check(spec, hw, rng)


@pytest.mark.parametrize("dual", [False, True])
def test_resnet_block_conv_in_many_tiles(dual):
    """A block's second conv (3x3, pad 1, ReLU) larger than tiny's buffers: the residual
    changes the output (it is not a no-op), and each tile loads its own residual blocks."""
    hw = CFG["tiny"]
    rng = np.random.default_rng(4)
    base = layer_spec(rng, "conv2d", (2, 12, 8, 8), trits(rng, (12, 12, 3, 3)), dual=dual,
                      padding=(1, 1), relu=True)
    spec = residual_spec(rng, base)
    y, cl, x, r = _check(spec, hw, rng)
    assert (y != base.reference(x)).mean() > 0.3  # ReLU zeros agree in both
    loads = [i for i in cl.program.insns if isinstance(i, Load) and i.mem == MemType.OUT]
    alus = [i for i in cl.program.insns if isinstance(i, Alu)]
    assert len(alus) > 2 and all(a.residual for a in alus)
    assert len(loads) >= len(alus)


def test_residual_costs_its_load_and_alu_work():
    """The residual adds one int8 output-sized LOAD (out_block_bytes per block) and the
    ALU's extra multiply-add: DRAM bytes, cycles and energy all grow."""
    hw = CFG["default"]
    rng = np.random.default_rng(2)
    base = layer_spec(rng, "conv2d", (1, 16, 8, 8), trits(rng, (32, 16, 3, 3)), padding=(1, 1))
    plain = estimate(compile_layer(base, hw).program, hw).stats()
    fused = estimate(compile_layer(residual_spec(rng, base), hw).program, hw).stats()
    assert fused["dram_read_bytes"]["out"] == 32 * 8 * 8  # int8 residual, read once
    assert fused["cycles"] > plain["cycles"]
    assert fused["energy_breakdown_pj"]["alu_pj"] > plain["energy_breakdown_pj"]["alu_pj"]


# ----------------------------------------------------------------------------- bad input

def _base(rng=None):
    rng = rng or np.random.default_rng(0)
    return layer_spec(rng, "conv2d", (1, 4, 5, 5), trits(rng, (6, 4, 3, 3)), padding=(1, 1))


def test_spec_residual_shape_mismatch_names_layer_and_field():
    spec = replace(residual_spec(np.random.default_rng(0), _base()), residual_shape=(1, 6, 4, 5))
    with pytest.raises(AcceleratorLayerError, match=r"conv2d_test: residual_shape \(1, 6, 4, 5\)"):
        compile_layer(spec, CFG["tiny"])


@pytest.mark.parametrize("mult, why", [(-1, "must be in"), (isa.RESIDUAL_MULT_MAX + 1, "must be in")])
def test_residual_multiplier_out_of_range(mult, why):
    spec = replace(_base(), residual_mult=np.full(6, mult, dtype=np.int64))
    with pytest.raises(AcceleratorLayerError, match=f"conv2d_test: residual_mult {why}"):
        compile_layer(spec, CFG["tiny"])


def test_residual_multiplier_wrong_length():
    spec = replace(_base(), residual_mult=np.ones(5, dtype=np.int64))
    with pytest.raises(AcceleratorLayerError, match=r"residual_mult must have shape \(6,\)"):
        compile_layer(spec, CFG["tiny"])


def test_residual_needs_requantize():
    spec = replace(_base(), epilogue="threshold", t_lo=np.zeros(6), t_hi=np.zeros(6),
                   residual_mult=np.ones(6, dtype=np.int64))
    with pytest.raises(AcceleratorLayerError, match="residual_mult a residual add needs a "
                                                    "requantize epilogue"):
        compile_layer(spec, HwConfig.load("tiny_tact"))


def test_bad_residual_inputs():
    rng = np.random.default_rng(0)
    spec = residual_spec(rng, _base())
    cl = compile_layer(spec, CFG["tiny"])
    x = layer_input(rng, spec)
    with pytest.raises(AcceleratorLayerError, match=r"conv2d_test: residual shape \(1, 6, 5, 4\)"):
        cl.bind(x, np.zeros((1, 6, 5, 4), np.int8))
    with pytest.raises(AcceleratorLayerError, match="residual must be int8 values"):
        cl.bind(x, np.full(spec.output_shape(), 300))
    with pytest.raises(ShapeMismatchError, match="residual input is required"):
        cl.bind(x)
    plain = compile_layer(_base(), CFG["tiny"])
    with pytest.raises(ShapeMismatchError, match="residual input is unexpected"):
        plain.bind(x, residual_input(rng, spec))


# ----------------------------------------------------------------------------- simulator traps

def _compiled(rng=None):
    rng = rng or np.random.default_rng(1)
    spec = residual_spec(rng, _base(rng))
    cl = compile_layer(spec, CFG["tiny"])
    prog = cl.bind(layer_input(rng, spec), residual_input(rng, spec))
    first = next(i for i, s in enumerate(prog.insns) if isinstance(s, Load) and s.mem == MemType.OUT)
    return prog, first


def _trap(prog, index, words):
    with pytest.raises(SimulatorError) as err:
        simulate(prog, CFG["tiny"])
    assert err.value.index == index, str(err.value)
    assert words in str(err.value), str(err.value)


def test_residual_region_too_large_for_the_accumulators_traps():
    prog, i = _compiled()
    load = prog.insns[i]
    prog.insns[i] = isa.replace(load, sram_base=CFG["tiny"].acc_depth - 1, x_size=load.x_size + 1)
    _trap(prog, i, "LOAD OUT writes acc[")


def test_residual_region_beyond_dram_traps():
    prog, i = _compiled()
    prog.insns[i] = isa.replace(prog.insns[i], dram_base=prog.dram.data.size)
    _trap(prog, i, "beyond the image")


def test_residual_on_other_alu_ops_traps():
    prog, _ = _compiled()
    alu = next(i for i, s in enumerate(prog.insns) if isinstance(s, Alu))
    prog.insns[alu] = isa.replace(prog.insns[alu], op=isa.AluOp.THRESH, use_imm=False)
    _trap(prog, alu, "residual applies to REQUANT only")


def test_residual_operand_must_be_int8():
    """Without its LOAD OUT the ALU's residual entries hold something else: here the
    LOAD is turned into an int32 LOAD ACC of 0x7F7F7F7F words appended to DRAM, which the
    ALU refuses."""
    prog, i = _compiled()
    load = prog.insns[i]
    acc_elem = CFG["tiny"].acc_block_bytes
    base = -(-prog.dram.data.size // acc_elem)
    span = (load.y_size - 1) * load.x_stride + load.x_size
    prog.dram.data = np.concatenate([prog.dram.data, np.full(
        base * acc_elem - prog.dram.data.size + span * acc_elem, 0x7F, np.uint8)])
    prog.insns[i] = isa.replace(load, mem=MemType.ACC, dram_base=base)
    alu = next(j for j, s in enumerate(prog.insns) if isinstance(s, Alu))
    _trap(prog, alu, "is not an int8 value")


def test_residual_multiplier_too_large_in_par_traps():
    rng = np.random.default_rng(1)
    spec = residual_spec(rng, _base(rng))
    cl = compile_layer(spec, CFG["tiny"])
    prog = cl.bind(layer_input(rng, spec), residual_input(rng, spec))
    par = prog.dram.regions["par"]
    rec = prog.dram.data[par.offset:par.offset + par.size].view(np.int64).reshape(-1, 4)
    rec[0, 1] = isa.RESIDUAL_MULT_MAX + 1  # the t_lo word of channel 0 holds Mr
    alu = next(j for j, s in enumerate(prog.insns) if isinstance(s, Alu))
    _trap(prog, alu, "par residual multiplier")
