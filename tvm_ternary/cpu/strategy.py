"""CPU implementations registered with the strategy registry."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, topi

from tvm_ternary.strategy.registry import Impl, register

from .gemv_avx2 import ROWS, make_gemv
from .layout import blocked_2bit, padded_k

# LLVM CPU names with AVX2 (what tvm_ternary.target produces for AVX2 hosts).
_AVX2 = ("haswell", "broadwell", "skylake", "skylake-avx512", "cascadelake", "cooperlake",
         "icelake-server", "sapphirerapids", "znver2", "znver3", "znver4", "znver5")


def has_avx2(target: dict) -> bool:
    return target.get("kind") == "llvm" and target.get("mcpu") in _AVX2


def _constant(expr) -> np.ndarray | None:
    """The value of a bound constant (weights, multipliers), or None for a runtime tensor."""
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


def _tlinear_applies(call, target) -> bool:
    x, w, _, mult = call.args
    mult_v = _constant(mult)
    return (has_avx2(target) and len(x.ty.shape) == 2 and _constant(w) is not None
            and mult_v is not None and np.array_equal(mult_v[0], mult_v[1]))


def _tlinear_emit(bb, call):
    x, w, bias, mult = call.args
    w_t = _constant(w)
    n, k = w_t.shape
    batch = int(x.ty.shape[0])
    packed = blocked_2bit(w_t, ROWS)
    kp = padded_k(k)
    if kp != k:
        x_pad = bb.emit(bb.call_te(lambda t: topi.nn.pad(t, [0, 0], [0, kp - k]), x,
                                   primfunc_name_hint="pad_k"))
    else:
        x_pad = x
    sx = bb.emit(bb.call_te(lambda t: topi.sum(t.astype("int32"), axis=1), x,
                            primfunc_name_hint="row_sum"))
    kernel = make_gemv(batch, packed.shape[0], kp)
    gemv = bb.add_func(kernel, str(kernel.attrs["global_symbol"]))
    acc = bb.emit(relax.call_tir(gemv, [x_pad, relax.const(packed), sx],
                                 out_ty=relax.TensorType([batch, packed.shape[0]], "int32")))

    def epilogue(a, b, m):  # z = M * acc + bias on the real rows
        return te.compute((batch, n), lambda i, j: m[0, j].astype("int64") * a[i, j].astype("int64")
                          + b[j], name="tlinear_epilogue")

    return bb.call_te(epilogue, acc, bias, mult, primfunc_name_hint="tlinear_epilogue")


register("tlinear", Impl("avx2_pmaddubsw_gemv", _tlinear_applies, _tlinear_emit))
