"""Ternary x int8 matrix-vector kernel on AVX2 ``pmaddubsw``: TIR with LLVM intrinsics.

``acc[b, n] = sum_k w[n, k] x[b, k]`` for weights in the ``blocked_2bit`` layout. The codes
``u = w + 1`` in {0, 1, 2} sit on pmaddubsw's unsigned side, the int8 activations on the
signed side, and ``sum_k u x - sum_k x`` gives the ternary dot product (``sx`` = the row
sums of ``x``, computed once per input row). A pair sum is at most 2 * 2 * 127 = 508, so
int16 lanes can take ``CHUNK`` = 16 groups (64 pmaddubsw, 32512 < 2**15) before one
``pmaddwd`` widens them to int32. ``ROWS`` output rows share every activation load
(8 measured faster than 2 or 4 on GEMV 4096).
The intrinsic expression is written as one nested expression: naming vector temporaries
makes TVM allocate workspaces (DESIGN.md measured 6x slower).
"""

from __future__ import annotations

from tvm.script import tirx as T

from .layout import GROUP

ROWS = 8
CHUNK = 16


def _pmadd(codes, x_vec):
    return T.call_llvm_pure_intrin("int16x16", "llvm.x86.avx2.pmadd.ub.sw", codes, x_vec)


def make_gemv(batch: int, rows_padded: int, k_padded: int):
    """A PrimFunc ``gemv(x [B, KP] int8, w [NP, KP/4] uint8, sx [B] int32, acc [B, NP] int32)``."""
    groups = k_padded // GROUP
    chunks = (groups + CHUNK - 1) // CHUNK
    B, NP, KP, G, R = batch, rows_padded, k_padded, groups, ROWS

    @T.prim_func
    def gemv(x: T.Buffer((B, KP), "int8"), w: T.Buffer((NP, G * 32), "uint8"),
             sx: T.Buffer((B,), "int32"), acc_out: T.Buffer((B, NP), "int32")):
        T.func_attr({"tirx.noalias": True})
        for nb in T.parallel(NP // R):
            for b in range(B):
                acc = T.alloc_buffer((R * 8,), "int32", scope="local")
                for r in T.unroll(R):
                    acc[T.ramp(r * 8, 1, 8)] = T.broadcast(0, 8)
                for c in range(chunks):
                    a16 = T.alloc_buffer((R * 16,), "int16", scope="local")
                    for r in T.unroll(R):
                        a16[T.ramp(r * 16, 1, 16)] = T.broadcast(T.int16(0), 16)
                    for gi in range(T.min(CHUNK, G - c * CHUNK)):
                        for r in T.unroll(R):
                            a16[T.ramp(r * 16, 1, 16)] = (
                                a16[T.ramp(r * 16, 1, 16)]
                                + _pmadd(T.bitwise_and(w[nb * R + r, T.ramp((c * CHUNK + gi) * 32, 1, 32)],
                                                       T.broadcast(T.uint8(3), 32)),
                                         x[b, T.ramp((c * CHUNK + gi) * 128, 1, 32)])
                                + _pmadd(T.bitwise_and(T.shift_right(w[nb * R + r, T.ramp((c * CHUNK + gi) * 32, 1, 32)],
                                                                     T.broadcast(T.uint8(2), 32)),
                                                       T.broadcast(T.uint8(3), 32)),
                                         x[b, T.ramp((c * CHUNK + gi) * 128 + 32, 1, 32)])
                                + _pmadd(T.bitwise_and(T.shift_right(w[nb * R + r, T.ramp((c * CHUNK + gi) * 32, 1, 32)],
                                                                     T.broadcast(T.uint8(4), 32)),
                                                       T.broadcast(T.uint8(3), 32)),
                                         x[b, T.ramp((c * CHUNK + gi) * 128 + 64, 1, 32)])
                                + _pmadd(T.shift_right(w[nb * R + r, T.ramp((c * CHUNK + gi) * 32, 1, 32)],
                                                       T.broadcast(T.uint8(6), 32)),
                                         x[b, T.ramp((c * CHUNK + gi) * 128 + 96, 1, 32)]))
                    for r in T.unroll(R):
                        acc[T.ramp(r * 8, 1, 8)] = acc[T.ramp(r * 8, 1, 8)] + T.call_llvm_pure_intrin(
                            "int32x8", "llvm.x86.avx2.pmadd.wd", a16[T.ramp(r * 16, 1, 16)],
                            T.broadcast(T.int16(1), 16))
                for r in T.unroll(R):
                    acc_out[b, nb * R + r] = (acc[r * 8] + acc[r * 8 + 1] + acc[r * 8 + 2] + acc[r * 8 + 3]
                                              + acc[r * 8 + 4] + acc[r * 8 + 5] + acc[r * 8 + 6]
                                              + acc[r * 8 + 7]) - sx[b]

    # One symbol per shape: identical layers share one function, different ones never clash.
    return gemv.with_attr("global_symbol", f"ternary_gemv_avx2_b{B}_n{NP}_k{KP}")
