"""Running a whole-layer linear kernel and the integer reference it must equal, shared by
the GEMV tests (dense, block-sparse, popcount)."""

import numpy as np
import tvm

from tvm_ternary.quant import reference as ref


def run_linear_kernel(kernel, mcpu: str, x: np.ndarray, weights: list, mult: np.ndarray,
                      bias: np.ndarray) -> np.ndarray:
    """``kernel(x, *weights, mult, bias, z)`` compiled for the LLVM CPU ``mcpu``; z [batch, N]."""
    lib = tvm.compile(kernel, target=tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2}))
    out = tvm.runtime.tensor(np.zeros((x.shape[0], bias.shape[0]), np.int64))
    lib(*[tvm.runtime.tensor(a) for a in (x, *weights, mult, bias)], out)
    return out.numpy()


def expected_linear(x: np.ndarray, w_t: np.ndarray, mult: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The reference's ``z = Mp acc_p - Mn acc_n + bias`` of ``x @ w_t.T``."""
    acc_p, acc_n = ref.linear_acc(x, w_t)
    return ref.scaled_acc(acc_p, acc_n, bias, mult[0], mult[1])
