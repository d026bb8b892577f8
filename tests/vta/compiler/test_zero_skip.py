"""Zero-block skipping: an all-zero weight block gets no micro-op and is neither stored nor
loaded; the result stays exact and the GEMM work and weight traffic shrink with the
sparsity (counted by the simulator; cycles by the cycle model)."""

import dataclasses

import numpy as np
import pytest

from vta_ext import HwConfig
from vta_ext.compiler.lower import compile_layer
from vta_ext.compiler.schedule import Schedule
from vta_ext.sim.cycles import cycle_report

from .specs import layer_input, layer_spec, run, trits, zero_tap_blocks

DEFAULT = HwConfig.load("default")


def _nonzero_blocks(w, bo, bi):
    """Independent count of nonzero (bo x bi channel) blocks per tap, channels zero-padded."""
    o, c, kh, kw = w.shape
    pad = np.zeros((-(-o // bo) * bo, -(-c // bi) * bi, kh, kw), dtype=bool)
    pad[:o, :c] = w != 0
    blocks = pad.reshape(pad.shape[0] // bo, bo, pad.shape[1] // bi, bi, kh, kw)
    return int(blocks.any(axis=(1, 3)).sum()), blocks.shape[0] * blocks.shape[2] * kh * kw


def _gemm_totals(result):
    execs = sum(s.uop_execs for s in result.stats if s.opcode == "GEMM" and s.macs)
    return execs, result.totals().get("dram_bytes_wgt", 0)


@pytest.mark.parametrize("dual", [False, True])
def test_skipping_issues_fewer_uops_and_weight_bytes(dual):
    rng = np.random.default_rng(21)
    w = zero_tap_blocks(rng, trits(rng, (40, 37, 3, 3)), (16, 16), 0.6)
    spec = layer_spec(rng, "conv2d", (1, 37, 6, 5), w, dual=dual, padding=(1, 1))
    x = layer_input(rng, spec)
    one_tile = Schedule(3, 3, 6, 5, double_buffer=False)
    nonzero, total = _nonzero_blocks(w, 16, 16)
    assert 0 < nonzero < total * 0.6
    runs = {}
    for skip in (True, False):
        y, cl, result = run(spec, DEFAULT, x, dataclasses.replace(one_tile, skip_zero_blocks=skip))
        np.testing.assert_array_equal(y, spec.reference(x))
        runs[skip] = _gemm_totals(result)
        assert cl.stats.skipped_weight_blocks == (total - nonzero if skip else 0)
    pixels = 6 * 5
    assert runs[True] == (nonzero * pixels, nonzero * DEFAULT.wgt_block_bytes)
    assert runs[False] == (total * pixels, total * DEFAULT.wgt_block_bytes)


def test_all_zero_weights_run_no_gemm():
    rng = np.random.default_rng(4)
    spec = layer_spec(rng, "dense", (3, 20), np.zeros((9, 20), dtype=np.int8))
    x = layer_input(rng, spec)
    y, cl, result = run(spec, DEFAULT, x)
    np.testing.assert_array_equal(y, spec.reference(x))
    assert _gemm_totals(result) == (0, 0)
    assert cl.stats.gemm_uops == 0


def test_skipping_follows_the_hwconfig_by_default():
    rng = np.random.default_rng(8)
    w = zero_tap_blocks(rng, trits(rng, (20, 20, 1, 1)), (16, 16), 0.5)
    w[:16, :16] = 0
    spec = layer_spec(rng, "conv2d", (1, 20, 3, 3), w)
    assert compile_layer(spec, DEFAULT).stats.skipped_weight_blocks >= 1
    int8 = HwConfig.load("int8")
    assert not int8.zero_block_skip
    assert compile_layer(spec, int8).stats.skipped_weight_blocks == 0


def test_ninety_percent_zero_blocks_take_at_most_a_fifth_of_the_cycles():
    """ResNet-18 C8 (14 x 14, 256 -> 256, 3 x 3) on `default`, by the cycle model: with 90%
    of its weight blocks zero it must take <= 0.2x the cycles of the dense layer."""
    rng = np.random.default_rng(0)
    w = trits(rng, (256, 256, 3, 3))
    cycles = {}
    for fraction in (0.0, 0.9):
        wf = zero_tap_blocks(rng, w, (16, 16), fraction)
        spec = layer_spec(rng, "conv2d", (1, 256, 14, 14), wf, padding=(1, 1))
        cl = compile_layer(spec, DEFAULT)
        cycles[fraction] = cycle_report(cl.program, DEFAULT).total_cycles
    assert cycles[0.9] <= 0.2 * cycles[0.0], cycles


@pytest.mark.parametrize("skip", [True, False])
def test_issued_useful_macs(skip):
    """Unpadded MACs of the issued blocks, counted independently from the weights: each
    (output channel, input channel, tap) of a nonzero block, times the output pixels."""
    rng = np.random.default_rng(2)
    w = zero_tap_blocks(rng, trits(rng, (20, 37, 3, 3)), (16, 16), 0.5)
    spec = layer_spec(rng, "conv2d", (2, 37, 5, 4), w, padding=(1, 1))
    cl = compile_layer(spec, dataclasses.replace(DEFAULT, zero_block_skip=skip))
    nonzero = np.zeros((2, 3, 3, 3), dtype=bool)  # [out block, in block, kh, kw]
    for ob in range(2):
        for cb in range(3):
            nonzero[ob, cb] = w[ob * 16:(ob + 1) * 16, cb * 16:(cb + 1) * 16].any(axis=(0, 1))
    expect = 0
    for ob, cb, i, j in np.argwhere(nonzero if skip else np.ones_like(nonzero)):
        expect += min(16, 20 - ob * 16) * min(16, 37 - cb * 16)
    assert cl.stats.issued_useful_macs == expect * 2 * 5 * 4
    assert cl.stats.useful_macs == 20 * 37 * 9 * 2 * 5 * 4
