"""Block-sparse ternary x int8 GEMV: all-zero weight blocks are skipped at compile time.

The weights are cut into blocks of ``rows`` output rows x one group of ``4 * lanes`` trits
(the ``blocked_2bit`` group); ``quant.packing.zero_block_bitmap`` finds the all-zero ones
and ``csr_blocks`` keeps only the others, CSR style: for row block ``rb`` the entries
``ptr[rb] .. ptr[rb + 1]`` name their group (``col``) and hold their packed bytes (the
block's rows interleaved, as in ``interleaved_2bit``). The kernel walks only those
entries, so its work and weight traffic scale with the nonzero blocks.

Dot products use the codes ``u = w + 1`` as the dense kernels do; a skipped block would
have contributed ``sum u x - sum x = 0``, so the correction subtracts the activation sums
of the *visited* groups only (``sxg``, per group, computed once in the prologue).
AVX2: four ``pmaddubsw`` then one ``pmaddwd`` per visited block (no int16 chunking: the
blocks of a row are not contiguous); AVX-512 VNNI: four ``vpdpbusd``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm.script import tirx as T

from tvm_ternary.quant.packing import zero_block_bitmap

from .layout import check_layer_dims, blocked_2bit, group_trits
from .parallel import row_loop
from .vector import lane_sum, trit_codes


@dataclass(frozen=True)
class Isa:
    name: str
    lanes: int       # bytes per weight vector
    acc_lanes: int   # int32 lanes per accumulator vector
    rows: int


AVX2 = Isa("avx2", 32, 8, 8)
VNNI512 = Isa("vnni", 64, 16, 16)


@dataclass(frozen=True)
class CsrBlocks:
    ptr: np.ndarray     # int32 [row blocks + 1]
    col: np.ndarray     # int32 [max(nnz, 1)]: group index of each kept block
    blocks: np.ndarray  # uint8 [max(nnz, 1), rows * lanes]: its codes, rows interleaved
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
    blocks = np.zeros((max(nnz, 1), rows * lanes), np.uint8)
    blocks[:nnz] = tiles[rb, g].reshape(nnz, rows * lanes)
    return CsrBlocks(ptr, col, blocks, nnz, groups)


def block_zero_fraction(w_t: np.ndarray, isa: Isa) -> float:
    """Fraction of all-zero blocks at ``isa``'s block shape (what the kernel skips)."""
    zero = zero_block_bitmap(w_t, (isa.rows, group_trits(isa.lanes)))
    return float(zero.mean()) if zero.size else 0.0


def _avx2_dot(acc, codes, x_vecs):
    def pmadd(u, xv):
        return T.call_llvm_pure_intrin("int16x16", "llvm.x86.avx2.pmadd.ub.sw", u, xv)

    pairs = pmadd(codes[0], x_vecs[0]) + pmadd(codes[1], x_vecs[1]) + pmadd(codes[2], x_vecs[2]) \
        + pmadd(codes[3], x_vecs[3])
    return acc + T.call_llvm_pure_intrin("int32x8", "llvm.x86.avx2.pmadd.wd", pairs,
                                         T.broadcast(T.int16(1), 16))


def _vnni_dot(acc, codes, x_vecs):
    for u, xv in zip(codes, x_vecs):
        acc = T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512", acc, u, xv)
    return acc



def _codes(w_vec, lanes: int):
    """The four 2-bit code vectors of one weight vector (fields j = 0..3)."""
    return [trit_codes(w_vec, j, lanes) for j in range(4)]


def _x_vectors(xp, b, base, lanes: int):
    """The four activation vectors one weight vector multiplies (fields j = 0..3)."""
    return [xp[b, T.ramp(base + j * lanes, 1, lanes)] for j in range(4)]


def make_sparse_gemv(batch: int, n: int, k: int, nnz: int, isa: Isa):
    """``gemv(x [B, K] int8, ptr, col, blocks, mult [2, N] int32, bias [N] int64,
    z [B, N] int64)`` for ``csr_blocks(w_t, isa.rows, isa.lanes)`` with ``nnz`` blocks."""
    check_layer_dims("sparse_gemv", batch, n, k)
    rows_loop = row_loop(n, k)  # serial for small layers (see cpu/parallel.py)
    L, A, R = isa.lanes, isa.acc_lanes, isa.rows
    group = group_trits(L)
    G = (k + group - 1) // group
    B, N, K, KP, NB, E = batch, n, k, G * group, (n + R - 1) // R, max(nnz, 1)
    dot = _avx2_dot if isa is AVX2 else _vnni_dot

    @T.prim_func
    def gemv(x: T.Buffer((B, K), "int8"), ptr: T.Buffer((NB + 1,), "int32"),
             col: T.Buffer((E,), "int32"), blocks: T.Buffer((E, R * L), "uint8"),
             mult: T.Buffer((2, N), "int32"), bias: T.Buffer((N,), "int64"),
             z: T.Buffer((B, N), "int64")):
        T.func_attr({"tirx.noalias": True})
        xp = T.alloc_buffer((B, KP), "int8")
        sxg = T.alloc_buffer((B, G), "int32")
        # per row block, allocated once (inside the parallel body: a workspace call per task)
        acc = T.alloc_buffer((NB, R * A), "int32")
        seen = T.alloc_buffer((NB,), "int32")
        for b in range(B):
            for kk in range(KP):
                xp[b, kk] = T.if_then_else(kk < K, x[b, T.min(kk, K - 1)], T.int8(0))
            for g in range(G):
                sxg[b, g] = 0
                for i in range(group):
                    sxg[b, g] = sxg[b, g] + T.Cast("int32", xp[b, g * group + i])
        for rb in rows_loop(NB):
            for b in range(B):
                seen[rb] = 0
                for r in T.unroll(R):
                    acc[rb, T.ramp(r * A, 1, A)] = T.broadcast(0, A)
                for e in range(ptr[rb], ptr[rb + 1]):
                    for r in T.unroll(R):
                        acc[rb, T.ramp(r * A, 1, A)] = dot(
                            acc[rb, T.ramp(r * A, 1, A)], _codes(blocks[e, T.ramp(r * L, 1, L)], L),
                            _x_vectors(xp, b, col[e] * group, L))
                    seen[rb] = seen[rb] + sxg[b, col[e]]
                for r in T.unroll(R):
                    if rb * R + r < N:
                        z[b, rb * R + r] = T.Cast("int64", mult[0, rb * R + r]) * T.Cast(
                            "int64", lane_sum(acc[rb, T.ramp(r * A, 1, A)], "int32") - seen[rb]) + bias[rb * R + r]

    return gemv.with_attr("global_symbol", f"ternary_sparse_gemv_{isa.name}_b{B}_n{N}_k{K}_e{nnz}")
