"""Emitting the tiled GEMM into a Relax function (shared by tlinear and tconv2d)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from .gemm_kernel import CONST_OPERANDS, GemmSpec, make_gemm
from .params import typed


def constant(expr) -> np.ndarray | None:
    """A bound constant's value, or None (the GEMV strategy's helper, imported late:
    importing cpu.strategy registers the GEMV, which must come after the GEMM)."""
    from .strategy import _constant
    return _constant(expr)


def current_target() -> dict:
    """The target the registry is legalizing for (emit functions are not passed it)."""
    from tvm_ternary.strategy.registry import _current
    return _current["target"]


def emit_gemm(bb, spec: GemmSpec, xu, consts: dict, bias) -> relax.Call:
    """``call_tir`` of the kernel of ``spec`` on the biased input ``xu`` (the kernel's input
    and output are flat: reshapes are views)."""
    kernel = bb.add_func(make_gemm(spec), spec.symbol())
    # relax.const narrows int64 arrays whose values fit to int32: give the dtype
    flat = bb.emit(relax.op.reshape(xu, [int(np.prod(spec.x_shape))]))
    args = [flat] + [relax.const(consts[n], str(consts[n].dtype)) for n in CONST_OPERANDS] + [typed(bias, "int64")]
    out = bb.emit(relax.call_tir(kernel, args, out_ty=relax.TensorType([int(np.prod(spec.out_shape))], "int64")))
    return relax.op.reshape(out, list(spec.out_shape))
