"""DRAM formats of one lowered layer: input and output activations, weight blocks and
per-channel parameters, in the canonical convolution's block order.

- input block ``(ig, g, cb, y, x)`` is element ``(((ig*G + g)*ncb + cb)*H + y)*W + x``: a
  ``[batch, block_in]`` block of pixel ``(y, x)``, channels ``cb*block_in..`` of group ``g``,
  images ``ig*batch..`` (so each channel block of an image group is one 2-D LOAD);
- output block ``(ig, g, y, x, ob)`` is element ``(((ig*G + g)*OH + y)*OW + x)*nob + ob``:
  pixel-major, so one STORE writes a tile's rows of all its output blocks;
- weight blocks ``[G, nob, ncb, kh, kw, block_out, block_in]``; the lowering stores only the
  ones it loads, in load order.

Channels are padded per group with real zeros (whose weights are zero), batch lanes with
zeros whose outputs are dropped.
"""

from __future__ import annotations

import numpy as np

from tvm_ternary.errors import ShapeMismatchError

from .. import isa, layout
from ..config import HwConfig
from .geometry import ConvProblem
from .layer import LayerSpec


def canonical_input(spec: LayerSpec, p: ConvProblem, x) -> np.ndarray:
    """The layer input as the canonical ``[images, C, H, W]`` int64 tensor."""
    x = np.asarray(x)
    if tuple(x.shape) != tuple(spec.input_shape):
        raise ShapeMismatchError(f"layer {spec.name}: input shape {tuple(x.shape)}, compiled for "
                                 f"{tuple(spec.input_shape)}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ShapeMismatchError(f"layer {spec.name}: input dtype {x.dtype} is not an integer type")
    lo, hi = (-1, 1) if spec.input_ternary else (-128, 127)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ShapeMismatchError(f"layer {spec.name}: input values [{x.min()}, {x.max()}] leave "
                                 f"[{lo}, {hi}]")
    x = x.astype(np.int64)
    return x if spec.kind == "conv2d" else _dense_rows_as_images(p, x)


def _dense_rows_as_images(p: ConvProblem, rows: np.ndarray) -> np.ndarray:
    """A dense layer's ``[B, features]`` rows -> canonical ``[batch, features, H, 1]``
    int64 (``geometry``: row r is lane r % batch of pixel row r // batch, so H = OH);
    the rows past B are zero."""
    padded = np.zeros((p.h * p.batch, rows.shape[1]), dtype=np.int64)
    padded[:rows.shape[0]] = rows
    return padded.reshape(p.h, p.batch, -1).transpose(1, 2, 0)[..., None]


def pack_input(p: ConvProblem, hw: HwConfig, x4: np.ndarray) -> bytes:
    """Canonical ``[images, C, H, W]`` -> the input region's bytes."""
    ncb, bi = p.in_blocks, p.block_in
    padded = np.zeros((p.image_groups * p.batch, p.groups, ncb * bi, p.h, p.w), dtype=np.int64)
    padded[:p.images, :, :p.cin_g] = x4.reshape(p.images, p.groups, p.cin_g, p.h, p.w)
    blocks = padded.reshape(p.image_groups, p.batch, p.groups, ncb, bi, p.h, p.w)
    blocks = blocks.transpose(0, 2, 3, 5, 6, 1, 4).reshape(-1, p.batch, bi)
    return layout.pack_inp(blocks, hw).tobytes()


def input_blocks(p: ConvProblem) -> int:
    return p.image_groups * p.groups * p.in_blocks * p.h * p.w


def output_blocks(p: ConvProblem) -> int:
    return p.image_groups * p.groups * p.out_blocks * p.oh * p.ow


def unpack_output(p: ConvProblem, hw: HwConfig, raw) -> np.ndarray:
    """The output region's bytes -> canonical ``[images, G * out_g, OH, OW]``."""
    v = layout.unpack_out(np.frombuffer(bytes(raw), dtype=np.uint8), hw)
    v = v.reshape(p.image_groups, p.groups, p.oh, p.ow, p.out_blocks, p.batch, p.block_out)
    v = v.transpose(0, 5, 1, 4, 6, 2, 3).reshape(p.image_groups * p.batch, p.groups,
                                                 p.out_blocks * p.block_out, p.oh, p.ow)
    return v[:p.images, :, :p.out_g].reshape(p.images, p.groups * p.out_g, p.oh, p.ow)


def layer_output(spec: LayerSpec, p: ConvProblem, out4: np.ndarray, dtype=np.int8) -> np.ndarray:
    """Canonical output -> the layer's own output layout (as ``dtype``)."""
    if spec.kind == "conv2d":
        return out4.astype(dtype)
    rows = out4[..., 0].transpose(2, 0, 1).reshape(p.h * p.batch, -1)
    return rows[:spec.input_shape[0]].astype(dtype)


def canonical_output(spec: LayerSpec, p: ConvProblem, y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`layer_output`: a tensor of the layer output's shape (e.g. a
    residual input) -> canonical ``[images, G * out_g, OH, OW]`` int64."""
    y = np.asarray(y, dtype=np.int64)
    return y if spec.kind == "conv2d" else _dense_rows_as_images(p, y)


def pack_output(p: ConvProblem, hw: HwConfig, out4: np.ndarray) -> bytes:
    """Inverse of :func:`unpack_output`: canonical ``[images, G * out_g, OH, OW]`` -> OUT
    region bytes (the layout a residual input is loaded from); padding is zero."""
    nob, bo = p.out_blocks, p.block_out
    padded = np.zeros((p.image_groups * p.batch, p.groups, nob * bo, p.oh, p.ow), dtype=np.int64)
    padded[:p.images, :, :p.out_g] = out4.reshape(p.images, p.groups, p.out_g, p.oh, p.ow)
    blocks = padded.reshape(p.image_groups, p.batch, p.groups, nob, bo, p.oh, p.ow)
    blocks = blocks.transpose(0, 2, 5, 6, 3, 1, 4).reshape(-1, p.batch, bo)
    return layout.pack_out(blocks, hw).tobytes()


def unpack_accumulators(p: ConvProblem, hw: HwConfig, raw) -> tuple[np.ndarray, np.ndarray]:
    """An accumulator output region (STORE ACC of blocks ``[ig, g, OH, OW, nob, pairs]``)
    -> canonical ``(acc_p, acc_n)`` int64 ``[images, G * out_g, OH, OW]``; a single
    accumulator is ``acc_p - acc_n``, returned as ``(acc, 0)``."""
    v = layout.unpack_acc(np.frombuffer(bytes(raw), dtype=np.uint8), hw)
    v = v.reshape(p.image_groups, p.groups, p.oh, p.ow, p.out_blocks, p.pairs, p.batch,
                  p.block_out)
    v = v.transpose(5, 0, 6, 1, 4, 7, 2, 3).reshape(p.pairs, p.image_groups * p.batch, p.groups,
                                                    p.out_blocks * p.block_out, p.oh, p.ow)
    v = v[:, :p.images, :, :p.out_g].reshape(p.pairs, p.images, p.groups * p.out_g, p.oh, p.ow)
    return (v[0], v[1]) if p.dual else (v[0], np.zeros_like(v[0]))


def weight_blocks(spec: LayerSpec, p: ConvProblem) -> np.ndarray:
    """``[G, nob, ncb, kh, kw, block_out, block_in]`` int8 weight blocks, zero padded."""
    w = np.asarray(spec.weight, dtype=np.int8).reshape(p.groups, p.out_g, p.cin_g, p.kh, p.kw)
    bo, bi = p.block_out, p.block_in
    padded = np.zeros((p.groups, p.out_blocks * bo, p.in_blocks * bi, p.kh, p.kw), dtype=np.int8)
    padded[:, :p.out_g, :p.cin_g] = w
    blocks = padded.reshape(p.groups, p.out_blocks, bo, p.in_blocks, bi, p.kh, p.kw)
    return blocks.transpose(0, 1, 3, 5, 6, 2, 4)


def par_image(spec: LayerSpec, p: ConvProblem, hw: HwConfig) -> np.ndarray:
    """PAR blocks ``[G * nob, par_block_bytes]``; padded channels get harmless values
    (multipliers 0, shift 1) so the ALU never traps on them."""
    width = p.out_blocks * p.block_out

    def per_channel(v, fill):
        out = np.full((p.groups, width), fill, dtype=np.int64)
        if v is not None:
            out[:, :p.out_g] = np.asarray(v, dtype=np.int64).reshape(p.groups, p.out_g)
        return out.reshape(-1)

    mult_p = per_channel(spec.mult_p, 0)
    fields = dict(t_lo=per_channel(spec.t_lo, 0), t_hi=per_channel(spec.t_hi, 0))
    if spec.has_residual:  # REQUANT residual reads Mr from this word (docs/isa.md, v1.6)
        fields[isa.RESIDUAL_MULT_PAR_FIELD] = per_channel(spec.residual_mult, 0)
    return layout.pack_par(hw, mult_p=mult_p,
                           mult_n=per_channel(spec.mult_n, 0) if p.dual else mult_p,
                           shift=per_channel(spec.shift, 1), bias=per_channel(spec.bias, 0),
                           **fields)


def zero_block_map(spec: LayerSpec, p: ConvProblem) -> np.ndarray:
    """Bool ``[G, nob, ncb, kh, kw]``: True where a weight block of this lowering (block_out
    output x block_in input channels at one kernel tap) is all zero, i.e. skipped.

    For dense and 1x1 layers these are the blocks of ``packing.zero_block_bitmap``; for
    larger kernels they are not (that bitmap cuts the ``C*kh*kw`` row view, this one cuts
    channels per tap), so block-sparse training for this accelerator should prune these."""
    return ~weight_blocks(spec, p).any(axis=(-1, -2))
