"""Tensor intrinsics of the bit-plane popcount kernel, and the word expressions they stand for.

Each expression below is written once and used twice: by the scalar TE compute of
``popcount_gemv`` (one trit or one uint64 word at a time) and by the description of the
intrinsic that replaces a loop of it, so ``sch.tensorize`` matches them structurally.
The implementations compute the same values on whole vectors:

* ``sign_word`` / ``nonzero_word``: 64 int8 trits -> one uint64 bit plane word (bit ``i``
  = trit ``i`` is negative / nonzero): two ``pmovmskb`` (AVX2; the sign bit of ``x`` is
  the sign plane, the sign bit of ``x | -x`` the nonzero plane).
* ``symmetric_words``: ``V`` words of the 2-popcount product (FATNN's trick),
  ``acc[v] += pc(nz_x & nz_w) - 2 pc(nz_x & nz_w & (s_x ^ s_w))``;
* ``plane_words``: ``V`` words of one weight mask ``P`` (``w = +1``) or ``N`` (``w = -1``)
  of a dual-scale layer, ``acc[v] += pc(nz_x & P) - 2 pc(s_x & P)`` (``s_x`` lies inside
  ``nz_x``, so this is ``sum x[w = +1]``).

``popcount`` of a uint64 vector is ``vpshufb`` + ``vpsadbw`` on AVX2 and ``vpopcntq`` on
CPUs with AVX-512 VPOPCNTDQ (``V = 8``: one zmm). Implementations are single nested
expressions: named vector temporaries become workspace allocations (DESIGN.md).
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.script import tirx as T

TRITS_PER_WORD = 64
HALF_WORD = 32  # trits per pmovmskb (one ymm of int8)


def _lanes(dtype: str, like) -> str:
    lanes = tvm.DataType(str(like.ty)).lanes
    return dtype if lanes == 1 else f"{dtype}x{lanes}"


def _i64(v):
    return tirx.Cast(_lanes("int64", v), v)


def _popcount(v):
    return _i64(tirx.popcount(v))


def sign_bit(trit, i):
    """Bit ``i`` of the sign plane word: set where the trit is negative."""
    return tirx.shift_left(tirx.Cast("uint64", trit < tirx.const(0, "int8")), tirx.Cast("uint64", i))


def nonzero_bit(trit, i):
    """Bit ``i`` of the nonzero plane word: set where the trit is not zero."""
    return tirx.shift_left(tirx.Cast("uint64", trit != tirx.const(0, "int8")), tirx.Cast("uint64", i))


def symmetric_terms(nz_x, s_x, nz_w, s_w):
    """One word of ``x . w`` for sign-magnitude planes (two popcounts)."""
    both = tirx.bitwise_and(nz_x, nz_w)
    return _popcount(both) - _popcount(tirx.bitwise_and(both, tirx.bitwise_xor(s_x, s_w))) * 2


def plane_terms(nz_x, s_x, mask_w):
    """One word of ``sum x[mask_w]`` (``mask_w`` one of the dual layer's ``P`` / ``N``)."""
    return _popcount(tirx.bitwise_and(nz_x, mask_w)) - _popcount(tirx.bitwise_and(s_x, mask_w)) * 2


def _movmsk(v):
    return T.Cast("uint64", T.Cast("uint32", T.call_llvm_pure_intrin("int32", "llvm.x86.avx2.pmovmskb", v)))


def _word_of_signs(lo, hi):
    """The 64-bit mask of the sign bits of two 32-byte vectors."""
    return T.bitwise_or(_movmsk(lo), T.shift_left(_movmsk(hi), T.uint64(HALF_WORD)))


def _or_negation(v):
    """``x | -x``: its sign bit is set exactly where ``x != 0``."""
    return T.bitwise_or(v, T.broadcast(T.int8(0), HALF_WORD) - v)


def _register_word_packer(name: str, bit, vector_of):
    @T.prim_func(s_tir=True)
    def desc(x: T.handle, out: T.handle):
        X = T.match_buffer(x, (TRITS_PER_WORD,), "int8", offset_factor=1)
        O = T.match_buffer(out, (1,), "uint64", offset_factor=1)
        with T.sblock("root"):
            T.reads(O[0], X[0:TRITS_PER_WORD])
            T.writes(O[0])
            for i in range(TRITS_PER_WORD):
                with T.sblock("update"):
                    vi = T.axis.reduce(TRITS_PER_WORD, i)
                    O[0] = T.bitwise_or(O[0], bit(X[vi], vi))

    @T.prim_func(s_tir=True)
    def impl(x: T.handle, out: T.handle):
        X = T.match_buffer(x, (TRITS_PER_WORD,), "int8", offset_factor=1)
        O = T.match_buffer(out, (1,), "uint64", offset_factor=1)
        with T.sblock("root"):
            T.reads(O[0], X[0:TRITS_PER_WORD])
            T.writes(O[0])
            O[0] = T.bitwise_or(O[0], _word_of_signs(vector_of(X[T.ramp(0, 1, HALF_WORD)]),
                                                     vector_of(X[T.ramp(HALF_WORD, 1, HALF_WORD)])))

    tvm.s_tir.TensorIntrin.register(name, desc, impl, override=True)


def _register_symmetric(name: str, words: int):
    V = words

    @T.prim_func(s_tir=True)
    def desc(nx: T.handle, w: T.handle, sx: T.handle, acc: T.handle):
        NX = T.match_buffer(nx, (V,), "uint64", offset_factor=1)
        W = T.match_buffer(w, (2, V), "uint64", offset_factor=1)  # (nonzero, sign) planes
        SX = T.match_buffer(sx, (V,), "uint64", offset_factor=1)
        A = T.match_buffer(acc, (V,), "int64", offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0:V], NX[0:V], W[0:2, 0:V], SX[0:V])
            T.writes(A[0:V])
            for v in range(V):
                with T.sblock("update"):
                    vv = T.axis.spatial(V, v)
                    A[vv] = A[vv] + symmetric_terms(NX[vv], SX[vv], W[0, vv], W[1, vv])

    @T.prim_func(s_tir=True)
    def impl(nx: T.handle, w: T.handle, sx: T.handle, acc: T.handle):
        NX = T.match_buffer(nx, (V,), "uint64", offset_factor=1)
        W = T.match_buffer(w, (2, V), "uint64", offset_factor=1)
        SX = T.match_buffer(sx, (V,), "uint64", offset_factor=1)
        A = T.match_buffer(acc, (V,), "int64", offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0:V], NX[0:V], W[0:2, 0:V], SX[0:V])
            T.writes(A[0:V])
            A[T.ramp(0, 1, V)] = A[T.ramp(0, 1, V)] + symmetric_terms(
                NX[T.ramp(0, 1, V)], SX[T.ramp(0, 1, V)], W[0, T.ramp(0, 1, V)], W[1, T.ramp(0, 1, V)])

    tvm.s_tir.TensorIntrin.register(name, desc, impl, override=True)


def _register_plane(name: str, words: int):
    V = words

    @T.prim_func(s_tir=True)
    def desc(nx: T.handle, mw: T.handle, sx: T.handle, acc: T.handle):
        NX = T.match_buffer(nx, (V,), "uint64", offset_factor=1)
        SX = T.match_buffer(sx, (V,), "uint64", offset_factor=1)
        MW = T.match_buffer(mw, (V,), "uint64", offset_factor=1)
        A = T.match_buffer(acc, (V,), "int64", offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0:V], NX[0:V], MW[0:V], SX[0:V])
            T.writes(A[0:V])
            for v in range(V):
                with T.sblock("update"):
                    vv = T.axis.spatial(V, v)
                    A[vv] = A[vv] + plane_terms(NX[vv], SX[vv], MW[vv])

    @T.prim_func(s_tir=True)
    def impl(nx: T.handle, mw: T.handle, sx: T.handle, acc: T.handle):
        NX = T.match_buffer(nx, (V,), "uint64", offset_factor=1)
        SX = T.match_buffer(sx, (V,), "uint64", offset_factor=1)
        MW = T.match_buffer(mw, (V,), "uint64", offset_factor=1)
        A = T.match_buffer(acc, (V,), "int64", offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0:V], NX[0:V], MW[0:V], SX[0:V])
            T.writes(A[0:V])
            A[T.ramp(0, 1, V)] = A[T.ramp(0, 1, V)] + plane_terms(
                NX[T.ramp(0, 1, V)], SX[T.ramp(0, 1, V)], MW[T.ramp(0, 1, V)])

    tvm.s_tir.TensorIntrin.register(name, desc, impl, override=True)


SIGN_WORD = "tternary_popcount_sign_word"
NONZERO_WORD = "tternary_popcount_nonzero_word"
_registered: set = set()


def word_packers() -> tuple[str, str]:
    """Names of the (sign, nonzero) word-packing intrinsics, registered on first use."""
    if SIGN_WORD not in _registered:
        _register_word_packer(SIGN_WORD, sign_bit, lambda v: v)
        _register_word_packer(NONZERO_WORD, nonzero_bit, _or_negation)
        _registered.update((SIGN_WORD, NONZERO_WORD))
    return SIGN_WORD, NONZERO_WORD


def word_kernel(dual: bool, words: int) -> str:
    """Name of the ``words``-wide popcount word kernel (symmetric or one dual plane)."""
    name = f"tternary_popcount_{'plane' if dual else 'symmetric'}_words{words}"
    if name not in _registered:
        (_register_plane if dual else _register_symmetric)(name, words)
        _registered.add(name)
    return name
