"""Block-sparse ternary x int8 GEMV: all-zero weight blocks are skipped at compile time.

The weights are cut into blocks of ``rows`` output rows x one group of ``4 * lanes`` trits
(the ``blocked_2bit`` group); ``quant.packing.zero_block_bitmap`` finds the all-zero ones
and ``csr_blocks`` keeps only the others, CSR style: for row block ``rb`` the entries
``ptr[rb] .. ptr[rb + 1]`` name their group (``col``) and hold their packed bytes
(``[entry, row, lanes]``). The kernel walks only those entries, so its work and weight
traffic scale with the nonzero blocks.

Compute + schedule + ``tensorize``: the block dot product is the 2-bit-decode dot
intrinsic of ``cpu/intrin_trit.py`` (one group per call: AVX2 four ``pmaddubsw`` + one
``pmaddwd``, AVX-512 VNNI four ``vpdpbusd``), matched inside the data-dependent entry loop
(the entry and its group are opaque block iterators bound to ``ptr`` / ``col``); the lane
sums use the same module's lane-sum intrinsic. Codes ``u = w + 1`` as in the dense
kernels: a skipped block would have contributed ``sum u x - sum x = 0``, so the correction
subtracts the activation sums of the *visited* groups only (``seen``).

Dual-scale layers (TTQ, EC2T) use the intrinsic's dual form: a second accumulator over the
one-bit codes ``u >> 1`` of the same weight bytes sums ``acc_p`` (a skipped block adds 0
to it too), and ``z = Mp acc_p - Mn (acc_p - acc) + bias``. Batches loop inside the row
block (its weight blocks stay in L1 between batch rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError
from tvm_ternary.quant.packing import zero_block_bitmap

from .intrin_trit import AVX2, VNNI, Isa, dot_intrin, lane_sum_intrin, trit_term
from .layout import blocked_2bit, check_layer_dims, group_trits
from .parallel import row_loop
from .vector import lane_sum

# knob -> candidates, the first the default (``strategy.registry.Impl.knobs``): rows per
# block (the CSR layout and the zero-block granularity: fewer rows find more zero blocks),
# for symmetric and dual-scale layers (two accumulators per row: VNNI's 16 x 2 zmm spill)
KNOBS = {AVX2: {"rows": [8, 4, 16], "dual_rows": [8, 4], "unroll_rows": [True, False]},
         VNNI: {"rows": [16, 8, 4], "dual_rows": [8, 4, 16], "unroll_rows": [True, False]}}


def default_rows(isa: Isa, dual: bool = False) -> int:
    return KNOBS[isa]["dual_rows" if dual else "rows"][0]


@dataclass(frozen=True)
class CsrBlocks:
    ptr: np.ndarray     # int32 [row blocks + 1]
    col: np.ndarray     # int32 [max(nnz, 1)]: group index of each kept block
    blocks: np.ndarray  # uint8 [max(nnz, 1), rows, lanes]: its codes
    nnz: int

    @property
    def zero_fraction(self) -> float:
        total = (len(self.ptr) - 1) * self.groups
        return 1.0 - self.nnz / total if total else 0.0

    groups: int = 0


def csr_blocks(w_t: np.ndarray, rows: int, lanes: int) -> CsrBlocks:
    """Keep the blocks of ``w_t [N, K]`` that have a nonzero weight (CSR of blocks)."""
    group = group_trits(lanes)
    zero = zero_block_bitmap(w_t, (rows, group))           # [row blocks, groups]
    packed = blocked_2bit(w_t, rows, lanes)                # [NP, G * lanes]
    n_blocks, groups = zero.shape
    tiles = packed.reshape(n_blocks, rows, groups, lanes).transpose(0, 2, 1, 3)
    keep = ~zero
    rb, g = np.nonzero(keep)                               # row-major: grouped by row block
    ptr = np.zeros(n_blocks + 1, np.int32)
    ptr[1:] = np.cumsum(keep.sum(axis=1))
    nnz = len(g)
    col = np.zeros(max(nnz, 1), np.int32)
    col[:nnz] = g
    blocks = np.zeros((max(nnz, 1), rows, lanes), np.uint8)
    blocks[:nnz] = tiles[rb, g]
    return CsrBlocks(ptr, col, blocks, nnz, groups)


def block_zero_fraction(w_t: np.ndarray, isa: Isa, rows: int) -> float:
    """Fraction of all-zero blocks of ``rows`` x one group (what the kernel skips)."""
    zero = zero_block_bitmap(w_t, (rows, isa.group))
    return float(zero.mean()) if zero.size else 0.0


def _compute(batch: int, n: int, k: int, nnz: int, isa: Isa, rows: int, dual: bool):
    """The unscheduled compute (the entry loop is data dependent, everything else serial)."""
    B, N, K, R, L, LW, GT = batch, n, k, rows, isa.lanes, isa.acc_lanes, isa.group
    G = -(-k // GT)
    KP, NB, E = G * GT, -(-n // R), max(nnz, 1)
    acc_shape = (B, NB, R, 2, LW) if dual else (B, NB, R, LW)
    tot_shape = (B, NB, R, 2) if dual else (B, NB, R)
    # parallel for large layers (cpu/parallel.py), chosen here: sch.parallel refuses a loop
    # over blocks with opaque (data-dependent) iterators
    rows_loop = row_loop(n, k)

    @T.prim_func(s_tir=True)
    def gemv(x: T.Buffer((B, K), "int8"), ptr: T.Buffer((NB + 1,), "int32"), col: T.Buffer((E,), "int32"),
             blocks: T.Buffer((E, R, L), "uint8"), mult: T.Buffer((2, N), "int32"),
             bias: T.Buffer((N,), "int64"), z: T.Buffer((B, N), "int64")):
        T.func_attr({"tirx.noalias": True})
        xp = T.sblock_alloc_buffer((B, KP), "int8")
        sxg = T.sblock_alloc_buffer((B, G), "int32")    # activation sum per group
        seen = T.sblock_alloc_buffer((B, NB), "int32")  # ... summed over a row block's visited groups
        acc = T.sblock_alloc_buffer(acc_shape, "int32")
        tot = T.sblock_alloc_buffer(tot_shape, "int32")
        for b, kk in T.grid(B, KP):
            with T.sblock("pad"):
                vb, vk = T.axis.remap("SS", [b, kk])
                xp[vb, vk] = T.if_then_else(vk < K, x[vb, T.min(vk, K - 1)], T.int8(0))
        for b, g in T.grid(B, G):
            with T.sblock("group_sum"):  # one vector reduction per group (scalar: ~15 % of a 90 %-sparse call)
                vb, vg = T.axis.remap("SS", [b, g])
                sxg[vb, vg] = lane_sum(T.Cast(f"int32x{GT}", xp[vb, T.ramp(vg * GT, 1, GT)]), "int32")
        for nb in rows_loop(NB):
            for b in range(B):
                with T.sblock("seen_init"):
                    vnb, vb = T.axis.remap("SS", [nb, b])
                    seen[vb, vnb] = 0
                if dual:  # a Python bool: resolved when the script is parsed
                    for r, s, l in T.grid(R, 2, LW):
                        with T.sblock("acc_init"):
                            vnb, vb, vr, vs, vl = T.axis.remap("SSSSS", [nb, b, r, s, l])
                            acc[vb, vnb, vr, vs, vl] = 0
                else:
                    for r, l in T.grid(R, LW):
                        with T.sblock("acc_init"):
                            vnb, vb, vr, vl = T.axis.remap("SSSS", [nb, b, r, l])
                            acc[vb, vnb, vr, vl] = 0
                for e in range(ptr[nb + 1] - ptr[nb]):
                    with T.sblock("seen"):
                        vnb, vb = T.axis.remap("SS", [nb, b])
                        vg = T.axis.opaque(G, col[ptr[nb] + e])
                        seen[vb, vnb] = seen[vb, vnb] + sxg[vb, vg]
                    if dual:
                        for r, s, l, j, q in T.grid(R, 2, LW, 4, 4):
                            with T.sblock("dot"):
                                vnb, vb, vr, vs, vl, vj, vq = T.axis.remap("SSSSSRR", [nb, b, r, s, l, j, q])
                                ve = T.axis.opaque(E, ptr[nb] + e)
                                vg = T.axis.opaque(G, col[ptr[nb] + e])
                                acc[vb, vnb, vr, vs, vl] = acc[vb, vnb, vr, vs, vl] + trit_term(
                                    blocks[ve, vr, 4 * vl + vq], xp[vb, vg * GT + vj * L + 4 * vl + vq], vj, vs)
                    else:
                        for r, l, j, q in T.grid(R, LW, 4, 4):
                            with T.sblock("dot"):
                                vnb, vb, vr, vl, vj, vq = T.axis.remap("SSSSRR", [nb, b, r, l, j, q])
                                ve = T.axis.opaque(E, ptr[nb] + e)
                                vg = T.axis.opaque(G, col[ptr[nb] + e])
                                acc[vb, vnb, vr, vl] = acc[vb, vnb, vr, vl] + trit_term(
                                    blocks[ve, vr, 4 * vl + vq], xp[vb, vg * GT + vj * L + 4 * vl + vq], vj)
                if dual:
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
                            # acc_p = tot[.., 1]; acc_n = acc_p - acc, acc = tot[.., 0] - seen
                            z[vb, vnb * R + vr] = (
                                T.Cast("int64", mult[0, vnb * R + vr]) * T.Cast("int64", tot[vb, vnb, vr, 1])
                                - T.Cast("int64", mult[1, vnb * R + vr]) * (
                                    T.Cast("int64", tot[vb, vnb, vr, 1])
                                    - T.Cast("int64", tot[vb, vnb, vr, 0] - seen[vb, vnb]))
                                + bias[vnb * R + vr])
                else:
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
                            z[vb, vnb * R + vr] = T.Cast("int64", mult[0, vnb * R + vr]) * T.Cast(
                                "int64", tot[vb, vnb, vr] - seen[vb, vnb]) + bias[vnb * R + vr]

    return gemv


def _vectorize_pad(sch, isa: Isa) -> None:
    pad = sch.get_sblock("pad")
    _, vec = sch.split(sch.get_loops(pad)[-1], [None, isa.lanes])
    sch.vectorize(vec)


def make_sparse_gemv(batch: int, n: int, k: int, nnz: int, isa: Isa, dual: bool = False,
                     rows: int | None = None, unroll_rows: bool = True):
    """``gemv(x [B, K] int8, ptr, col, blocks, mult [2, N] int32, bias [N] int64,
    z [B, N] int64)`` for ``csr_blocks(w_t, rows, isa.lanes)`` with ``nnz`` blocks;
    ``rows`` (default the ISA's) and ``unroll_rows`` are the template's knobs."""
    check_layer_dims("sparse_gemv", batch, n, k)
    rows = default_rows(isa, dual) if rows is None else rows
    if not isinstance(rows, (int, np.integer)) or rows < 1:
        raise KernelConfigError(f"sparse_gemv: rows per block must be a positive int, got {rows!r}")
    if not isinstance(nnz, (int, np.integer)) or nnz < 0:
        raise KernelConfigError(f"sparse_gemv: nnz (kept blocks) must be an int >= 0, got {nnz!r}")
    sch = tvm.s_tir.Schedule(_compute(batch, n, k, nnz, isa, rows, dual))
    _vectorize_pad(sch, isa)
    dot, lanes, init = sch.get_sblock("dot"), sch.get_sblock("lanes"), sch.get_sblock("acc_init")
    _, _, _, r, *inner = sch.get_loops(dot)  # row block, batch, entry, row, [s,] l, j, q
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(inner[0], dot_intrin(isa, dual, 1))
    if unroll_rows:
        sch.unroll(r)
    lane_loop = sch.get_loops(lanes)[-1]
    sch.decompose_reduction(lanes, lane_loop)
    sch.tensorize(lane_loop, lane_sum_intrin(isa))
    kind = "dual_" if dual else ""
    return sch.mod["main"].with_attr(
        "global_symbol", f"ternary_{kind}sparse_gemv_{isa.name}_b{batch}_n{n}_k{k}_e{nnz}_r{rows}"
                         f"{'' if unroll_rows else '_nu'}")
