"""Running a whole-layer linear kernel and the integer reference it must equal, shared by
the GEMV tests (dense, block-sparse, popcount)."""

import numpy as np
import tvm

from tvm_ternary.quant import reference as ref
from tvm_ternary.target import emulated_target


def run_linear_kernel(kernel, mcpu: str, x: np.ndarray, weights: list, mult: np.ndarray,
                      bias: np.ndarray) -> np.ndarray:
    """``kernel(x, *weights, mult, bias, z)`` compiled for the LLVM CPU ``mcpu``; z [batch, N]."""
    lib = tvm.compile(kernel, target=tvm.target.Target(emulated_target(mcpu)))
    out = tvm.runtime.tensor(np.zeros((x.shape[0], bias.shape[0]), np.int64))
    lib(*[tvm.runtime.tensor(a) for a in (x, *weights, mult, bias)], out)
    return out.numpy()


def expected_linear(x: np.ndarray, w_t: np.ndarray, mult: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The reference's ``z = Mp acc_p - Mn acc_n + bias`` of ``x @ w_t.T``."""
    acc_p, acc_n = ref.linear_acc(x, w_t)
    return ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1])


MULT_TOP = (2**15, 2**16)  # reference.MULT_BITS = 16: M in [2**15, 2**16), 65535 the largest


def top_multiplier_layer(rng, batch: int, n: int, k: int, dual: bool, x_lo: int = -128, x_hi: int = 127):
    """``x [batch, k], w [n, k], mult [2, n] int32, bias [n]`` with 16-bit multipliers from the
    top of their range (65535 on channel 0) and worst-case accumulators: batch row 0 is all
    ``x_lo`` and row 1 all ``x_hi``; channel 0's weights are all +1 and channel 1's all -1,
    so ``acc_p`` and ``acc_n`` reach ``x k`` at both extremes."""
    x = rng.integers(x_lo, x_hi + 1, size=(batch, k)).astype(np.int8)
    x[0] = x_lo
    if batch > 1:
        x[1] = x_hi
    w = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
    w[0] = 1
    if n > 1:
        w[1] = -1
    mult = rng.integers(*MULT_TOP, size=(2, n))
    mult[:, 0] = MULT_TOP[1] - 1
    if not dual:
        mult[1] = mult[0]
    bias = rng.integers(-2**40, 2**40, size=n).astype(np.int64)
    return x, w, mult.astype(np.int32), bias
