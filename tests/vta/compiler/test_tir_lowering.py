"""The TIR route (the whole layer as one tvm.s_tir-scheduled PrimFunc, walked into the
instruction stream) against the loop-nest emitter, the reference route: for random layers,
configs and schedules both give the identical instruction stream and DRAM image, and the
TIR route's program run on fsim equals the numpy integer reference."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("tvm")

from vta_ext import HwConfig  # noqa: E402
from vta_ext.compiler.geometry import problem_of  # noqa: E402
from vta_ext.compiler.lower import compile_layer  # noqa: E402
from vta_ext.compiler.schedule import Schedule, schedule_space  # noqa: E402
from vta_ext.compiler.tiling import tiles  # noqa: E402
from vta_ext.compiler.tir_walk import walk_layer  # noqa: E402
from vta_ext.sim.fsim import simulate  # noqa: E402

from .specs import (dequantize_spec, layer_input, layer_spec, residual_input,  # noqa: E402
                    residual_spec, trits, zero_blocks)

CONFIGS = {name: HwConfig.load(name) for name in ("tiny", "default", "tiny_tact", "int8", "large")}
CONFIGS.update({f"tiny_b{b}": dataclasses.replace(CONFIGS["tiny"], name=f"tiny_b{b}", batch=b)
                for b in (2, 4)})


@st.composite
def layers(draw, hw: HwConfig):
    """A random layer ``hw`` can run: dense or conv2d (groups, stride, dilation, padding
    with a pad value), 1/2/4 images, dual scales, requantize (with or without a fused
    residual add), threshold or dequantize (int32 accumulators stored), int8 or ternary
    input, some all-zero weight blocks; sizes that do not divide the blocks or tiles."""
    variant = draw(st.sampled_from(["plain", "plain", "residual", "dequantize"]))
    spec, rng = draw(_plain_layers(hw, requantize=variant != "plain"))
    if variant == "residual" and spec.epilogue == "requantize":
        return residual_spec(rng, spec), rng
    if variant == "dequantize" and not spec.input_ternary:
        return dequantize_spec(rng, spec), rng
    return spec, rng


@st.composite
def _plain_layers(draw, hw: HwConfig, requantize: bool):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ternary_in = hw.act_bits == 2
    threshold = ternary_in or (hw.ternary_act and not requantize and draw(st.booleans()))
    common = dict(dual=hw.dual_scale and draw(st.booleans()), input_ternary=ternary_in,
                  epilogue="threshold" if threshold else "requantize")
    images = draw(st.sampled_from([1, 2, 4]))
    block_zero = draw(st.sampled_from([0.0, 0.0, 0.5, 1.0]))
    if draw(st.booleans()):
        k, o = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        w = zero_blocks(rng, trits(rng, (o, k)), (hw.block_out, hw.block_in), block_zero)
        return layer_spec(rng, "dense", (images + draw(st.integers(0, 3)), k), w, **common), rng
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin_g, out_g = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    if draw(st.booleans()) and groups > 1:  # depthwise
        cin_g, out_g = 1, 1
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, (kh - 1) * dilation[0])),
               draw(st.integers(0, (kw - 1) * dilation[1])))
    h = draw(st.integers(max(1, (kh - 1) * dilation[0] + 1 - 2 * padding[0]), 10))
    wd = draw(st.integers(max(1, (kw - 1) * dilation[1] + 1 - 2 * padding[1]), 10))
    w = trits(rng, (out_g * groups, cin_g, kh, kw))
    w = zero_blocks(rng, w, (hw.block_out, hw.block_in), block_zero)
    pad_value = int(rng.integers(-1, 2)) if ternary_in else int(rng.choice([0, -1, 5]))
    spec = layer_spec(rng, "conv2d", (images, cin_g * groups, h, wd), w, stride=stride,
                      padding=padding, dilation=dilation, groups=groups, pad_value=pad_value,
                      **common)
    return spec, rng


def _same_program(spec, hw, s, rng):
    loops = compile_layer(spec, hw, s, lowering="loops")
    tir = compile_layer(spec, hw, s, lowering="tir")
    assert (loops.stats.lowering, tir.stats.lowering) == ("loops", "tir")
    assert tir.program.insns == loops.program.insns
    assert np.array_equal(tir.program.dram.data, loops.program.dram.data)
    x = layer_input(rng, spec)
    r = residual_input(rng, spec) if spec.has_residual else None
    result = simulate(tir.bind(x, r), hw)
    assert result.leftover_tokens == {}
    np.testing.assert_array_equal(tir.read_output(result.dram), spec.reference(x, r))


def _check_random_layer(data, cfg, double_buffer, reuse):
    hw = CONFIGS[cfg]
    spec, rng = data.draw(layers(hw))
    space = [s for s in schedule_space(problem_of(spec, hw), hw)  # the loop nest: one thread
             if (s.double_buffer, s.reuse, s.virtual_threads) == (double_buffer, reuse, 1)]
    if not space:
        event("no tiling fits")  # compile_layer's own error path (test_errors)
        return
    s = space[data.draw(st.integers(0, len(space) - 1))]
    s = dataclasses.replace(s, skip_zero_blocks=data.draw(st.sampled_from([None, True, False])))
    event(f"double_buffer={s.double_buffer}, reuse={s.reuse}")
    event(f"epilogue {spec.epilogue}{' + residual' if spec.has_residual else ''}")
    _same_program(spec, hw, s, rng)


_LAYER_ARGS = dict(data=st.data(), cfg=st.sampled_from(sorted(CONFIGS)),
                   double_buffer=st.booleans(), reuse=st.sampled_from(["weight", "input"]))
_SETTINGS = dict(deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=40, **_SETTINGS)
@given(**_LAYER_ARGS)
def test_tir_route_gives_the_loop_nests_program(data, cfg, double_buffer, reuse):
    _check_random_layer(data, cfg, double_buffer, reuse)


@pytest.mark.slow
@settings(max_examples=400, **_SETTINGS)
@given(**_LAYER_ARGS)
def test_tir_route_gives_the_loop_nests_program_many(data, cfg, double_buffer, reuse):
    _check_random_layer(data, cfg, double_buffer, reuse)


@pytest.mark.parametrize("double_buffer", [True, False])
@pytest.mark.parametrize("reuse", ["weight", "input"])
def test_edge_tiles_and_both_loop_orders(double_buffer, reuse):
    """Tiles that do not divide any extent (last tiles and steps are partial)."""
    hw = CONFIGS["tiny"]
    rng = np.random.default_rng(3)
    spec = layer_spec(rng, "conv2d", (2, 11, 7, 9), trits(rng, (13, 11, 3, 3)), padding=(1, 1),
                      dual=True)
    _same_program(spec, hw, Schedule(3, 2, 2, 2, double_buffer, reuse), rng)


def test_walked_tiles_are_the_tilers():
    """The tiles the TIR runs (regions read off the lowered PrimFunc's offsets) are, in
    order, the tiler's, over a whole schedule space."""
    hw = CONFIGS["tiny"]
    rng = np.random.default_rng(5)
    spec = layer_spec(rng, "conv2d", (1, 9, 6, 7), trits(rng, (6, 9, 3, 2)), stride=(2, 1),
                      dilation=(1, 2), padding=(1, 2))
    p = problem_of(spec, hw)
    for s in [s for s in schedule_space(p, hw) if s.virtual_threads == 1][::9]:
        assert [w.tile for w in walk_layer(p, s)] == list(tiles(p, s))


def test_whole_model_compiles_through_the_tir_route():
    """tt.compile(target="vta") lowers every accelerator layer by the TIR route (cm.stats
    records it) and stays bit-exact with the frozen model's integer reference."""
    import torch

    import tvm_ternary as tt

    from ...quant.helpers import frozen_pair, random_digits_model

    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    _, frozen = frozen_pair(random_digits_model("cnn", 7), "twn", x, act="int8")
    cm = tt.compile(frozen, (x,), target="vta", hw="tiny", backend="fsim")
    assert cm.stats["accelerator_layers"]
    assert cm.stats["lowering"] == {name: "tir" for name in cm.stats["accelerator_layers"]}
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
