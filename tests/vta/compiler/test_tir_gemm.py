"""The TIR route vs the loop-nest emitter: the layer's block GEMM scheduled with
tvm.s_tir (splits + reorder from the same knobs), tensorized onto the VTA GEMM intrinsic,
lowered and walked, issues exactly the block products of the emitter's tiles and steps, in
the same tile/step order."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("tvm")

from vta_ext import HwConfig  # noqa: E402
from vta_ext.compiler import images  # noqa: E402
from vta_ext.compiler.emit import WeightPlan  # noqa: E402
from vta_ext.compiler.geometry import problem_of  # noqa: E402
from vta_ext.compiler.schedule import Schedule, schedule_space  # noqa: E402
from vta_ext.compiler.tiling import tiles  # noqa: E402
from vta_ext.compiler.tir_gemm import gemm_records  # noqa: E402

from .specs import layer_spec, trits  # noqa: E402

TINY = HwConfig.load("tiny")


def _emitter_steps(spec, p, s):
    """[(tile/step key, set of (ob, cb, i, j, y, x))] of the emitter, for image group 0."""
    plan, wblocks = WeightPlan(), images.weight_blocks(spec, p)
    out = []
    for t in tiles(p, s):
        if t.image_group or t.group:
            continue
        for step in t.in_steps:
            plan.add(t.weight_key(step), wblocks, t, step, skip_zero=False)
            _, entries = plan.where[t.weight_key(step)]
            recs = {(t.out_blocks.start + obl, step.start + cbl, i, j, t.rows.start + y,
                     t.cols.start + x)
                    for obl, cbl, i, j in entries for y in range(t.rows.size)
                    for x in range(t.cols.size)}
            key = (t.out_blocks.start // s.tile_out_blocks, t.rows.start // s.tile_rows,
                   t.cols.start // s.tile_cols, step.start // s.tile_in_blocks)
            out.append((key, recs))
    return out


def _tir_steps(p, s):
    rec = gemm_records(p, s)
    keys = np.stack([rec[:, 0] // s.tile_out_blocks, rec[:, 4] // s.tile_rows,
                     rec[:, 5] // s.tile_cols, rec[:, 1] // s.tile_in_blocks], axis=1)
    out = []
    for k, r in zip(map(tuple, keys.tolist()), map(tuple, rec.tolist())):
        if not out or out[-1][0] != k:
            out.append((k, set()))
        out[-1][1].add(r)
    return out, len(rec)


def _conv(stride=(2, 1), dilation=(1, 2), padding=(1, 2), kernel=(3, 2)):
    rng = np.random.default_rng(0)
    return layer_spec(rng, "conv2d", (1, 6, 7, 6), trits(rng, (7, 6) + kernel), stride=stride,
                      dilation=dilation, padding=padding)


CONV = _conv()
SPACE = schedule_space(problem_of(CONV, TINY), TINY)


def _check(spec, s):
    p = problem_of(spec, TINY)
    tir, count = _tir_steps(p, s)
    emitted = _emitter_steps(spec, p, s)
    assert [k for k, _ in tir] == [k for k, _ in emitted]
    assert all(a == b for (_, a), (_, b) in zip(tir, emitted))
    # every product once: padded block products of the whole layer
    assert count == p.out_blocks * p.in_blocks * p.kh * p.kw * p.oh * p.ow


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=st.sampled_from(SPACE))
def test_tir_schedule_issues_the_emitters_products(s):
    _check(CONV, s)


def test_one_row_kernel_with_stride_reads_only_its_rows():
    _check(_conv(stride=(2, 2), dilation=(1, 1), padding=(0, 0), kernel=(1, 1)),
           Schedule(1, 1, 2, 2, reuse="input"))


def test_dense_as_tir():
    rng = np.random.default_rng(1)
    spec = layer_spec(rng, "dense", (5, 13), trits(rng, (9, 13)))
    _check(spec, Schedule(2, 2, 3, 1))


@pytest.mark.parametrize("layer", ["conv", "dense", "one_row"])
def test_tir_lowering_gives_the_same_program(layer):
    """compile_layer(lowering="tir") reads the GEMM products off the TIR walk: the program
    and DRAM image equal the loop-nest emitter's, and fsim runs it exactly."""
    from vta_ext.compiler.lower import compile_layer
    from vta_ext.sim.fsim import simulate

    from .specs import layer_input, zero_tap_blocks

    rng = np.random.default_rng(9)
    if layer == "dense":
        spec = layer_spec(rng, "dense", (5, 13), trits(rng, (9, 13)), dual=True)
        s = Schedule(2, 2, 3, 1)
    else:
        kw = dict(stride=(2, 2), padding=(0, 0)) if layer == "one_row" else dict(padding=(1, 1))
        k = 1 if layer == "one_row" else 3
        w = zero_tap_blocks(rng, trits(rng, (7, 6, k, k)), (4, 4), 0.3)
        spec = layer_spec(rng, "conv2d", (1, 6, 7, 6), w, **kw)
        s = Schedule(1, 1, 2, 3, reuse="input")
    loops = compile_layer(spec, TINY, s)
    tir = compile_layer(spec, TINY, s, lowering="tir")
    assert tir.program.insns == loops.program.insns
    assert np.array_equal(tir.program.dram.data, loops.program.dram.data)
    x = layer_input(rng, spec)
    result = simulate(tir.bind(x), TINY)
    np.testing.assert_array_equal(tir.read_output(result.dram), spec.reference(x))
