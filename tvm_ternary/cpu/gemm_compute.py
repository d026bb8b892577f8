"""What the tiled GEMM computes, as TIR blocks (no schedule): ``gemm_schedule`` tiles it
and tensorizes its register tile onto ``gemm_intrin``.

Blocks, over the padded domain (``spec.pixels_padded`` pixels, ``spec.rows_padded``
channels per group as ``NC`` vectors of ``L`` lanes, ``KS`` 4-byte reduction steps):

- ``decode``: ``wdec[g, v, s, l, t]``, the int8 weight {-1, 0, 1} of channel ``c L + l`` at
  ``k = 4 s + t`` from the ``lanes_2bit`` bytes (shift + mask - 1), ``v = c``. Dual-scale
  kernels have two vectors per channel vector, ``v = 2c`` the weights and ``v = 2c + 1``
  the one-bit codes of ``w = +1`` (``code >> 1``) of the same bytes, so the same dot
  yields ``acc_p = sum x[w = +1]`` beside ``acc`` (the GEMV's dual path, as a GEMM).
- ``dot`` + ``combine`` (VNNI) or ``dot16`` + ``widen`` (AVX2): ``acc[g, p, c, l] =
  sum_{s, t} xu[4 word(g, p, s) + t] wdec[g, c, s, l, t]`` in int32. VNNI sums each K block
  of ``spec.k_block_steps`` steps in ``acc_blk`` and adds the blocks into ``acc`` (so the
  schedule can decode one block of weights at a time); on AVX2 the sum runs in int16
  pairs over ``spec.chunk`` steps (``acc16``) and is widened once per chunk.
- ``store``: ``out[obase[p] + n OC] = M[n] acc + M_p[n] acc_p + corr[n] + bias[n]`` (int64)
  for the real pixels and channels only; ``M = Mn``, ``M_p = Mp - Mn`` and ``corr``
  removes the activation bias: ``Mp acc_p - Mn acc_n = (Mp - Mn) acc_p + Mn acc``; a fused
  epilogue (``gemm_epilogue``) turns that ``z`` into the int8 value stored.

The input ``xu`` and output ``out`` are flat. ``word(g, p, s)`` is where reduction step
``s`` of pixel ``p`` sits in ``xu`` (in 4-byte words), in closed form from the spec's
window (a GEMM is a 1x1 window): a table lookup there would make the index loads reads of
the tensorized block, which no intrinsic description matches. Outputs go to
``obase[p] + n OC`` (a table: the store is not tensorized).
"""

from __future__ import annotations

from tvm.script import tirx as T

from . import gemm_epilogue
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
    M, P, KS, KQ = spec.pixels, spec.pixels_padded, spec.k_padded // STEP_K, spec.k_padded // 16
    D = spec.vectors_per_channel_vector
    NC = spec.rows_padded // L          # channel vectors
    NV = NC * D                         # accumulator vectors
    XL, OL, OC = _prod(spec.x_shape), _prod(spec.out_shape), spec.out_channel_stride
    (E0S, E0D), (E1S, E1D), (E2S, E2D) = gemm_epilogue.operand_types(spec.epilogue, G * NG, OL)
    OD = gemm_epilogue.out_dtype(spec.epilogue)

    def stored(z, e0, e1, e2, n, flat):
        return gemm_epilogue.stored(spec.epilogue, spec.clamp, z, e0, e1, e2, n, flat)

    def word(g, p, s):
        return activation_word(spec, g, p, s)

    def weight(wp, g, v, s, l, t):
        code = T.bitwise_and(T.shift_right(wp[g, v // D, s // 4, l * 4 + t], T.Cast("uint8", s % 4 * 2)), T.uint8(3))
        if D == 1:
            return T.Cast("int8", code) - T.int8(1)
        return T.Select(v % 2 == 0, T.Cast("int8", code) - T.int8(1), T.Cast("int8", T.shift_right(code, T.uint8(1))))

    def scaled(acc, mult, mult_p, corr, g, p, c, l):
        n = g * NGP + c * L + l
        if D == 1:
            return mult[n] * T.Cast("int64", acc[g, p, c, l]) + corr[n]
        return (mult[n] * T.Cast("int64", acc[g, p, 2 * c, l])
                + mult_p[n] * T.Cast("int64", acc[g, p, 2 * c + 1, l]) + corr[n])

    if spec.isa == "avx2":
        CH = spec.chunk
        NCH = KS // CH

        @T.prim_func(s_tir=True)
        def gemm(xu: T.Buffer((XL,), "uint8"), wp: T.Buffer((G, NC, KQ, VB), "uint8"),
                 obase: T.Buffer((P,), "int32"), mult: T.Buffer((G * NGP,), "int64"),
                 mult_p: T.Buffer((G * NGP,), "int64"), corr: T.Buffer((G * NGP,), "int64"),
                 bias: T.Buffer((G * NG,), "int64"), e0: T.Buffer(E0S, E0D), e1: T.Buffer(E1S, E1D),
                 e2: T.Buffer(E2S, E2D), out: T.Buffer((OL,), OD)):
            T.func_attr({"tirx.noalias": True})
            wdec = T.sblock_alloc_buffer((G, NV, KS, L, STEP_K), "int8")
            acc16 = T.sblock_alloc_buffer((G, P, NV, NCH, L, 2), "int16")
            acc = T.sblock_alloc_buffer((G, P, NV, L), "int32")
            for g, v, s, l, t in T.grid(G, NV, KS, L, STEP_K):
                with T.sblock("decode"):
                    vg, vv, vs, vl, vt = T.axis.remap("SSSSS", [g, v, s, l, t])
                    wdec[vg, vv, vs, vl, vt] = weight(wp, vg, vv, vs, vl, vt)
            for g, p, v, ch, l, h, si, tt in T.grid(G, P, NV, NCH, L, 2, CH, 2):
                with T.sblock("dot16"):
                    vg, vp, vv, vch, vl, vh, vsi, vtt = T.axis.remap("SSSSSSRR", [g, p, v, ch, l, h, si, tt])
                    with T.init():
                        acc16[vg, vp, vv, vch, vl, vh] = T.int16(0)
                    acc16[vg, vp, vv, vch, vl, vh] = acc16[vg, vp, vv, vch, vl, vh] + T.Cast(
                        "int16", xu[word(vg, vp, vch * CH + vsi) * 4 + vh * 2 + vtt]) * T.Cast(
                        "int16", wdec[vg, vv, vch * CH + vsi, vl, vh * 2 + vtt])
            for g, p, v, l, ch, h in T.grid(G, P, NV, L, NCH, 2):
                with T.sblock("widen"):
                    vg, vp, vv, vl, vch, vh = T.axis.remap("SSSSRR", [g, p, v, l, ch, h])
                    with T.init():
                        acc[vg, vp, vv, vl] = 0
                    acc[vg, vp, vv, vl] = acc[vg, vp, vv, vl] + T.Cast("int32", acc16[vg, vp, vv, vch, vl, vh])
            for g, p, c, l in T.grid(G, P, NC, L):
                with T.sblock("store"):
                    vg, vp, vc, vl = T.axis.remap("SSSS", [g, p, c, l])
                    if vp < M and vc * L + vl < NG:
                        out[obase[vp] + (vg * NG + vc * L + vl) * OC] = stored(
                            scaled(acc, mult, mult_p, corr, vg, vp, vc, vl) + bias[vg * NG + vc * L + vl],
                            e0, e1, e2, vg * NG + vc * L + vl, obase[vp] + (vg * NG + vc * L + vl) * OC)

        return gemm

    KB = spec.k_block_steps
    NKB = KS // KB

    @T.prim_func(s_tir=True)
    def gemm(xu: T.Buffer((XL,), "uint8"), wp: T.Buffer((G, NC, KQ, VB), "uint8"),
             obase: T.Buffer((P,), "int32"), mult: T.Buffer((G * NGP,), "int64"),
             mult_p: T.Buffer((G * NGP,), "int64"), corr: T.Buffer((G * NGP,), "int64"),
             bias: T.Buffer((G * NG,), "int64"), e0: T.Buffer(E0S, E0D), e1: T.Buffer(E1S, E1D),
             e2: T.Buffer(E2S, E2D), out: T.Buffer((OL,), OD)):
        T.func_attr({"tirx.noalias": True})
        wdec = T.sblock_alloc_buffer((G, NV, KS, L, STEP_K), "int8")
        acc_blk = T.sblock_alloc_buffer((G, P, NV, NKB, L), "int32")
        acc = T.sblock_alloc_buffer((G, P, NV, L), "int32")
        for g, v, s, l, t in T.grid(G, NV, KS, L, STEP_K):
            with T.sblock("decode"):
                vg, vv, vs, vl, vt = T.axis.remap("SSSSS", [g, v, s, l, t])
                wdec[vg, vv, vs, vl, vt] = weight(wp, vg, vv, vs, vl, vt)
        for g, p, v, kb, l, s, t in T.grid(G, P, NV, NKB, L, KB, STEP_K):
            with T.sblock("dot"):
                vg, vp, vv, vkb, vl, vs, vt = T.axis.remap("SSSSSRR", [g, p, v, kb, l, s, t])
                with T.init():
                    acc_blk[vg, vp, vv, vkb, vl] = 0
                acc_blk[vg, vp, vv, vkb, vl] = acc_blk[vg, vp, vv, vkb, vl] + T.Cast(
                    "int32", xu[word(vg, vp, vkb * KB + vs) * 4 + vt]) * T.Cast(
                    "int32", wdec[vg, vv, vkb * KB + vs, vl, vt])
        for g, p, v, l, kb in T.grid(G, P, NV, L, NKB):
            with T.sblock("combine"):
                vg, vp, vv, vl, vkb = T.axis.remap("SSSSR", [g, p, v, l, kb])
                with T.init():
                    acc[vg, vp, vv, vl] = 0
                acc[vg, vp, vv, vl] = acc[vg, vp, vv, vl] + acc_blk[vg, vp, vv, vkb, vl]
        for g, p, c, l in T.grid(G, P, NC, L):
            with T.sblock("store"):
                vg, vp, vc, vl = T.axis.remap("SSSS", [g, p, c, l])
                if vp < M and vc * L + vl < NG:
                    out[obase[vp] + (vg * NG + vc * L + vl) * OC] = stored(
                        scaled(acc, mult, mult_p, corr, vg, vp, vc, vl) + bias[vg * NG + vc * L + vl],
                        e0, e1, e2, vg * NG + vc * L + vl, obase[vp] + (vg * NG + vc * L + vl) * OC)

    return gemm
