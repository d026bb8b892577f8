"""Vector expressions the CPU kernels share."""

from __future__ import annotations

from tvm.script import tirx as T


def lane_sum(vec, dtype: str):
    """Sum of a vector's lanes in registers (``llvm.vector.reduce.add``: a shuffle + add
    tree). Summing an accumulator lane by lane from memory cost ~20 us per 4096 rows,
    13 % of the 4096 x 4096 GEMV."""
    return T.call_llvm_pure_intrin(dtype, "llvm.vector.reduce.add", vec)


def trit_codes(w_vec, j: int, lanes: int):
    """The 2-bit codes ``u = w + 1`` of field ``j`` (bits 2j..2j+1) of every byte of a
    ``lanes``-byte weight vector: a shift and a mask, no table lookup."""
    if j == 3:
        return T.shift_right(w_vec, T.broadcast(T.uint8(6), lanes))
    shifted = w_vec if j == 0 else T.shift_right(w_vec, T.broadcast(T.uint8(2 * j), lanes))
    return T.bitwise_and(shifted, T.broadcast(T.uint8(3), lanes))


def plus_codes(w_vec, j: int, lanes: int):
    """The one-bit codes ``u >> 1`` of field ``j`` (1 where ``w = +1``): dual-scale layers
    need ``acc_p = sum x[w = +1]`` next to the ternary dot product. Taken as the saturating
    ``u - 1`` of the codes the dot product decodes anyway (one ``vpsubusb``, not a second
    shift + mask)."""
    return T.call_llvm_pure_intrin(f"uint8x{lanes}", "llvm.usub.sat", trit_codes(w_vec, j, lanes),
                                   T.broadcast(T.uint8(1), lanes))
