"""CPU implementations registered with the strategy registry.

``tlinear`` (symmetric, constant weights, 2-D input) runs as one fused whole-layer GEMV
PrimFunc: AVX-512 VNNI where the target's CPU has it, else AVX2 (the floor); other CPUs
keep the portable path. The ternary x ternary and block-sparse kernels register here too.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_ternary.strategy.registry import Impl, register
from tvm_ternary.target import cpu_features

from . import gemv_avx2, gemv_vnni
from .layout import interleaved_2bit


def has_avx2(target: dict) -> bool:
    return "avx2" in cpu_features(target)


def has_vnni512(target: dict) -> bool:
    return "avx512_vnni" in cpu_features(target)


def _constant(expr) -> np.ndarray | None:
    """The value of a bound constant (weights, multipliers), or None for a runtime tensor."""
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


def _symmetric_constant_linear(call) -> bool:
    """A 2-D ``tlinear`` with constant weights and one multiplier per channel (Mp == Mn)."""
    x, w, _, mult = call.args
    mult_v = _constant(mult)
    return (len(x.ty.shape) == 2 and _constant(w) is not None and mult_v is not None
            and np.array_equal(mult_v[0], mult_v[1]))


def _gemv_emitter(kernel_module):
    """Emit ``kernel_module``'s whole-layer GEMV for a ``tlinear`` call."""

    def emit(bb, call):
        x, w, bias, mult = call.args
        w_t = _constant(w)
        n, k = w_t.shape
        batch = int(x.ty.shape[0])
        packed = interleaved_2bit(w_t, kernel_module.ROWS, kernel_module.LANES)
        kernel = kernel_module.make_gemv(batch, n, k)
        gv = bb.add_func(kernel, str(kernel.attrs["global_symbol"]))
        return relax.call_tir(gv, [x, relax.const(packed), mult, bias],
                              out_ty=relax.TensorType([batch, n], "int64"))

    return emit


register("tlinear", Impl("avx512_vnni_gemv",
                         lambda call, target: has_vnni512(target) and _symmetric_constant_linear(call),
                         _gemv_emitter(gemv_vnni)))
register("tlinear", Impl("avx2_pmaddubsw_gemv",
                         lambda call, target: has_avx2(target) and _symmetric_constant_linear(call),
                         _gemv_emitter(gemv_avx2)))
