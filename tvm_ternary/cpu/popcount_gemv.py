"""Ternary x ternary dense kernel on bit planes (``T.popcount``): TIR for AVX2 and up.

For activations in {-1, 0, 1} (a ``tquantize_ternary`` / ``tthreshold`` producer: see
``relax.ternary_inputs``) both operands become sign-magnitude bit planes, 64 trits per uint64
word (``quant.packing``'s ``bitplane`` format: nonzero mask, sign mask).

* symmetric layers (``Mp == Mn``), the 2-popcount product of ``quant.popcount``:
  ``m = nz_x & nz_w``, ``acc = popcount(m) - 2 popcount(m & (s_x ^ s_w))``;
* dual-scale layers (TTQ, EC2T) need ``acc_p`` and ``acc_n`` apart: with the weight
  masks ``P = (w = +1)`` and ``N = (w = -1)`` and ``s_x`` inside ``nz_x``,
  ``acc_p = popcount(nz_x & P) - 2 popcount(s_x & P)``, likewise ``acc_n``: 4 popcounts.

The prologue packs the activations once (two ``pmovmskb`` per 64 trits: the sign bit of
``x`` is ``s_x``, the sign bit of ``x | -x`` is ``nz_x``); words are processed ``WORDS``
at a time as uint64 vectors, whose popcount LLVM lowers to ``vpshufb`` + ``vpsadbw``
on AVX2 and to ``vpopcntq`` where the CPU has AVX-512 VPOPCNTDQ. The epilogue writes
``z = Mp acc_p - Mn acc_n + bias`` (int64), as ``tlinear`` defines it.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError
from tvm_ternary.quant.packing import pack

from .layout import check_layer_dims
from .parallel import row_loop
from .vector import lane_sum

WORDS = 4  # uint64 words per vector: one ymm register (AVX2)
WORDS_VPOPCNTDQ = 8  # one zmm register, where vpopcntq counts it in one instruction


def padded_words(k: int, words: int = WORDS) -> int:
    if words not in (WORDS, WORDS_VPOPCNTDQ):
        raise KernelConfigError(f"popcount_gemv: words per vector must be {WORDS} or "
                                f"{WORDS_VPOPCNTDQ}, got {words!r}")
    count = (k + 63) // 64
    return (count + words - 1) // words * words


def weight_planes(w_t: np.ndarray, dual: bool, words: int = WORDS) -> np.ndarray:
    """uint64 ``[N, 2, padded_words(K)]``: (nonzero, sign) planes, or (P, N) masks if dual."""
    planes = pack(w_t, "bitplane")  # [N, 2, ceil(K / 64)]
    if dual:
        nz, sign = planes[:, 0], planes[:, 1]
        planes = np.stack([nz & ~sign, sign], axis=1)  # sign implies nonzero: sign = (w = -1)
    out = np.zeros((planes.shape[0], 2, padded_words(w_t.shape[1], words)), np.uint64)
    out[:, :, :planes.shape[2]] = planes
    return out


def _movmsk(v):
    return T.Cast("uint64", T.Cast("uint32", T.call_llvm_pure_intrin("int32", "llvm.x86.avx2.pmovmskb", v)))


def _word(v_lo, v_hi):
    return T.bitwise_or(_movmsk(v_lo), T.shift_left(_movmsk(v_hi), T.uint64(32)))


def _nonzero(v):
    """``x | -x``: its sign bit is set exactly where ``x != 0``."""
    return T.bitwise_or(v, T.broadcast(T.int8(0), 32) - v)


def _hsum(buf, row, base, lanes: int):
    return T.Cast("int64", lane_sum(buf[row, T.ramp(base, 1, lanes)], "uint64"))


def make_popcount_gemv(batch: int, n: int, k: int, dual: bool, words: int = WORDS):
    """``gemv(x [B, K] int8 in {-1,0,1}, w [N, 2, WP] uint64, mult [2, N] int32,
    bias [N] int64, z [B, N] int64)`` with ``w = weight_planes(w_t, dual, words)``;
    ``words`` uint64 per vector (``WORDS``, or ``WORDS_VPOPCNTDQ`` on such CPUs)."""
    check_layer_dims("popcount_gemv", batch, n, k)
    rows_loop = row_loop(n, k)  # serial for small layers (see cpu/parallel.py)
    B, N, K, WP, V = batch, n, k, padded_words(k, words), words
    KP = WP * 64

    @T.prim_func
    def symmetric(x: T.Buffer((B, K), "int8"), w: T.Buffer((N, 2, WP), "uint64"),
                  mult: T.Buffer((2, N), "int32"), bias: T.Buffer((N,), "int64"),
                  z: T.Buffer((B, N), "int64")):
        T.func_attr({"tirx.noalias": True})
        xp = T.alloc_buffer((B, KP), "int8")
        nzx = T.alloc_buffer((B, WP), "uint64")
        sx = T.alloc_buffer((B, WP), "uint64")
        for b in range(B):
            for kk in range(KP):
                xp[b, kk] = T.if_then_else(kk < K, x[b, T.min(kk, K - 1)], T.int8(0))
            for j in range(WP):
                sx[b, j] = _word(xp[b, T.ramp(j * 64, 1, 32)], xp[b, T.ramp(j * 64 + 32, 1, 32)])
                nzx[b, j] = _word(_nonzero(xp[b, T.ramp(j * 64, 1, 32)]),
                                  _nonzero(xp[b, T.ramp(j * 64 + 32, 1, 32)]))
        cnt = T.alloc_buffer((N, 2 * V), "uint64")
        for o in rows_loop(N):
            for b in range(B):
                cnt[o, T.ramp(0, 1, V)] = T.broadcast(T.uint64(0), V)
                cnt[o, T.ramp(V, 1, V)] = T.broadcast(T.uint64(0), V)
                for j in range(WP // V):
                    cnt[o, T.ramp(0, 1, V)] = cnt[o, T.ramp(0, 1, V)] + T.popcount(
                        T.bitwise_and(nzx[b, T.ramp(j * V, 1, V)], w[o, 0, T.ramp(j * V, 1, V)]))
                    cnt[o, T.ramp(V, 1, V)] = cnt[o, T.ramp(V, 1, V)] + T.popcount(T.bitwise_and(
                        T.bitwise_and(nzx[b, T.ramp(j * V, 1, V)], w[o, 0, T.ramp(j * V, 1, V)]),
                        T.bitwise_xor(sx[b, T.ramp(j * V, 1, V)], w[o, 1, T.ramp(j * V, 1, V)])))
                z[b, o] = (T.Cast("int64", mult[0, o]) * (_hsum(cnt, o, 0, V) - 2 * _hsum(cnt, o, V, V))
                           + bias[o])

    @T.prim_func
    def dual_scale(x: T.Buffer((B, K), "int8"), w: T.Buffer((N, 2, WP), "uint64"),
                   mult: T.Buffer((2, N), "int32"), bias: T.Buffer((N,), "int64"),
                   z: T.Buffer((B, N), "int64")):
        T.func_attr({"tirx.noalias": True})
        xp = T.alloc_buffer((B, KP), "int8")
        nzx = T.alloc_buffer((B, WP), "uint64")
        sx = T.alloc_buffer((B, WP), "uint64")
        for b in range(B):
            for kk in range(KP):
                xp[b, kk] = T.if_then_else(kk < K, x[b, T.min(kk, K - 1)], T.int8(0))
            for j in range(WP):
                sx[b, j] = _word(xp[b, T.ramp(j * 64, 1, 32)], xp[b, T.ramp(j * 64 + 32, 1, 32)])
                nzx[b, j] = _word(_nonzero(xp[b, T.ramp(j * 64, 1, 32)]),
                                  _nonzero(xp[b, T.ramp(j * 64 + 32, 1, 32)]))
        cnt = T.alloc_buffer((N, 4 * V), "uint64")
        for o in rows_loop(N):
            for b in range(B):
                for q in T.unroll(4):
                    cnt[o, T.ramp(q * V, 1, V)] = T.broadcast(T.uint64(0), V)
                for j in range(WP // V):
                    for p in T.unroll(2):  # p = 0: w = +1 mask, p = 1: w = -1 mask
                        cnt[o, T.ramp(2 * p * V, 1, V)] = cnt[o, T.ramp(2 * p * V, 1, V)] + T.popcount(
                            T.bitwise_and(nzx[b, T.ramp(j * V, 1, V)], w[o, p, T.ramp(j * V, 1, V)]))
                        cnt[o, T.ramp((2 * p + 1) * V, 1, V)] = cnt[o, T.ramp((2 * p + 1) * V, 1, V)] + T.popcount(
                            T.bitwise_and(sx[b, T.ramp(j * V, 1, V)], w[o, p, T.ramp(j * V, 1, V)]))
                z[b, o] = (T.Cast("int64", mult[0, o]) * (_hsum(cnt, o, 0, V) - 2 * _hsum(cnt, o, V, V))
                           - T.Cast("int64", mult[1, o]) * (_hsum(cnt, o, 2 * V, V) - 2 * _hsum(cnt, o, 3 * V, V))
                           + bias[o])

    func, kind = (dual_scale, "dual") if dual else (symmetric, "sym")
    return func.with_attr("global_symbol", f"ternary_popcount_gemv_{kind}_v{V}_b{B}_n{N}_k{K}")
