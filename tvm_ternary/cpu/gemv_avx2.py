"""Ternary x int8 matrix-vector kernel on AVX2 ``pmaddubsw``: TIR with LLVM intrinsics.

One PrimFunc computes the whole ``tlinear`` of a symmetric layer,
``z[b, n] = M[n] * sum_k w[n, k] x[b, k] + bias[n]`` (int64), from the unpadded int8
input: a serial prologue copies ``x`` into a zero-padded buffer and sums each input row
(``sx``), the parallel body runs the dot products, and each row block finishes with the
scaled epilogue. Fusing the three saved the separate pad / row-sum / epilogue kernels and
their VM calls (0.30 -> see docs/results; the kernel alone was 0.23 ms on GEMV 4096).

Weights are in the ``interleaved_2bit`` layout with ``LANES = 32`` (a row block's weights
are one sequential stream). The codes ``u = w + 1``
in {0, 1, 2} sit on pmaddubsw's unsigned side, the int8 activations on the signed side,
and ``sum_k u x - sum_k x`` is the ternary dot product. A pair sum is at most
2 * 2 * 127 = 508, so int16 lanes take ``CHUNK`` = 16 groups (64 pmaddubsw, 32512 < 2**15)
before one ``pmaddwd`` widens them to int32. ``ROWS`` output rows share every activation
load (8 measured faster than 2 or 4 on GEMV 4096).
The intrinsic expression is written as one nested expression: naming vector temporaries
makes TVM allocate workspaces (DESIGN.md measured 6x slower).
"""

from __future__ import annotations

from tvm.script import tirx as T

from .layout import check_layer_dims, group_trits
from .parallel import row_loop
from .vector import dual_scaled, lane_sum, plus_codes, trit_codes

ROWS = 8
CHUNK = 16
LANES = 32  # bytes per weight vector (one ymm register)
# The dual kernel's two int16 accumulators per row: 8 rows measured as fast as or faster
# than 4 on GEMV 4096 (0.47-0.48 vs 0.48-0.61 ms).
DUAL_ROWS = 8


def rows(dual: bool) -> int:
    """Output rows per block (the weight layout's interleave) of the symmetric / dual kernel."""
    return DUAL_ROWS if dual else ROWS


def _pmadd(codes, x_vec):
    return T.call_llvm_pure_intrin("int16x16", "llvm.x86.avx2.pmadd.ub.sw", codes, x_vec)


def make_gemv(batch: int, n: int, k: int, dual: bool = False):
    """``gemv(x [B, K] int8, w [NB, G*rows(dual)*32] uint8, mult [2, N] int32, bias [N] int64,
    z [B, N] int64)``: the whole ternary linear layer, with
    ``w = interleaved_2bit(w_t, rows(dual), LANES)``. Symmetric (``mult[0]`` is M) unless
    ``dual``: then a second ``pmaddubsw`` per field on the one-bit codes of the same weight
    bytes also sums ``acc_p = sum x[w = +1]``, and ``z = Mp acc_p - Mn (acc_p - acc) + bias``
    (the symmetric kernel is generated without it, so its speed is unchanged)."""
    check_layer_dims("gemv_avx2", batch, n, k)
    rows_loop = row_loop(n, k)  # serial for small layers (see cpu/parallel.py)
    group = group_trits(LANES)
    groups = (k + group - 1) // group
    chunks = (groups + CHUNK - 1) // CHUNK
    B, N, K, G, R, KP = batch, n, k, groups, rows(dual), groups * group
    NB = (n + R - 1) // R

    @T.prim_func
    def gemv(x: T.Buffer((B, K), "int8"), w: T.Buffer((NB, G * R * LANES), "uint8"),
             mult: T.Buffer((2, N), "int32"), bias: T.Buffer((N,), "int64"),
             z: T.Buffer((B, N), "int64")):
        T.func_attr({"tirx.noalias": True})
        xp = T.alloc_buffer((B, KP), "int8")
        sx = T.alloc_buffer((B,), "int32")
        # Accumulator slices per row block, allocated once: a buffer allocated inside the
        # parallel body costs a workspace allocation per task.
        acc = T.alloc_buffer((NB, R * 8), "int32")
        a16 = T.alloc_buffer((NB, R * 16), "int16")
        if dual:  # a Python bool: resolved when the script is parsed
            accp = T.alloc_buffer((NB, R * 8), "int32")
            a16p = T.alloc_buffer((NB, R * 16), "int16")
        for b in range(B):
            for kk in range(KP):
                xp[b, kk] = T.if_then_else(kk < K, x[b, T.min(kk, K - 1)], T.int8(0))
            sx[b] = 0
            for kk in range(K):
                sx[b] = sx[b] + T.Cast("int32", x[b, kk])
        for nb in rows_loop(NB):
            for b in range(B):
                for r in T.unroll(R):
                    acc[nb, T.ramp(r * 8, 1, 8)] = T.broadcast(0, 8)
                    if dual:
                        accp[nb, T.ramp(r * 8, 1, 8)] = T.broadcast(0, 8)
                for c in range(chunks):
                    for r in T.unroll(R):
                        a16[nb, T.ramp(r * 16, 1, 16)] = T.broadcast(T.int16(0), 16)
                        if dual:
                            a16p[nb, T.ramp(r * 16, 1, 16)] = T.broadcast(T.int16(0), 16)
                    for gi in range(T.min(CHUNK, G - c * CHUNK)):
                        for r in T.unroll(R):
                            a16[nb, T.ramp(r * 16, 1, 16)] = (
                                a16[nb, T.ramp(r * 16, 1, 16)]
                                + _pmadd(trit_codes(w[nb, T.ramp(((c * CHUNK + gi) * R + r) * 32, 1, 32)], 0, LANES),
                                         xp[b, T.ramp((c * CHUNK + gi) * 128, 1, 32)])
                                + _pmadd(trit_codes(w[nb, T.ramp(((c * CHUNK + gi) * R + r) * 32, 1, 32)], 1, LANES),
                                         xp[b, T.ramp((c * CHUNK + gi) * 128 + 32, 1, 32)])
                                + _pmadd(trit_codes(w[nb, T.ramp(((c * CHUNK + gi) * R + r) * 32, 1, 32)], 2, LANES),
                                         xp[b, T.ramp((c * CHUNK + gi) * 128 + 64, 1, 32)])
                                + _pmadd(trit_codes(w[nb, T.ramp(((c * CHUNK + gi) * R + r) * 32, 1, 32)], 3, LANES),
                                         xp[b, T.ramp((c * CHUNK + gi) * 128 + 96, 1, 32)]))
                            if dual:  # |pair sum| <= 256: 64 of them fit int16 like above
                                a16p[nb, T.ramp(r * 16, 1, 16)] = (
                                    a16p[nb, T.ramp(r * 16, 1, 16)]
                                    + _pmadd(plus_codes(w[nb, T.ramp(((c * CHUNK + gi) * R + r) * 32, 1, 32)], 0, LANES),
                                             xp[b, T.ramp((c * CHUNK + gi) * 128, 1, 32)])
                                    + _pmadd(plus_codes(w[nb, T.ramp(((c * CHUNK + gi) * R + r) * 32, 1, 32)], 1, LANES),
                                             xp[b, T.ramp((c * CHUNK + gi) * 128 + 32, 1, 32)])
                                    + _pmadd(plus_codes(w[nb, T.ramp(((c * CHUNK + gi) * R + r) * 32, 1, 32)], 2, LANES),
                                             xp[b, T.ramp((c * CHUNK + gi) * 128 + 64, 1, 32)])
                                    + _pmadd(plus_codes(w[nb, T.ramp(((c * CHUNK + gi) * R + r) * 32, 1, 32)], 3, LANES),
                                             xp[b, T.ramp((c * CHUNK + gi) * 128 + 96, 1, 32)]))
                    for r in T.unroll(R):
                        acc[nb, T.ramp(r * 8, 1, 8)] = acc[nb, T.ramp(r * 8, 1, 8)] + T.call_llvm_pure_intrin(
                            "int32x8", "llvm.x86.avx2.pmadd.wd", a16[nb, T.ramp(r * 16, 1, 16)],
                            T.broadcast(T.int16(1), 16))
                        if dual:
                            accp[nb, T.ramp(r * 8, 1, 8)] = accp[nb, T.ramp(r * 8, 1, 8)] + T.call_llvm_pure_intrin(
                                "int32x8", "llvm.x86.avx2.pmadd.wd", a16p[nb, T.ramp(r * 16, 1, 16)],
                                T.broadcast(T.int16(1), 16))
                for r in T.unroll(R):
                    if nb * R + r < N:
                        if dual:
                            z[b, nb * R + r] = dual_scaled(
                                mult[0, nb * R + r], mult[1, nb * R + r],
                                lane_sum(acc[nb, T.ramp(r * 8, 1, 8)], "int32") - sx[b],
                                lane_sum(accp[nb, T.ramp(r * 8, 1, 8)], "int32"), bias[nb * R + r])
                        else:
                            z[b, nb * R + r] = T.Cast("int64", mult[0, nb * R + r]) * T.Cast(
                                "int64", lane_sum(acc[nb, T.ramp(r * 8, 1, 8)], "int32") - sx[b]
                            ) + bias[nb * R + r]

    # One symbol per shape: identical layers share one function, different ones never clash.
    kind = "dual_" if dual else ""
    return gemv.with_attr("global_symbol", f"ternary_{kind}gemv_avx2_b{B}_n{N}_k{K}")
