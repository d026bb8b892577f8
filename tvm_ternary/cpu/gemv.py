"""Ternary x int8 matrix-vector kernel: a compute definition, a schedule, and ``tensorize``
onto the 2-bit-decode dot intrinsics of ``cpu/intrin_trit.py`` (AVX2 ``pmaddubsw`` /
AVX-512 VNNI ``vpdpbusd``: one schedule, two intrinsics).

One PrimFunc computes the whole ``tlinear`` layer,
``z[b, n] = Mp acc_p - Mn acc_n + bias`` (int64; symmetric layers ``M * acc + bias``; with
``dequantize`` the fused epilogue's float32 ``float64(z) scale + bias`` instead),
from the unpadded int8 input, with ONE parallel launch: a serial prologue sums ``x``
(``sx``) and, when K does not fill whole k-chunks, zero-pads a copy of it; the parallel
row-block loop runs the tensorized dot products, the lane sums and the scaled epilogue.
The weights are ``layout.interleaved_2bit`` as ``[row blocks, groups, rows, lanes]``:
codes ``u = w + 1`` on the unsigned side of the multiply, ``sum u x - sum x`` is the dot
product; a row block's weights are one sequential stream and its ``rows`` rows share
every activation load.

Knobs (``KNOBS``, searched by the tuner through the strategy registry): ``rows`` per
row block (the weight layout's interleave; ``dual_rows`` for dual-scale layers, which keep
two accumulators per row), ``groups_per_call`` (the k-chunk one intrinsic call sums; AVX2's
int16 stage takes up to 16), ``unroll_rows``; on VNNI also ``decode``: ``shift`` (shift +
mask per field) or ``split`` (mask in place into one accumulator per field,
``cpu/intrin_split.py``: fewer uops, for L2-resident layers) with its own ``split_rows``;
``prefetch``: bytes ahead of each weight vector that the intrinsic prefetches (0: none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError
from tvm_ternary.strategy import generic

from .intrin_split import FIELDS, field_lanes, field_term, split_dot_intrin, split_lane_sum_intrin
from .intrin_trit import AVX2, VNNI, Isa, dot_intrin, lane_sum_intrin, trit_term
from .layout import check_layer_dims, interleaved_2bit
from .parallel import PARALLEL_MIN_WEIGHTS

# The template's space: knob -> candidates, the first being the default (measured on
# GEMV 4096, two threads: VNNI 8 rows symmetric and dual (16 rows' accumulators, 1 KiB,
# exceed TVM's stack limit: each row block then allocated, zeroed and freed a workspace
# and stored every accumulator after each update), AVX2 8 / 8; prefetch 8 KiB ahead on
# VNNI (after a torch fp32 call, medians: 4096^2 0.169 vs 0.178 ms at 4 KiB, 11008 x 4096
# 0.40 vs 0.52 ms; no prefetch is slower still), 1 KiB on AVX2, whose calls cover 16 groups
# (0.245 vs 0.266 and 0.67 vs 0.86 ms; 4 KiB was slower); see docs/cpu_kernels.md).
KNOBS = {
    VNNI: {"rows": [8, 16, 4], "dual_rows": [8, 4, 16], "groups_per_call": [1, 2, 4], "unroll_rows": [True, False],
           "decode": ["shift", "split"], "split_rows": [4, 2, 6], "prefetch": [8192, 0, 4096, 16384]},
    AVX2: {"rows": [8, 4, 16], "dual_rows": [8, 4], "groups_per_call": [16, 8, 4], "unroll_rows": [True, False],
           "prefetch": [1024, 0, 2048, 4096]},
}


def defaults(isa: Isa) -> dict:
    return {knob: choices[0] for knob, choices in KNOBS[isa].items()}


@dataclass(frozen=True)
class GemvPlan:
    """One GEMV's shape and knob values: the weight layout and the kernel both read it."""

    isa: Isa
    batch: int
    n: int
    k: int
    dual: bool = False
    rows: int = 0            # 0: the ISA default for a symmetric / dual layer
    groups_per_call: int = 0  # 0: the ISA default, shrunk to balance the chunks
    unroll_rows: bool = True
    split: bool = False      # field-split decode (cpu/intrin_split.py; VNNI, symmetric)
    prefetch: int = -1       # bytes ahead of each weight vector to prefetch; -1: the default
    dequantize: bool = False  # store float32 ``tdequantize(z)`` (the fused epilogue), not z

    def __post_init__(self):
        check_layer_dims(f"gemv_{self.isa.name}", self.batch, self.n, self.k)
        knobs = defaults(self.isa)
        for flag in ("dual", "unroll_rows", "split", "dequantize"):  # the compute's Python ifs need bools
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        if not self.rows:
            object.__setattr__(self, "rows", knobs["dual_rows" if self.dual else "rows"])
        if not self.groups_per_call:
            object.__setattr__(self, "groups_per_call", knobs["groups_per_call"])
        if self.prefetch == -1:
            object.__setattr__(self, "prefetch", knobs["prefetch"])
        if self.split and (self.isa is not VNNI or self.dual):
            raise KernelConfigError(f"gemv_{self.isa.name}: the field-split decode needs AVX-512 VNNI and a "
                                    "symmetric layer")
        if self.rows < 1:
            raise KernelConfigError(f"gemv_{self.isa.name}: rows per block must be >= 1, got {self.rows!r}")
        if self.prefetch < 0:
            raise KernelConfigError(f"gemv_{self.isa.name}: prefetch distance must be >= 0 bytes, got {self.prefetch!r}")
        if not 1 <= self.groups_per_call <= self.isa.max_groups:
            raise KernelConfigError(f"gemv_{self.isa.name}: groups_per_call must be in [1, {self.isa.max_groups}], "
                                    f"got {self.groups_per_call!r}")

    @classmethod
    def from_knobs(cls, isa: Isa, batch: int, n: int, k: int, dual: bool, knobs: dict,
                   dequantize: bool = False) -> "GemvPlan":
        """The plan for a layer under a tuner's (or the default) knob values."""
        split = knobs.get("decode") == "split" and not dual  # dual layers keep the shift decode
        rows = knobs["dual_rows"] if dual else knobs["split_rows"] if split else knobs["rows"]
        return cls(isa, batch, n, k, dual, rows=rows, groups_per_call=knobs["groups_per_call"],
                   unroll_rows=knobs["unroll_rows"], split=split, prefetch=knobs["prefetch"],
                   dequantize=dequantize)

    @property
    def groups(self) -> int:
        """Weight groups of the unpadded K."""
        return -(-self.k // self.isa.group)

    @property
    def chunk(self) -> int:
        """Groups per intrinsic call: ``groups_per_call`` shrunk so the chunks split the
        groups evenly (padding is then under one group per chunk)."""
        chunks = -(-self.groups // self.groups_per_call)
        return -(-self.groups // chunks)

    @property
    def padded_groups(self) -> int:
        return -(-self.groups // self.chunk) * self.chunk

    @property
    def row_blocks(self) -> int:
        return -(-self.n // self.rows)

    def pack(self, w_t: np.ndarray) -> np.ndarray:
        """``w_t [N, K]`` ternary -> ``[row_blocks, padded_groups, rows, lanes]`` uint8."""
        packed = interleaved_2bit(w_t, self.rows, self.isa.lanes, self.padded_groups)
        return packed.reshape(self.row_blocks, self.padded_groups, self.rows, self.isa.lanes)

    @property
    def symbol(self) -> str:
        """One symbol per shape and configuration: identical layers share one function,
        different ones never clash."""
        kind = "dual_" if self.dual else ""
        return (f"ternary_{kind}gemv_{self.isa.name}_b{self.batch}_n{self.n}_k{self.k}"
                f"_r{self.rows}_c{self.chunk}{'' if self.unroll_rows else '_nu'}{'_split' if self.split else ''}{f'_pf{self.prefetch}' if self.prefetch else ''}"
                f"{'_deq' if self.dequantize else ''}")


def compute(plan: GemvPlan) -> tvm.tirx.PrimFunc:
    """The unscheduled compute definition (every loop serial)."""
    isa, dual = plan.isa, plan.dual
    B, N, K, R = plan.batch, plan.n, plan.k, plan.rows
    L, LW, GT, G, NB = isa.lanes, isa.acc_lanes, isa.group, plan.padded_groups, plan.row_blocks
    KP = G * GT
    split = plan.split
    acc_shape = (B, NB, R, 2, LW) if dual else (B, NB, R, FIELDS, LW) if split else (B, NB, R, LW)
    tot_shape = (B, NB, R, 2) if dual else (B, NB, R)

    def dot_x(x, xp):
        """The activations the dot products read: ``x`` itself when K fills whole k-chunks
        (no copy, no workspace), else its zero-padded copy ``xp``."""
        return xp if KP > K else x

    def stored(z, n, scale, shift):
        """What the scale block writes for channel ``n``: the layer's ``z``, or with the
        dequantize epilogue (``scale``, ``shift``: its per-channel float32 operands)."""
        return generic.dequantized(z, scale[n], shift[n]) if plan.dequantize else z

    @T.macro(hygienic=True)
    def layer(x, w, mult, bias, out, scale, shift):
        # block-level buffers: the schedule primitives see them as the function's own
        xp = T.sblock_alloc_buffer((B, KP), "int8")
        sx = T.sblock_alloc_buffer((B,), "int32")
        acc = T.sblock_alloc_buffer(acc_shape, "int32")  # the accumulator registers' lanes
        tot = T.sblock_alloc_buffer(tot_shape, "int32")
        if KP > K:  # a Python bool: resolved when the script is parsed
            for b, kk in T.grid(B, KP):
                with T.sblock("pad"):
                    vb, vk = T.axis.remap("SS", [b, kk])
                    xp[vb, vk] = T.if_then_else(vk < K, x[vb, T.min(vk, K - 1)], T.int8(0))
        for b, kk in T.grid(B, K):
            with T.sblock("xsum"):
                vb, vk = T.axis.remap("SR", [b, kk])
                with T.init():
                    sx[vb] = 0
                sx[vb] = sx[vb] + T.Cast("int32", x[vb, vk])
        # Written inside the epilogue's row-block frame (the schedule cannot move the
        # epilogue under the row loop: it also reads the prologue's sx).
        for nb, b in T.grid(NB, B):
            if dual:  # a Python bool: resolved when the script is parsed
                for r, s, l, g, j, q in T.grid(R, 2, LW, G, 4, 4):
                    with T.sblock("dot"):
                        vnb, vb, vr, vs, vl, vg, vj, vq = T.axis.remap("SSSSSRRR", [nb, b, r, s, l, g, j, q])
                        with T.init():
                            acc[vb, vnb, vr, vs, vl] = 0
                        acc[vb, vnb, vr, vs, vl] = acc[vb, vnb, vr, vs, vl] + trit_term(
                            w[vnb, vg, vr, 4 * vl + vq], dot_x(x, xp)[vb, vg * GT + vj * L + 4 * vl + vq], vj, vs)
                for r, s, l in T.grid(R, 2, LW):
                    with T.sblock("lanes"):
                        vnb, vb, vr, vs, vl = T.axis.remap("SSSSR", [nb, b, r, s, l])
                        with T.init():
                            tot[vb, vnb, vr, vs] = 0
                        tot[vb, vnb, vr, vs] = tot[vb, vnb, vr, vs] + acc[vb, vnb, vr, vs, vl]
                for r in range(R):
                    with T.sblock("scale"):
                        vnb, vb, vr = T.axis.remap("SSS", [nb, b, r])
                        T.where(nb * R + r < N)
                        # acc_p = tot[.., 1]; acc_n = acc_p - acc, acc = tot[.., 0] - sx
                        out[vb, vnb * R + vr] = stored(
                            T.Cast("int64", mult[0, vnb * R + vr]) * T.Cast("int64", tot[vb, vnb, vr, 1])
                            - T.Cast("int64", mult[1, vnb * R + vr]) * (
                                T.Cast("int64", tot[vb, vnb, vr, 1]) - T.Cast("int64", tot[vb, vnb, vr, 0] - sx[vb]))
                            + bias[vnb * R + vr], vnb * R + vr, scale, shift)
            elif split:
                for r, f, l, g, q in T.grid(R, FIELDS, LW, G, 4):
                    with T.sblock("dot"):
                        vnb, vb, vr, vf, vl, vg, vq = T.axis.remap("SSSSSRR", [nb, b, r, f, l, g, q])
                        with T.init():
                            acc[vb, vnb, vr, vf, vl] = 0
                        acc[vb, vnb, vr, vf, vl] = acc[vb, vnb, vr, vf, vl] + field_term(
                            w[vnb, vg, vr, 4 * vl + vq], dot_x(x, xp)[vb, vg * GT + vf * L + 4 * vl + vq], vf)
                for r, f, l in T.grid(R, FIELDS, LW):
                    with T.sblock("lanes"):
                        vnb, vb, vr, vf, vl = T.axis.remap("SSSRR", [nb, b, r, f, l])
                        with T.init():
                            tot[vb, vnb, vr] = 0
                        tot[vb, vnb, vr] = tot[vb, vnb, vr] + field_lanes(acc[vb, vnb, vr, vf, vl], vf)
                for r in range(R):
                    with T.sblock("scale"):
                        vnb, vb, vr = T.axis.remap("SSS", [nb, b, r])
                        T.where(nb * R + r < N)
                        out[vb, vnb * R + vr] = stored(T.Cast("int64", mult[0, vnb * R + vr]) * T.Cast(
                            "int64", tot[vb, vnb, vr] - sx[vb]) + bias[vnb * R + vr], vnb * R + vr, scale, shift)
            else:
                for r, l, g, j, q in T.grid(R, LW, G, 4, 4):
                    with T.sblock("dot"):
                        vnb, vb, vr, vl, vg, vj, vq = T.axis.remap("SSSSRRR", [nb, b, r, l, g, j, q])
                        with T.init():
                            acc[vb, vnb, vr, vl] = 0
                        acc[vb, vnb, vr, vl] = acc[vb, vnb, vr, vl] + trit_term(
                            w[vnb, vg, vr, 4 * vl + vq], dot_x(x, xp)[vb, vg * GT + vj * L + 4 * vl + vq], vj)
                for r, l in T.grid(R, LW):
                    with T.sblock("lanes"):
                        vnb, vb, vr, vl = T.axis.remap("SSSR", [nb, b, r, l])
                        with T.init():
                            tot[vb, vnb, vr] = 0
                        tot[vb, vnb, vr] = tot[vb, vnb, vr] + acc[vb, vnb, vr, vl]
                for r in range(R):
                    with T.sblock("scale"):
                        vnb, vb, vr = T.axis.remap("SSS", [nb, b, r])
                        T.where(nb * R + r < N)
                        out[vb, vnb * R + vr] = stored(T.Cast("int64", mult[0, vnb * R + vr]) * T.Cast(
                            "int64", tot[vb, vnb, vr] - sx[vb]) + bias[vnb * R + vr], vnb * R + vr, scale, shift)

    if plan.dequantize:  # a Python bool: the fused epilogue's operands join the signature
        @T.prim_func(s_tir=True)
        def gemv(x: T.Buffer((B, K), "int8"), w: T.Buffer((NB, G, R, L), "uint8"),
                 mult: T.Buffer((2, N), "int32"), bias: T.Buffer((N,), "int64"),
                 scale: T.Buffer((N,), "float32"), shift: T.Buffer((N,), "float32"),
                 y: T.Buffer((B, N), "float32")):
            T.func_attr({"tirx.noalias": True})
            layer(x, w, mult, bias, y, scale, shift)
    else:
        @T.prim_func(s_tir=True)
        def gemv(x: T.Buffer((B, K), "int8"), w: T.Buffer((NB, G, R, L), "uint8"),
                 mult: T.Buffer((2, N), "int32"), bias: T.Buffer((N,), "int64"), z: T.Buffer((B, N), "int64")):
            T.func_attr({"tirx.noalias": True})
            layer(x, w, mult, bias, z, None, None)

    return gemv


def schedule(plan: GemvPlan) -> tvm.tirx.PrimFunc:
    """``compute(plan)`` scheduled: row blocks in parallel (serial for small layers, where
    waking the thread pool costs more than the work: ``cpu/parallel.py``), the group loop
    split into intrinsic calls, rows innermost but one so they share activation loads."""
    sch = tvm.s_tir.Schedule(compute(plan))
    dot, lanes = sch.get_sblock("dot"), sch.get_sblock("lanes")
    nb, _, r, *inner = sch.get_loops(dot)
    g = inner.pop(-2 if plan.split else -3)  # inner: [s,] l, j, q or f, l, q
    go, gi = sch.split(g, [None, plan.chunk])
    sch.reorder(go, r, gi, *inner)
    if plan.n * plan.k > PARALLEL_MIN_WEIGHTS:  # before tensorize: it checks the dataflow
        sch.parallel(nb)

    init = sch.decompose_reduction(dot, go)
    sch.vectorize(sch.get_loops(init)[-1])  # vectorize before decompose (DESIGN.md)
    dot_name = (split_dot_intrin(plan.isa, plan.chunk, plan.prefetch) if plan.split
                else dot_intrin(plan.isa, plan.dual, plan.chunk, plan.prefetch))
    sch.tensorize(gi if plan.chunk > 1 else inner[0], dot_name)
    if plan.unroll_rows:
        sch.unroll(r)
    lane_loop = sch.get_loops(lanes)[-2 if plan.split else -1]  # split: the (field, lane) pair
    sch.decompose_reduction(lanes, lane_loop)
    sch.tensorize(lane_loop, split_lane_sum_intrin(plan.isa) if plan.split else lane_sum_intrin(plan.isa))
    return sch.mod["main"].with_attr("global_symbol", plan.symbol)

