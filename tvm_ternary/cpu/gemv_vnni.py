"""Ternary x int8 matrix-vector kernel on AVX-512 VNNI ``vpdpbusd``: TIR with LLVM intrinsics.

The same whole-layer PrimFunc as ``gemv_avx2`` (serial prologue: zero-padded copy of
``x`` and its row sums; parallel dot products; scaled epilogue ``z = M acc + bias``), on
512-bit vectors: the ``interleaved_2bit`` layout with ``LANES = 64`` (256 trits per
64-byte group), and ``vpdpbusd`` multiplies the unsigned codes ``u = w + 1`` by the signed int8
activations and adds groups of four straight into int32 lanes, so there is no int16
stage to chunk and no ``pmaddwd``. Chosen only for targets whose LLVM CPU has
AVX-512 VNNI (``tvm_ternary.target.cpu_features``); AVX2 stays the floor.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .layout import check_layer_dims, group_trits
from .parallel import row_loop
from .vector import dual_scaled, lane_sum, plus_codes, trit_codes

ROWS = 16  # measured faster than 8 or 4 on GEMV 4096 (more rows per activation load)
LANES = 64  # bytes per weight vector (one zmm register)
# The dual kernel keeps two accumulators per row: 16 rows would need all 32 zmm for them
# and spill (measured 0.43 vs 0.30 ms on GEMV 4096).
DUAL_ROWS = 8


def rows(dual: bool) -> int:
    """Output rows per block (the weight layout's interleave) of the symmetric / dual kernel."""
    return DUAL_ROWS if dual else ROWS


def _dpbusd(acc, codes, x_vec):
    return T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512", acc, codes, x_vec)


def make_gemv(batch: int, n: int, k: int, dual: bool = False):
    """``gemv(x [B, K] int8, w [NB, G*rows(dual)*64] uint8, mult [2, N] int32, bias [N] int64,
    z [B, N] int64)``: the whole ternary linear layer, with
    ``w = interleaved_2bit(w_t, rows(dual), LANES)``. Symmetric (``mult[0]`` is M) unless
    ``dual``: then a second ``vpdpbusd`` per field on the one-bit codes of the same weight
    bytes also sums ``acc_p = sum x[w = +1]``, and ``z = Mp acc_p - Mn (acc_p - acc) + bias``
    (the symmetric kernel is generated without it, so its speed is unchanged)."""
    check_layer_dims("gemv_vnni", batch, n, k)
    rows_loop = row_loop(n, k)  # serial for small layers (see cpu/parallel.py)
    group = group_trits(LANES)
    groups = (k + group - 1) // group
    B, N, K, G, R, KP = batch, n, k, groups, rows(dual), groups * group
    NB = (n + R - 1) // R

    @T.prim_func
    def gemv(x: T.Buffer((B, K), "int8"), w: T.Buffer((NB, G * R * LANES), "uint8"),
             mult: T.Buffer((2, N), "int32"), bias: T.Buffer((N,), "int64"),
             z: T.Buffer((B, N), "int64")):
        T.func_attr({"tirx.noalias": True})
        xp = T.alloc_buffer((B, KP), "int8")
        sx = T.alloc_buffer((B,), "int32")
        # One accumulator slice per row block, allocated once: a buffer allocated inside the
        # parallel body costs a workspace allocation per task.
        acc = T.alloc_buffer((NB, R * 16), "int32")
        if dual:  # a Python bool: resolved when the script is parsed
            accp = T.alloc_buffer((NB, R * 16), "int32")
        for b in range(B):
            for kk in range(KP):
                xp[b, kk] = T.if_then_else(kk < K, x[b, T.min(kk, K - 1)], T.int8(0))
            sx[b] = 0
            for kk in range(K):
                sx[b] = sx[b] + T.Cast("int32", x[b, kk])
        for nb in rows_loop(NB):
            for b in range(B):
                for r in T.unroll(R):
                    acc[nb, T.ramp(r * 16, 1, 16)] = T.broadcast(0, 16)
                    if dual:
                        accp[nb, T.ramp(r * 16, 1, 16)] = T.broadcast(0, 16)
                for g in range(G):
                    for r in T.unroll(R):
                        acc[nb, T.ramp(r * 16, 1, 16)] = _dpbusd(_dpbusd(_dpbusd(_dpbusd(
                            acc[nb, T.ramp(r * 16, 1, 16)],
                            trit_codes(w[nb, T.ramp((g * R + r) * 64, 1, 64)], 0, LANES), xp[b, T.ramp(g * 256, 1, 64)]),
                            trit_codes(w[nb, T.ramp((g * R + r) * 64, 1, 64)], 1, LANES), xp[b, T.ramp(g * 256 + 64, 1, 64)]),
                            trit_codes(w[nb, T.ramp((g * R + r) * 64, 1, 64)], 2, LANES), xp[b, T.ramp(g * 256 + 128, 1, 64)]),
                            trit_codes(w[nb, T.ramp((g * R + r) * 64, 1, 64)], 3, LANES), xp[b, T.ramp(g * 256 + 192, 1, 64)])
                        if dual:
                            accp[nb, T.ramp(r * 16, 1, 16)] = _dpbusd(_dpbusd(_dpbusd(_dpbusd(
                                accp[nb, T.ramp(r * 16, 1, 16)],
                                plus_codes(w[nb, T.ramp((g * R + r) * 64, 1, 64)], 0, LANES), xp[b, T.ramp(g * 256, 1, 64)]),
                                plus_codes(w[nb, T.ramp((g * R + r) * 64, 1, 64)], 1, LANES), xp[b, T.ramp(g * 256 + 64, 1, 64)]),
                                plus_codes(w[nb, T.ramp((g * R + r) * 64, 1, 64)], 2, LANES), xp[b, T.ramp(g * 256 + 128, 1, 64)]),
                                plus_codes(w[nb, T.ramp((g * R + r) * 64, 1, 64)], 3, LANES), xp[b, T.ramp(g * 256 + 192, 1, 64)])
                for r in T.unroll(R):
                    if nb * R + r < N:
                        if dual:
                            z[b, nb * R + r] = dual_scaled(
                                mult[0, nb * R + r], mult[1, nb * R + r],
                                lane_sum(acc[nb, T.ramp(r * 16, 1, 16)], "int32") - sx[b],
                                lane_sum(accp[nb, T.ramp(r * 16, 1, 16)], "int32"), bias[nb * R + r])
                        else:
                            z[b, nb * R + r] = T.Cast("int64", mult[0, nb * R + r]) * T.Cast(
                                "int64", lane_sum(acc[nb, T.ramp(r * 16, 1, 16)], "int32") - sx[b]
                            ) + bias[nb * R + r]

    kind = "dual_" if dual else ""
    return gemv.with_attr("global_symbol", f"ternary_{kind}gemv_vnni_b{B}_n{N}_k{K}")
