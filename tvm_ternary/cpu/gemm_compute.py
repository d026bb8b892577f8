"""What the tiled GEMM computes, as TIR blocks (no schedule): ``gemm_schedule`` tiles it
and tensorizes its register tile onto ``gemm_intrin``.

Blocks, over the padded domain (``spec.pixels_padded`` pixels, ``spec.rows_padded``
channels per group as ``NC`` vectors of ``L`` lanes, ``KS`` 4-byte reduction steps):

- ``decode``: ``wdec[g, c, s, l, t]``, the int8 weight {-1, 0, 1} of channel ``c L + l`` at
  ``k = 4 s + t`` from the ``lanes_2bit`` bytes (shift + mask - 1).
- ``dot`` (VNNI) or ``dot16`` + ``widen`` (AVX2): ``acc[g, p, c, l] = sum_{s, t}
  xu[4 word(g, p, s) + t] wdec[g, c, s, l, t]`` in int32; on AVX2 the sum
  runs in int16 pairs over ``spec.chunk`` steps (``acc16``) and is widened once per chunk.
- ``store``: ``out[obase[p] + n OC] = M[n] acc + corr[n] + bias[n]`` (int64) for the real
  pixels and channels only.

The input ``xu`` and output ``out`` are flat. ``word(g, p, s)`` is where reduction step
``s`` of pixel ``p`` sits in ``xu`` (in 4-byte words), in closed form from the spec's
window (a GEMM is a 1x1 window): a table lookup there would make the index loads reads of
the tensorized block, which no intrinsic description matches. Outputs go to
``obase[p] + n OC`` (a table: the store is not tensorized).
"""

from __future__ import annotations

from tvm.script import tirx as T

from .gemm_layout import STEP_K


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def activation_word(spec, g, p, s):
    """Word offset in ``xu`` of reduction step ``s`` (tap-major: ``tap_bytes / 4`` steps per
    tap) of pixel ``p`` (padded pixels repeat the last real one) in group ``g``. Steps past
    the window's meet zero weights and read inside its last tap (a ``min``, not a select:
    the region analysis widens a select to the hull of both branches, and tensorize then
    sees a read wider than the intrinsic's four bytes)."""
    batch, hp, wp, ctot = spec.nhwc
    oh, ow = spec.out_hw
    kh, kw = spec.window
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    ctw, cpw = ctot // STEP_K, (spec.tap_bytes or spec.k_padded) // STEP_K
    q = T.min(p, spec.pixels - 1)
    pixel = ((q // (oh * ow) * hp + q // ow % oh * sh) * wp + q % ow * sw) * ctw + g * (spec.x_group_stride // STEP_K)
    if (kh, kw) == (1, 1) and cpw * STEP_K == spec.k_padded:
        return pixel + s
    tap = s // cpw if kh * kw * cpw == spec.k_padded // STEP_K else T.min(s // cpw, kh * kw - 1)
    return pixel + (tap // kw * dh * wp + tap % kw * dw) * ctw + s % cpw


def make_compute(spec):
    """The unscheduled PrimFunc of ``spec`` (a ``gemm_kernel.GemmSpec``)."""
    G, NG, NGP, L, VB = spec.groups, spec.rows, spec.rows_padded, spec.lanes, spec.vector_bytes
    M, P, KS, KQ, NC = spec.pixels, spec.pixels_padded, spec.k_padded // STEP_K, spec.k_padded // 16, spec.rows_padded // spec.lanes
    XL, OL, OC = _prod(spec.x_shape), _prod(spec.out_shape), spec.out_channel_stride
    def word(g, p, s):
        return activation_word(spec, g, p, s)

    if spec.isa == "avx2":
        return _avx2(G, NG, NGP, L, VB, M, P, KS, KQ, NC, XL, OL, OC, word, spec.chunk)
    return _vnni(G, NG, NGP, L, VB, M, P, KS, KQ, NC, XL, OL, OC, word)


def _vnni(G, NG, NGP, L, VB, M, P, KS, KQ, NC, XL, OL, OC, word):
    @T.prim_func(s_tir=True)
    def gemm(xu: T.Buffer((XL,), "uint8"), wp: T.Buffer((G, NC, KQ, VB), "uint8"),
             obase: T.Buffer((P,), "int32"), mult: T.Buffer((G * NGP,), "int64"),
             corr: T.Buffer((G * NGP,), "int64"), bias: T.Buffer((G * NG,), "int64"),
             out: T.Buffer((OL,), "int64")):
        T.func_attr({"tirx.noalias": True})
        wdec = T.sblock_alloc_buffer((G, NC, KS, L, STEP_K), "int8")
        acc = T.sblock_alloc_buffer((G, P, NC, L), "int32")
        for g, c, s, l, t in T.grid(G, NC, KS, L, STEP_K):
            with T.sblock("decode"):
                vg, vc, vs, vl, vt = T.axis.remap("SSSSS", [g, c, s, l, t])
                wdec[vg, vc, vs, vl, vt] = T.Cast("int8", T.bitwise_and(T.shift_right(
                    wp[vg, vc, vs // 4, vl * 4 + vt], T.Cast("uint8", vs % 4 * 2)), T.uint8(3))) - T.int8(1)
        for g, p, c, l, s, t in T.grid(G, P, NC, L, KS, STEP_K):
            with T.sblock("dot"):
                vg, vp, vc, vl, vs, vt = T.axis.remap("SSSSRR", [g, p, c, l, s, t])
                with T.init():
                    acc[vg, vp, vc, vl] = 0
                acc[vg, vp, vc, vl] = acc[vg, vp, vc, vl] + T.Cast(
                    "int32", xu[word(vg, vp, vs) * 4 + vt]) * T.Cast("int32", wdec[vg, vc, vs, vl, vt])
        for g, p, c, l in T.grid(G, P, NC, L):
            with T.sblock("store"):
                vg, vp, vc, vl = T.axis.remap("SSSS", [g, p, c, l])
                if vp < M and vc * L + vl < NG:
                    out[obase[vp] + (vg * NG + vc * L + vl) * OC] = (
                        mult[vg * NGP + vc * L + vl] * T.Cast("int64", acc[vg, vp, vc, vl])
                        + corr[vg * NGP + vc * L + vl] + bias[vg * NG + vc * L + vl])

    return gemm


def _avx2(G, NG, NGP, L, VB, M, P, KS, KQ, NC, XL, OL, OC, word, CH):
    NCH = KS // CH

    @T.prim_func(s_tir=True)
    def gemm(xu: T.Buffer((XL,), "uint8"), wp: T.Buffer((G, NC, KQ, VB), "uint8"),
             obase: T.Buffer((P,), "int32"), mult: T.Buffer((G * NGP,), "int64"),
             corr: T.Buffer((G * NGP,), "int64"), bias: T.Buffer((G * NG,), "int64"),
             out: T.Buffer((OL,), "int64")):
        T.func_attr({"tirx.noalias": True})
        wdec = T.sblock_alloc_buffer((G, NC, KS, L, STEP_K), "int8")
        acc16 = T.sblock_alloc_buffer((G, P, NC, NCH, L, 2), "int16")
        acc = T.sblock_alloc_buffer((G, P, NC, L), "int32")
        for g, c, s, l, t in T.grid(G, NC, KS, L, STEP_K):
            with T.sblock("decode"):
                vg, vc, vs, vl, vt = T.axis.remap("SSSSS", [g, c, s, l, t])
                wdec[vg, vc, vs, vl, vt] = T.Cast("int8", T.bitwise_and(T.shift_right(
                    wp[vg, vc, vs // 4, vl * 4 + vt], T.Cast("uint8", vs % 4 * 2)), T.uint8(3))) - T.int8(1)
        for g, p, c, ch, l, h, si, tt in T.grid(G, P, NC, NCH, L, 2, CH, 2):
            with T.sblock("dot16"):
                vg, vp, vc, vch, vl, vh, vsi, vtt = T.axis.remap("SSSSSSRR", [g, p, c, ch, l, h, si, tt])
                with T.init():
                    acc16[vg, vp, vc, vch, vl, vh] = T.int16(0)
                acc16[vg, vp, vc, vch, vl, vh] = acc16[vg, vp, vc, vch, vl, vh] + T.Cast(
                    "int16", xu[word(vg, vp, vch * CH + vsi) * 4 + vh * 2 + vtt]) * T.Cast(
                    "int16", wdec[vg, vc, vch * CH + vsi, vl, vh * 2 + vtt])
        for g, p, c, l, ch, h in T.grid(G, P, NC, L, NCH, 2):
            with T.sblock("widen"):
                vg, vp, vc, vl, vch, vh = T.axis.remap("SSSSRR", [g, p, c, l, ch, h])
                with T.init():
                    acc[vg, vp, vc, vl] = 0
                acc[vg, vp, vc, vl] = acc[vg, vp, vc, vl] + T.Cast("int32", acc16[vg, vp, vc, vch, vl, vh])
        for g, p, c, l in T.grid(G, P, NC, L):
            with T.sblock("store"):
                vg, vp, vc, vl = T.axis.remap("SSSS", [g, p, c, l])
                if vp < M and vc * L + vl < NG:
                    out[obase[vp] + (vg * NG + vc * L + vl) * OC] = (
                        mult[vg * NGP + vc * L + vl] * T.Cast("int64", acc[vg, vp, vc, vl])
                        + corr[vg * NGP + vc * L + vl] + bias[vg * NG + vc * L + vl])

    return gemm
