"""tconv2d on the register-tiled GEMM: a direct convolution over an NHWC-padded input.

No im2col matrix is built. The input is rewritten once as ``xu [B, H + 2ph, W + 2pw,
groups * Cp]`` (uint8, ``x + 128``, the border holding ``pad_value + 128``, each group's
channels padded to the vector width ``Cp``); the reduction of output pixel ``p`` is then
the ``kh * kw`` taps of ``Cp`` contiguous bytes of its window (tap-major, as the weights
are packed), which the kernel addresses in closed form from the spec's window, stride and
dilation (``gemm_compute.activation_word``). The kernel writes
``z = M * acc + bias`` straight into NCHW order (dual-scale layers: ``Mp acc_p - Mn acc_n
+ bias``, ``gemm_scales``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tvm import te, tirx

from tvm_ternary.errors import ShapeMismatchError
from tvm_ternary.quant.reference import conv_out_size
from tvm_ternary.relax import fused_ops
from tvm_ternary.strategy.registry import Impl, knob_values, register
from tvm_ternary.target import cpu_features

from .gemm_emit import constant as _constant
from .gemm_emit import current_target, emit_gemm, layer_parts
from .gemm_epilogue import REGISTERED
from .gemm_kernel import ISA_VECTOR_BYTES, X_BIAS, GemmSpec, reduction_padded
from .gemm_layout import STEP_K, lanes_2bit, round_up
from .gemm_scales import scale_operands, scale_pair
from .gemm_tiles import KNOBS, choose_isa, k_block_steps, parallel_splits, tile_shape


IMPL_NAME = "conv2d_gemm_tiled"


def _int(arg) -> int:
    """A scalar call argument (an IntImm: relax.prim_value returns the PrimExpr) as an int."""
    return int(arg.value)


def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """Output height and width, and per-group input / output channels (checked)."""
    batch, chans, height, width = x_shape
    out_ch, cin_g, kh, kw = w_shape
    if chans != cin_g * groups or out_ch % groups:
        raise ShapeMismatchError(f"tconv2d: input channels {chans} / weight {tuple(w_shape)} / "
                                 f"groups {groups} disagree")
    oh = conv_out_size(height, kh, stride[0], padding[0], dilation[0])
    ow = conv_out_size(width, kw, stride[1], padding[1], dilation[1])
    return oh, ow, cin_g, out_ch // groups


def conv_plan(x_shape, w_t: np.ndarray, mult: np.ndarray, stride, padding, dilation, groups: int,
              isa: str, threads: int, knobs: dict | None = None):
    """The kernel spec and constant operands for ``tconv2d``: ``mult`` is ``M [out_ch]``
    or ``[Mp, Mn]`` (dual scales when they differ); ``knobs``: values of
    ``gemm_tiles.KNOBS`` (missing or 0: the ISA's defaults)."""
    batch, chans, height, width = x_shape
    out_ch, _, kh, kw = w_t.shape
    oh, ow, cin_g, out_g = conv_geometry(x_shape, w_t.shape, stride, padding, dilation, groups)
    cp = round_up(cin_g, STEP_K)
    hp, wp_ = height + 2 * padding[0], width + 2 * padding[1]
    ctot = groups * cp
    k = kh * kw * cp
    mult_p, mult_n = scale_pair(mult)
    dual = not np.array_equal(mult_p, mult_n)
    rows, pixels = tile_shape(isa, knobs, dual)
    lanes = ISA_VECTOR_BYTES[isa] // STEP_K
    m = batch * oh * ow
    pixel_tiles = -(-m // pixels)
    kp = reduction_padded(k, isa)
    tap_steps = cp // STEP_K if kh * kw * cp == kp else 0
    spec = GemmSpec(isa=isa, groups=groups, rows=out_g, pixels=m, k_padded=kp,
                    x_shape=(batch, hp, wp_, ctot), x_group_stride=cp,
                    out_shape=(batch, out_ch, oh, ow), out_channel_stride=oh * ow,
                    tile_rows=rows, tile_pixels=pixels, unroll_steps=(knobs or {}).get("unroll_steps") or 1,
                    splits=parallel_splits(groups * -(-out_g // (rows // (2 if dual else 1) * lanes)), pixel_tiles,
                                           threads, knobs),
                    window=(kh, kw), stride=tuple(stride), dilation=tuple(dilation), tap_bytes=cp, dual=dual,
                    k_block=k_block_steps(isa, kp // STEP_K, rows, tap_steps, knobs))
    # weights tap-major, channels padded: [G, out_g, kh, kw, cp] -> [G, out_g, kh * kw * cp]
    w_g = np.zeros((groups, out_g, kh, kw, cp), np.int8)
    w_g[..., :cin_g] = w_t.reshape(groups, out_g, cin_g, kh, kw).transpose(0, 1, 3, 4, 2)
    p = np.minimum(np.arange(spec.pixels_padded), m - 1)
    b, oy, ox = p // (oh * ow), p // ow % oh, p % ow
    consts = {
        "wp": lanes_2bit(w_g.reshape(groups, out_g, -1), lanes, spec.tile_channels, what="tconv2d weight",
                         k_padded=spec.k_padded),
        "obase": (b * out_ch * oh * ow + oy * ow + ox).astype(np.int32),
    }
    # xu = x + 128 everywhere, padding included: the correction is per channel
    consts.update(scale_operands(w_g, mult_p, mult_n, spec.rows_padded))
    return spec, consts


def biased_nhwc(x: te.Tensor, spec: GemmSpec, cin_g: int, padding, pad_value: int) -> te.Tensor:
    """``x [B, C, H, W]`` int8 -> ``xu`` of ``spec.x_shape``: NHWC, ``+128``, padded."""
    _, _, height, width = x.shape
    cp = spec.x_group_stride
    ph, pw = padding

    def f(b, y, xx, c):
        inside = tirx.all(y >= ph, y < height + ph, xx >= pw, xx < width + pw, c % cp < cin_g)
        value = x[b, c // cp * cin_g + c % cp, y - ph, xx - pw].astype("int16") + X_BIAS
        return tirx.if_then_else(inside, value.astype("uint8"), tirx.const(pad_value + X_BIAS, "uint8"))

    return te.compute(spec.x_shape, f, name="biased_nhwc")


def _applies(call, target) -> bool:
    """Bare ``tconv2d``, or a fused ``tconv2d_<epilogue>`` whose epilogue the store applies."""
    parts = layer_parts(call, 4)
    if "avx2" not in cpu_features(target) or parts is None:
        return False
    _, w, _, mult = parts[0]
    return _constant(w) is not None and _constant(mult) is not None


def _emit(bb, call):
    (x, w, bias, mult), scalars, epilogue, clamp, epi_tensors = layer_parts(call, 4)
    sh, sw, ph, pw, dh, dw, groups, pad_value = (_int(a) for a in scalars)
    w_t = _constant(w)
    x_shape = [int(d) for d in x.ty.shape]
    target = current_target()
    isa = choose_isa(target, w_t.shape[0] // groups)
    spec, consts = conv_plan(x_shape, w_t, _constant(mult), (sh, sw), (ph, pw), (dh, dw), groups,
                             isa, int(target.get("num-cores", 1)), knob_values(IMPL_NAME, KNOBS, call))
    spec = dataclasses.replace(spec, epilogue=epilogue, clamp=clamp)
    xu = bb.emit(bb.call_te(lambda t: biased_nhwc(t, spec, w_t.shape[1], (ph, pw), pad_value), x,
                            primfunc_name_hint="biased_nhwc"))
    return emit_gemm(bb, spec, xu, consts, bias, epi_tensors)


register("tconv2d", Impl(IMPL_NAME, _applies, _emit, KNOBS))
# fused convolutions: the epilogue applied in the kernel's store (gemm_epilogue)
for _name, _fused in fused_ops.FUSED.items():
    if _fused.body == "tconv2d" and _fused.epilogue in REGISTERED:
        register(_name, Impl(IMPL_NAME, _applies, _emit, KNOBS))
