"""Ternary x ternary dense kernel on bit planes: a TE compute, a schedule template with
knobs, and ``tensorize`` onto the word intrinsics of ``popcount_intrin``.

For activations in {-1, 0, 1} (a ``tquantize_ternary`` / ``tthreshold`` producer: see
``relax.ternary_inputs``) both operands become sign-magnitude bit planes, 64 trits per
uint64 word (``quant.packing``'s ``bitplane`` format: nonzero mask, sign mask).

* symmetric layers (``Mp == Mn``), the 2-popcount product of ``quant.popcount``:
  ``m = nz_x & nz_w``, ``acc = popcount(m) - 2 popcount(m & (s_x ^ s_w))``;
* dual-scale layers (TTQ, EC2T) need ``acc_p`` and ``acc_n`` apart: with the weight
  masks ``P = (w = +1)`` and ``N = (w = -1)`` and ``s_x`` inside ``nz_x``,
  ``acc_p = popcount(nz_x & P) - 2 popcount(s_x & P)``, likewise ``acc_n``: 4 popcounts.

The compute is one definition for both (stages ``xp`` zero-pads the input, ``sx`` / ``nzx``
pack its planes, ``acc`` reduces over words, ``z = Mp acc_p - Mn acc_n + bias`` int64 as
``tlinear`` defines it). The schedule packs each plane word with one intrinsic (two
``pmovmskb``), ``rfactor``s the word reduction into ``words`` vector lanes, blocks ``rows``
output rows so they share each activation load, and tensorizes the lanes onto the
popcount word kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te, tirx

from tvm_ternary.errors import KernelConfigError
from tvm_ternary.quant.packing import pack

from . import popcount_intrin as intrin
from .layout import check_layer_dims
from .parallel import PARALLEL_MIN_WEIGHTS

WORDS = 4  # uint64 words per vector: one ymm register (AVX2)
WORDS_VPOPCNTDQ = 8  # one zmm register, where vpopcntq counts it in one instruction


@dataclass(frozen=True)
class Knobs:
    """The schedule template's tunable knobs (``KNOBS`` lists their candidate values)."""

    words: int = WORDS  # uint64 words per vector step
    rows: int = 1       # output rows per step, sharing each activation plane load
    chunk: int = 1      # steps per intrinsic call (AVX2: byte counts summed before vpsadbw)


# knob -> candidates, the first the default (``strategy.registry.Impl.knobs``); the weight
# layout pads K to whole ``words * chunk`` and N to whole ``rows``
KNOBS_AVX2 = {"chunk": [16, 8, 4, 1], "rows": [1, 2, 4]}
KNOBS_VPOPCNTDQ = {"words": [WORDS_VPOPCNTDQ, WORDS], "rows": [1, 2, 4]}

_BIT_OR = te.comm_reducer(lambda a, b: tirx.bitwise_or(a, b), lambda t: tirx.const(0, t), name="bit_or")


def _steps(k: int, words: int) -> int:
    """Vector steps of ``words`` uint64 words that cover ``k`` trits."""
    if words not in (WORDS, WORDS_VPOPCNTDQ):
        raise KernelConfigError(f"popcount_gemv: words per vector must be {WORDS} or "
                                f"{WORDS_VPOPCNTDQ}, got {words!r}")
    return -(-k // (intrin.TRITS_PER_WORD * words))


def balanced_chunk(k: int, words: int, chunk: int) -> int:
    """The ``chunk`` knob shrunk so the intrinsic calls split the steps evenly: padding
    stays under one step per call (K = 1024 with chunk 8 would otherwise double the work)."""
    steps = _steps(k, words)
    return -(-steps // -(-steps // chunk)) if chunk > 1 else 1


def padded_words(k: int, words: int = WORDS, chunk: int = 1) -> int:
    step = words * balanced_chunk(k, words, chunk)
    return -(-_steps(k, words) * words // step) * step


def padded_rows(n: int, rows: int) -> int:
    return (n + rows - 1) // rows * rows


def weight_planes(w_t: np.ndarray, dual: bool, words: int = WORDS, rows: int = 1, chunk: int = 1) -> np.ndarray:
    """uint64 ``[padded_rows(N, rows), 2, padded_words(K, words, chunk)]``: (nonzero, sign) planes, or
    (P, N) masks if dual; padding rows are zero weights (whole row blocks need no
    predicate, which tensorize cannot match)."""
    planes = pack(w_t, "bitplane")  # [N, 2, ceil(K / 64)]
    if dual:
        nz, sign = planes[:, 0], planes[:, 1]
        planes = np.stack([nz & ~sign, sign], axis=1)  # sign implies nonzero: sign = (w = -1)
    out = np.zeros((padded_rows(planes.shape[0], rows), 2, padded_words(w_t.shape[1], words, chunk)), np.uint64)
    out[:planes.shape[0], :, :planes.shape[2]] = planes
    return out


def popcount_compute(batch: int, n: int, k: int, dual: bool, knobs: Knobs):
    """The kernel's TE definition: ``[x, w, mult, bias, z]`` (``z`` int64 ``[B, N]``)."""
    wp, npad = padded_words(k, knobs.words, knobs.chunk), padded_rows(n, knobs.rows)
    x = te.placeholder((batch, k), "int8", name="x")
    w = te.placeholder((npad, 2, wp), "uint64", name="w")
    mult = te.placeholder((2, n), "int32", name="mult")
    bias = te.placeholder((n,), "int64", name="bias")
    xp = te.compute((batch, wp * intrin.TRITS_PER_WORD), lambda b, i: tirx.if_then_else(
        i < k, x[b, tirx.min(i, k - 1)], tirx.const(0, "int8")), name="xp")

    def plane(bit, name):
        i = te.reduce_axis((0, intrin.TRITS_PER_WORD), "i")
        return te.compute((batch, wp), lambda b, j: _BIT_OR(
            bit(xp[b, j * intrin.TRITS_PER_WORD + i], i), axis=i), name=name)

    sx, nzx = plane(intrin.sign_bit, "sx"), plane(intrin.nonzero_bit, "nzx")
    j = te.reduce_axis((0, wp), "j")
    if dual:
        acc = te.compute((batch, npad, 2), lambda b, o, p: te.sum(
            intrin.plane_terms(nzx[b, j], sx[b, j], w[o, p, j]), axis=j), name="acc")
        z = te.compute((batch, n), lambda b, o: mult[0, o].astype("int64") * acc[b, o, 0]
                       - mult[1, o].astype("int64") * acc[b, o, 1] + bias[o], name="z")
    else:
        acc = te.compute((batch, npad), lambda b, o: te.sum(
            intrin.symmetric_terms(nzx[b, j], sx[b, j], w[o, 0, j], w[o, 1, j]), axis=j), name="acc")
        z = te.compute((batch, n), lambda b, o: mult[0, o].astype("int64") * acc[b, o] + bias[o], name="z")
    return [x, w, mult, bias, z]


def _pack_planes(sch) -> None:
    """Each plane word: one word-packing intrinsic over its 64 trits."""
    for block, name in zip(("sx", "nzx"), intrin.word_packers()):
        blk = sch.get_sblock(block)
        trits = sch.get_loops(blk)[-1]
        sch.decompose_reduction(blk, trits)
        sch.tensorize(trits, name)


def _schedule_rows(sch, n: int, k: int, dual: bool, knobs: Knobs) -> None:
    """Row blocks of ``knobs.rows`` (parallel for large layers), words in vector lanes."""
    acc = sch.get_sblock("acc")
    *_, word = sch.get_loops(acc)
    _, lane = sch.split(word, [None, knobs.words])
    lanes = sch.rfactor(lane, factor_axis=3 if dual else 2)  # lanes: the last axis of acc_rf
    z = sch.get_sblock("z")
    b, o = sch.get_loops(z)
    block, row = sch.split(o, [None, knobs.rows])
    sch.reorder(block, b, row)
    if n * k > PARALLEL_MIN_WEIGHTS:  # small layers stay serial (cpu/parallel.py)
        sch.parallel(block)
    sch.compute_at(acc, b)
    sch.compute_at(lanes, b)
    # compute_at orders the loops by acc_rf's iter vars, lane, [row,] [plane,] [word], and
    # generates none of extent 1 (rows = 1, symmetric, or a single step of words)
    lane_loop, *rest = sch.get_loops(lanes)[2:]
    middle = rest[:(knobs.rows > 1) + dual]
    inner = [*middle, lane_loop]
    words_loop = rest[len(middle):]
    if knobs.chunk > 1:  # padded_words makes the steps a multiple of chunk (>= 2: a loop)
        words_loop = list(sch.split(words_loop[0], [None, knobs.chunk]))
        inner.insert(len(middle), words_loop.pop())
    order = [*words_loop, *inner]
    if len(order) > 1:
        sch.reorder(*order)
    sch.decompose_reduction(lanes, (words_loop or inner)[0])
    # (re-read: decomposing at the lane loop itself leaves the handle on the init's copy)
    loops = sch.get_loops(lanes)
    sch.tensorize(loops[-2] if knobs.chunk > 1 else loops[-1],
                  intrin.word_kernel(dual, knobs.words, knobs.chunk))
    for loop in middle:
        sch.unroll(loop)


def make_popcount_gemv(batch: int, n: int, k: int, dual: bool, words: int = WORDS, rows: int = 1,
                       chunk: int = 1):
    """``gemv(x [B, K] int8 in {-1,0,1}, w [N, 2, WP] uint64, mult [2, N] int32,
    bias [N] int64, z [B, N] int64)`` with ``w = weight_planes(w_t, dual, words, rows, chunk)``;
    ``words`` uint64 per vector step, ``rows`` output rows per step, ``chunk`` steps per
    intrinsic call (the knobs)."""
    check_layer_dims("popcount_gemv", batch, n, k)
    padded_words(k, words)  # validates words
    if not isinstance(rows, (int, np.integer)) or rows < 1:
        raise KernelConfigError(f"popcount_gemv: rows per step must be a positive int, got {rows!r}")
    intrin.word_kernel(dual, words, chunk)  # validates chunk (with words) before scheduling
    knobs = Knobs(words, rows, balanced_chunk(k, words, chunk))
    sch = tvm.s_tir.Schedule(te.create_prim_func(popcount_compute(batch, n, k, dual, knobs)))
    _pack_planes(sch)
    _schedule_rows(sch, n, k, dual, knobs)
    kind = "dual" if dual else "sym"
    return sch.mod["main"].with_attr(
        "global_symbol", f"ternary_popcount_gemv_{kind}_v{words}_r{rows}_c{knobs.chunk}_b{batch}_n{n}_k{k}")
