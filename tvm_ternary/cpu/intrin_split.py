"""Field-split tensor intrinsics for the AVX-512 VNNI ternary dot product: decode by mask only.

The 2-bit field ``f`` of a weight byte, masked in place (``w & (3 << 2f)``), is
``4**f * u`` with ``u = w + 1``: at most 128, still an unsigned byte for ``vpdpbusd``. So
each field gets its own accumulator (``C[f, l]``, a multiple of ``4**f``) and the
decode is one ``vpand`` per field instead of ``vpsrlw`` + ``vpand`` (per row and group:
4 ands + 4 ``vpdpbusd``, 8 uops instead of 11); the lane sum shifts each field's
accumulator back, ``sum_{f, l} C[f, l] >> 2f``, exact because every product in ``C[f]``
is a multiple of ``4**f``. int32 headroom: a lane adds at most 4 * 128 * 128 per group,
so K up to 2**23 trits. AVX2's ``pmaddubsw`` cannot take it (its int16 pair sums of
``128 * 127 * 2`` would saturate), so this is VNNI only; four accumulators per row make
it a few-rows kernel (rows 4: 16 accumulators of 32 zmm).

Semantics (desc): ``C[f, l] += sum_{g, q} (W[g, 4l + q] & (3 << 2f)) * X[g * 4 lanes_b +
f * lanes_b + 4l + q]``; ``O += sum_{f, l} C[f, l] >> 2f``. Kernels spell their compute
with ``field_term`` / ``field_lanes`` so ``tensorize`` matches.
"""

from __future__ import annotations

from functools import reduce

from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError

from .intrin_trit import VNNI, Isa, prefetch_ahead, register_once

FIELDS = 4


def field_mask(f):
    """``3 << 2f`` as a uint8 (``f`` a loop variable or an int)."""
    return T.shift_left(T.uint8(3), T.Cast("uint8", 2 * f))


def field_term(w_byte, x_val, f):
    """One product of the desc: ``(w & (3 << 2f)) * x`` in int32 (``4**f u x``)."""
    return T.Cast("int32", T.bitwise_and(w_byte, field_mask(f))) * T.Cast("int32", x_val)


def field_lanes(acc_val, f):
    """One lane of field ``f`` back at scale 1 (exact: a multiple of ``4**f``)."""
    return T.shift_right(acc_val, 2 * f)


def _dot_desc(isa: Isa, groups: int):
    lw, lb, gt = isa.acc_lanes, isa.lanes, isa.group

    @T.prim_func(s_tir=True)
    def desc(w: T.handle, x: T.handle, c: T.handle):
        W = T.match_buffer(w, (groups, 1, lb), "uint8", offset_factor=1, strides=[T.int32(), T.int32(), 1])
        X = T.match_buffer(x, (groups * gt,), "int8", offset_factor=1)
        C = T.match_buffer(c, (FIELDS, lw), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:FIELDS, 0:lw], W[0:groups, 0, 0:lb], X[0:groups * gt])
            T.writes(C[0:FIELDS, 0:lw])
            if groups > 1:  # no extent-1 loop in a desc (tensorize cannot match one)
                for g, f, l, q in T.grid(groups, FIELDS, lw, 4):
                    with T.sblock("update"):
                        vf, vl, vg, vq = T.axis.remap("SSRR", [f, l, g, q])
                        C[vf, vl] = C[vf, vl] + field_term(W[vg, 0, 4 * vl + vq], X[vg * gt + vf * lb + 4 * vl + vq], vf)
            else:
                for f, l, q in T.grid(FIELDS, lw, 4):
                    with T.sblock("update"):
                        vf, vl, vq = T.axis.remap("SSR", [f, l, q])
                        C[vf, vl] = C[vf, vl] + field_term(W[0, 0, 4 * vl + vq], X[vf * lb + 4 * vl + vq], vf)

    return desc


def _field_dot(isa: Isa, W, X, C, f: int, groups: int):
    """``C[f]`` plus field ``f`` of ``groups`` groups: a ``vpdpbusd`` chain, one expression."""
    lb, gt = isa.lanes, isa.group
    mask = T.broadcast(T.uint8(3 << (2 * f)), lb)
    return reduce(lambda acc, g: T.call_llvm_pure_intrin(
        "int32x16", "llvm.x86.avx512.vpdpbusd.512", acc, T.bitwise_and(W[g, 0, T.ramp(0, 1, lb)], mask),
        X[T.ramp(g * gt + f * lb, 1, lb)]), range(groups), C[f, T.ramp(0, 1, isa.acc_lanes)])


def _dot_impl(isa: Isa, groups: int, prefetch: int):
    lw, lb, gt = isa.acc_lanes, isa.lanes, isa.group

    @T.prim_func(s_tir=True)
    def impl(w: T.handle, x: T.handle, c: T.handle):
        W = T.match_buffer(w, (groups, 1, lb), "uint8", offset_factor=1, strides=[T.int32(), T.int32(), 1])
        X = T.match_buffer(x, (groups * gt,), "int8", offset_factor=1)
        C = T.match_buffer(c, (FIELDS, lw), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:FIELDS, 0:lw], W[0:groups, 0, 0:lb], X[0:groups * gt])
            T.writes(C[0:FIELDS, 0:lw])
            if prefetch > 0:  # a Python int: resolved when the script is parsed
                for g in T.unroll(groups):
                    T.evaluate(prefetch_ahead(W, g, prefetch))
            C[0, T.ramp(0, 1, lw)] = _field_dot(isa, W, X, C, 0, groups)
            C[1, T.ramp(0, 1, lw)] = _field_dot(isa, W, X, C, 1, groups)
            C[2, T.ramp(0, 1, lw)] = _field_dot(isa, W, X, C, 2, groups)
            C[3, T.ramp(0, 1, lw)] = _field_dot(isa, W, X, C, 3, groups)

    return impl


def _lane_sum_desc(isa: Isa):
    lw = isa.acc_lanes

    @T.prim_func(s_tir=True)
    def desc(c: T.handle, o: T.handle):
        C = T.match_buffer(c, (FIELDS, lw), "int32", offset_factor=1)
        O = T.match_buffer(o, (1,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(O[0], C[0:FIELDS, 0:lw])
            T.writes(O[0])
            for f, l in T.grid(FIELDS, lw):
                with T.sblock("update"):
                    vf, vl = T.axis.remap("RR", [f, l])
                    O[0] = O[0] + field_lanes(C[vf, vl], vf)

    return desc


def _lane_sum_impl(isa: Isa):
    lw = isa.acc_lanes

    def field(C, f: int):
        lanes = C[f, T.ramp(0, 1, lw)]
        shifted = lanes if f == 0 else T.shift_right(lanes, T.broadcast(2 * f, lw))
        return T.call_llvm_pure_intrin("int32", "llvm.vector.reduce.add", shifted)

    @T.prim_func(s_tir=True)
    def impl(c: T.handle, o: T.handle):
        C = T.match_buffer(c, (FIELDS, lw), "int32", offset_factor=1)
        O = T.match_buffer(o, (1,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(O[0], C[0:FIELDS, 0:lw])
            T.writes(O[0])
            O[0] = O[0] + field(C, 0) + field(C, 1) + field(C, 2) + field(C, 3)

    return impl


def split_dot_intrin(isa: Isa, groups: int, prefetch: int = 0) -> str:
    """The registered field-split dot intrinsic over ``groups`` groups of one row
    (``prefetch``: bytes ahead of each weight vector, 0 for none)."""
    if isa is not VNNI:
        raise KernelConfigError(f"field-split decode needs AVX-512 VNNI (int32 multiply-add), not {isa.name}")
    if groups < 1:
        raise KernelConfigError(f"{isa.name} split dot intrinsic: groups per call must be >= 1, got {groups!r}")
    name = f"tternary_{isa.name}_split_trit_dot_g{groups}" + (f"_pf{prefetch}" if prefetch else "")
    return register_once(name, _dot_desc(isa, groups), _dot_impl(isa, groups, prefetch))


def split_lane_sum_intrin(isa: Isa) -> str:
    """The registered intrinsic adding the four field accumulators' lanes, rescaled."""
    return register_once(f"tternary_{isa.name}_split_lane_sum", _lane_sum_desc(isa), _lane_sum_impl(isa))
