"""Tensor intrinsics of the bit-plane popcount kernel, and the word expressions they stand for.

Each expression below is written once and used twice: by the scalar TE compute of
``popcount_gemv`` (one trit or one uint64 word at a time) and by the description of the
intrinsic that replaces a loop of it, so ``sch.tensorize`` matches them structurally.
The implementations compute the same values on whole vectors:

* ``sign_word`` / ``nonzero_word``: 64 int8 trits -> one uint64 bit plane word (bit ``i``
  = trit ``i`` is negative / nonzero): two ``pmovmskb`` (AVX2; the sign bit of ``x`` is
  the sign plane, the sign bit of ``x | -x`` the nonzero plane).
* ``word_kernel(dual=False, ...)``: ``chunk`` steps of ``V`` words of the 2-popcount
  product (FATNN's trick), ``acc[v] += pc(nz_x & nz_w) - 2 pc(nz_x & nz_w & (s_x ^ s_w))``;
* ``word_kernel(dual=True, ...)``: the same over one weight mask ``P`` (``w = +1``) or
  ``N`` (``w = -1``) of a dual-scale layer, ``acc[v] += pc(nz_x & P) - 2 pc(s_x & P)``
  (``s_x`` lies inside ``nz_x``, so this is ``sum x[w = +1]``).

``popcount`` of a uint64 vector is ``vpshufb`` + ``vpsadbw`` on AVX2 and ``vpopcntq`` on
CPUs with AVX-512 VPOPCNTDQ (``V = 8``: one zmm). On AVX2 a call over ``chunk > 1`` steps
adds the per-byte counts of all its steps in uint8 lanes and widens them with one
``vpsadbw`` per plane (256 x 4096 serial: 6.9 vs 8.1 us symmetric, 12.8 vs 15.4 dual).
Implementations are single nested expressions: named vector temporaries become workspace
allocations (DESIGN.md).
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError

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


def symmetric_pair(nz_x, s_x, nz_w, s_w):
    """The words ``(m, m & (s_x ^ s_w))``, ``m = nz_x & nz_w``: ``x . w = pc(m) - 2 pc(..)``."""
    both = tirx.bitwise_and(nz_x, nz_w)
    return both, tirx.bitwise_and(both, tirx.bitwise_xor(s_x, s_w))


def plane_pair(nz_x, s_x, mask_w):
    """The words ``(nz_x & mask_w, s_x & mask_w)``: ``sum x[mask_w] = pc(..) - 2 pc(..)``
    (``mask_w`` one of the dual layer's ``P`` / ``N``)."""
    return tirx.bitwise_and(nz_x, mask_w), tirx.bitwise_and(s_x, mask_w)


def _pair_terms(pair):
    ones, negatives = pair
    return _popcount(ones) - _popcount(negatives) * 2


def symmetric_terms(nz_x, s_x, nz_w, s_w):
    """One word of ``x . w`` for sign-magnitude planes (two popcounts)."""
    return _pair_terms(symmetric_pair(nz_x, s_x, nz_w, s_w))


def plane_terms(nz_x, s_x, mask_w):
    """One word of ``sum x[mask_w]`` (two popcounts)."""
    return _pair_terms(plane_pair(nz_x, s_x, mask_w))


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


# Per-byte popcounts of AVX2 word steps add up in uint8 lanes for up to 31 steps (8 per
# step) before one vpsadbw widens them: the chunked kernels save a vpsadbw per popcount.
MAX_CHUNK = 31


def _byte_counts(words_vec):
    return tirx.popcount(tirx.reinterpret("uint8x32", words_vec))


def _widened(byte_sum):
    return T.call_llvm_pure_intrin("int64x4", "llvm.x86.avx2.psad.bw", byte_sum, T.broadcast(T.uint8(0), 32))


def _chunked_terms(pairs):
    """``sum pc(a) - 2 pc(b)`` over the ``(a, b)`` uint64x4 pairs of several steps, as int64x4
    lanes: byte counts summed in uint8, then one ``vpsadbw`` per plane."""
    ones = negatives = None
    for a, b in pairs:
        ones = _byte_counts(a) if ones is None else ones + _byte_counts(a)
        negatives = _byte_counts(b) if negatives is None else negatives + _byte_counts(b)
    return _widened(ones) - _widened(negatives) * T.broadcast(T.int64(2), 4)


def _register_word_kernel(name: str, dual: bool, words: int, chunk: int):
    """``chunk`` steps of ``words`` words of the symmetric or dual-plane product (the
    desc has no extent-1 loop: the step loop exists only for ``chunk > 1``)."""
    V, C = words, chunk
    CV = C * V
    w_shape = (CV,) if dual else (2, CV)

    def pair(NX, SX, W, i):
        return plane_pair(NX[i], SX[i], W[i]) if dual else symmetric_pair(NX[i], SX[i], W[0, i], W[1, i])

    def w_region(W):
        return W[0:CV] if dual else W[0:2, 0:CV]

    @T.prim_func(s_tir=True)
    def desc(nx: T.handle, w: T.handle, sx: T.handle, acc: T.handle):
        NX = T.match_buffer(nx, (CV,), "uint64", offset_factor=1)
        W = T.match_buffer(w, w_shape, "uint64", offset_factor=1)  # (nonzero, sign) / P or N
        SX = T.match_buffer(sx, (CV,), "uint64", offset_factor=1)
        A = T.match_buffer(acc, (V,), "int64", offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0:V], NX[0:CV], w_region(W), SX[0:CV])
            T.writes(A[0:V])
            if C > 1:
                for c, v in T.grid(C, V):
                    with T.sblock("update"):
                        vv, vc = T.axis.remap("SR", [v, c])
                        A[vv] = A[vv] + _pair_terms(pair(NX, SX, W, vc * V + vv))
            else:
                for v in range(V):
                    with T.sblock("update"):
                        vv = T.axis.spatial(V, v)
                        A[vv] = A[vv] + _pair_terms(pair(NX, SX, W, vv))

    @T.prim_func(s_tir=True)
    def impl(nx: T.handle, w: T.handle, sx: T.handle, acc: T.handle):
        NX = T.match_buffer(nx, (CV,), "uint64", offset_factor=1)
        W = T.match_buffer(w, w_shape, "uint64", offset_factor=1)
        SX = T.match_buffer(sx, (CV,), "uint64", offset_factor=1)
        A = T.match_buffer(acc, (V,), "int64", offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0:V], NX[0:CV], w_region(W), SX[0:CV])
            T.writes(A[0:V])
            if C > 1:
                A[T.ramp(0, 1, V)] = A[T.ramp(0, 1, V)] + _chunked_terms(
                    [pair(NX, SX, W, T.ramp(c * V, 1, V)) for c in range(C)])
            else:
                A[T.ramp(0, 1, V)] = A[T.ramp(0, 1, V)] + _pair_terms(pair(NX, SX, W, T.ramp(0, 1, V)))

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


def word_kernel(dual: bool, words: int, chunk: int = 1) -> str:
    """Name of the popcount word kernel (symmetric or one dual plane) over ``chunk`` steps
    of ``words`` words; ``chunk > 1`` (byte-count accumulation) needs ``words = 4`` (AVX2)."""
    if chunk != 1 and (words != 4 or not 1 < chunk <= MAX_CHUNK):
        raise KernelConfigError(f"popcount word kernel: chunk must be 1, or in [2, {MAX_CHUNK}] with 4 "
                                f"words per step, got chunk {chunk!r} with {words!r} words")
    name = f"tternary_popcount_{'plane' if dual else 'symmetric'}_words{words}_chunk{chunk}"
    if name not in _registered:
        _register_word_kernel(name, dual, words, chunk)
        _registered.add(name)
    return name
