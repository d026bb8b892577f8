"""Random LayerSpecs and inputs for the lowering tests, plus the one way they run a layer:
``compile_layer`` -> ``fsim.simulate`` -> ``unpack_output`` (compared with
``LayerSpec.reference``, the numpy integer reference)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import strategies as st

from vta_ext.compiler.layer import LayerSpec
from vta_ext.isa import RESIDUAL_MULT_MAX
from vta_ext.compiler.lower import compile_layer
from vta_ext.sim.fsim import simulate


def trits(rng, shape, p_zero=0.4) -> np.ndarray:
    p = (1 - p_zero) / 2
    return rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=shape, p=[p, p_zero, p])


def zero_blocks(rng, w, block, fraction) -> np.ndarray:
    """``w`` with about ``fraction`` of its (block_out x block_in) blocks of the row view
    ``[O, K]`` (K = C*kh*kw) set to zero: the pattern zero-block skipping exploits."""
    rows = w.reshape(w.shape[0], -1).copy()
    bo, bi = block
    for i in range(0, rows.shape[0], bo):
        for j in range(0, rows.shape[1], bi):
            if rng.random() < fraction:
                rows[i:i + bo, j:j + bi] = 0
    return rows.reshape(w.shape)


def layer_spec(rng, kind, input_shape, weight, *, dual=False, epilogue="requantize",
               input_ternary=False, relu=False, **conv) -> LayerSpec:
    """Epilogue parameters drawn so outputs spread over the int8 range / all three trits
    (not all saturated): the shift follows the accumulators' expected magnitude."""
    n = weight.shape[0]
    k = int(np.prod(weight.shape[1:]))
    x_mag = 1 if input_ternary else 64
    acc_mag = max(1.0, x_mag * np.sqrt(k))
    mult_p = rng.integers(2**14, 2**15, n)
    mult_n = rng.integers(2**14, 2**15, n) if dual else mult_p.copy()
    base = int(np.log2(acc_mag * 2**15 / 64))  # z / 2**shift of order 64
    shift = np.clip(base + rng.integers(-1, 2, n), 1, 46)
    z_mag = int(acc_mag * 2**15)
    bias = rng.integers(-z_mag, z_mag + 1, n)
    t_lo = rng.integers(-z_mag, 1, n)
    t_hi = t_lo + rng.integers(0, z_mag + 1, n)
    return LayerSpec(name=f"{kind}_test", kind=kind, input_shape=tuple(input_shape),
                     weight=weight, bias=bias, mult_p=mult_p, mult_n=mult_n, epilogue=epilogue,
                     shift=shift, lo=0 if relu else -127, hi=127, t_lo=t_lo, t_hi=t_hi,
                     input_ternary=input_ternary, **conv)


def layer_input(rng, spec: LayerSpec) -> np.ndarray:
    if spec.input_ternary:
        return trits(rng, spec.input_shape, p_zero=0.3)
    return rng.integers(-128, 128, spec.input_shape).astype(np.int8)


def run(spec, hw, x, schedule=None):
    """(output, compiled layer, simulator result) of ``spec`` on ``hw`` for input ``x``."""
    cl = compile_layer(spec, hw, schedule)
    result = simulate(cl.bind(x), hw)
    assert result.leftover_tokens == {}, result.leftover_tokens
    return cl.read_output(result.dram), cl, result


def zero_tap_blocks(rng, w, block, fraction) -> np.ndarray:
    """Conv weights ``[O, C, kh, kw]`` with about ``fraction`` of the lowering's weight
    blocks (block_out output x block_in input channels at one tap) set to zero."""
    w = w.copy()
    bo, bi = block
    for o in range(0, w.shape[0], bo):
        for c in range(0, w.shape[1], bi):
            for i in range(w.shape[2]):
                for j in range(w.shape[3]):
                    if rng.random() < fraction:
                        w[o:o + bo, c:c + bi, i, j] = 0
    return w


def dequantize_spec(rng, spec: LayerSpec) -> LayerSpec:
    """``spec`` with a float output (the tdequantize epilogue): per-channel float32 scale
    and bias, of the sizes freeze produces (z of order 2**20 times 1e-6)."""
    n = spec.out_channels
    return replace(spec, epilogue="dequantize",
                   dq_scale=(rng.random(n) * 1e-5 + 1e-7).astype(np.float32),
                   dq_bias=rng.standard_normal(n).astype(np.float32))


def residual_spec(rng, spec: LayerSpec) -> LayerSpec:
    """``spec`` (requantize) with a fused residual add whose term Mr * r is of the order
    of the layer's own z (so both shape the output): Mr below 2**shift per channel."""
    mult_r = np.minimum(rng.integers(0, 2**np.asarray(spec.shift, np.int64)), RESIDUAL_MULT_MAX)
    return replace(spec, residual_mult=mult_r)


def residual_input(rng, spec: LayerSpec) -> np.ndarray:
    return rng.integers(-128, 128, spec.output_shape()).astype(np.int8)


def run_residual(spec, hw, x, r, schedule=None):
    """:func:`run` for a fused residual layer (two inputs)."""
    cl = compile_layer(spec, hw, schedule)
    result = simulate(cl.bind(x, r), hw)
    assert result.leftover_tokens == {}, result.leftover_tokens
    return cl.read_output(result.dram), cl, result


@st.composite
def conv_layers(draw):
    """Conv geometries: groups, odd channel counts, kernels, strides, dilations, padding
    up to the dilated kernel extent - 1, batch 1-2."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin_g, out_g = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph = draw(st.integers(0, (kh - 1) * dh))
    pw = draw(st.integers(0, (kw - 1) * dw))
    h = draw(st.integers(max(1, (kh - 1) * dh + 1 - 2 * ph), 9))
    w = draw(st.integers(max(1, (kw - 1) * dw + 1 - 2 * pw), 9))
    return dict(groups=groups, c=cin_g * groups, o=out_g * groups, kernel=(kh, kw),
                stride=(sh, sw), dilation=(dh, dw), padding=(ph, pw), hw=(h, w),
                batch=draw(st.integers(1, 2)))


def conv_spec(rng, hw, layer, *, dual, threshold, p_zero=0.4, block_zero=0.0, pad_value=None):
    """A random conv LayerSpec of geometry ``layer`` that ``hw`` can run."""
    ternary_in = hw.act_bits == 2
    epilogue = "threshold" if (threshold and hw.ternary_act) or ternary_in else "requantize"
    c, o, g = layer["c"], layer["o"], layer["groups"]
    w = trits(rng, (o, c // g) + layer["kernel"], p_zero)
    w = zero_blocks(rng, w, (hw.block_out, hw.block_in), block_zero)
    if pad_value is None:
        pad_value = int(rng.integers(-1, 2)) if ternary_in else int(rng.choice([0, 0, -1, 5]))
    return layer_spec(rng, "conv2d", (layer["batch"], c) + layer["hw"], w,
                      dual=dual and hw.dual_scale, epilogue=epilogue, input_ternary=ternary_in,
                      stride=layer["stride"], padding=layer["padding"],
                      dilation=layer["dilation"], groups=g, pad_value=pad_value)
