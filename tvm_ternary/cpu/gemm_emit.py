"""Emitting the tiled GEMM into a Relax function (shared by tlinear and tconv2d)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_ternary.relax import fused_ops

from . import gemm_epilogue
from .gemm_kernel import CONST_OPERANDS, GemmSpec, make_gemm
from .params import typed

DEFAULT_CLAMP = (-127, 127)


def layer_parts(call, out_ndim: int):
    """``(body tensors, body scalars, epilogue, clamp, epilogue tensors)`` of a bare body call
    or of a fused ``<body>_<epilogue>`` call whose epilogue the store applies (per channel
    along axis 1 of the output); None for a fused epilogue it does not."""
    fused = fused_ops.FUSED.get(call.op.name.removeprefix("relax.tternary_"))
    if fused is None:
        return list(call.args[:4]), list(call.args[4:]), gemm_epilogue.NONE, DEFAULT_CLAMP, []
    body_t, epi_t, body_s, epi_s = fused.split(call.args)
    scalars = [int(s.value) for s in epi_s]
    if fused.epilogue not in gemm_epilogue.FUSABLE or scalars[-1] % out_ndim != 1:
        return None
    clamp = tuple(scalars[:2]) if len(scalars) == 3 else DEFAULT_CLAMP
    return list(body_t), list(body_s), fused.epilogue, clamp, list(epi_t)


def constant(expr) -> np.ndarray | None:
    """A bound constant's value, or None (the GEMV strategy's helper, imported late:
    importing cpu.strategy registers the GEMV, which must come after the GEMM)."""
    from .strategy import _constant
    return _constant(expr)


def current_target() -> dict:
    """The target the registry is legalizing for (emit functions are not passed it)."""
    from tvm_ternary.strategy.registry import _current
    return _current["target"]


def emit_gemm(bb, spec: GemmSpec, xu, consts: dict, bias, epilogue_tensors=()) -> relax.Call:
    """``call_tir`` of the kernel of ``spec`` on the biased input ``xu`` (the kernel's input
    and output are flat: reshapes are views); ``epilogue_tensors`` are the fused epilogue's
    operands after ``z``, in the op's order."""
    kernel = bb.add_func(make_gemm(spec), spec.symbol())
    out_elems = int(np.prod(spec.out_shape))
    # relax.const narrows int64 arrays whose values fit to int32: give the dtype
    flat = bb.emit(relax.op.reshape(xu, [int(np.prod(spec.x_shape))]))
    args = [flat] + [relax.const(consts[n], str(consts[n].dtype)) for n in CONST_OPERANDS] + [typed(bias, "int64")]
    types = gemm_epilogue.operand_types(spec.epilogue, spec.groups * spec.rows, out_elems)
    for i, (shape, dtype) in enumerate(types):
        if i >= len(epilogue_tensors):
            args.append(relax.const(np.zeros(shape, dtype), dtype))
        else:
            args.append(bb.emit(relax.op.reshape(typed(epilogue_tensors[i], dtype), list(shape))))
    out = bb.emit(relax.call_tir(kernel, args, out_ty=relax.TensorType(
        [out_elems], gemm_epilogue.out_dtype(spec.epilogue))))
    return relax.op.reshape(out, list(spec.out_shape))
