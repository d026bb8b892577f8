"""Ternary Relax operators ``R.tternary_*``: one per ``tternary::*`` torch op.

Registered from Python (TVM 0.27 allows it): each has a type-inference rule and a
legalization. Non-tensor parameters (scale, axis, strides, ...) travel as scalar
arguments (``relax.prim_value``) after the tensors, because Python-registered ops have no
attribute type. ``LegalizeOps`` lowers each through the implementation the strategy
registry selects for the current target (``tvm_ternary.strategy.registry``), else the
generic TE compute of ``tvm_ternary.strategy.generic`` (the portable path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tvm
import tvm_ffi
from tvm import relax, tirx

from tvm_ternary.quant.reference import conv_out_size
from tvm_ternary.strategy import generic, registry


@dataclass(frozen=True)
class OpDef:
    n_tensors: int          # leading tensor arguments; the rest are PrimValue scalars
    n_scalars: int
    out_dtype: str
    compute: Callable       # TE compute: (*tensors, *scalars) -> te.Tensor
    out_shape: Callable     # (tensor shapes, scalars) -> output shape


def _like_first(shapes, scalars):
    return list(shapes[0])


def _linear_shape(shapes, scalars):
    return list(shapes[0])[:-1] + [shapes[1][0]]


def _conv_shape(shapes, scalars):
    (b, _, h, w), (o, _, kh, kw) = shapes[0], shapes[1]
    sh, sw, ph, pw, dh, dw = scalars[:6]
    return [b, o, conv_out_size(h, kh, sh, ph, dh), conv_out_size(w, kw, sw, pw, dw)]


def _conv_compute(x, w, bias, mult, sh, sw, ph, pw, dh, dw, groups, pad_value):
    return generic.tconv2d(x, w, bias, mult, (sh, sw), (ph, pw), (dh, dw), groups, pad_value)


OPS: dict[str, OpDef] = {
    "tquantize": OpDef(1, 3, "int8", generic.tquantize, _like_first),       # scale, lo, hi
    "tquantize_ternary": OpDef(1, 2, "int8", generic.tquantize_ternary, _like_first),  # t_lo, t_hi
    "tlinear": OpDef(4, 0, "int64", generic.tlinear, _linear_shape),
    # scalars: stride h, w; padding h, w; dilation h, w; groups; pad_value
    "tconv2d": OpDef(4, 8, "int64", _conv_compute, _conv_shape),
    "trequantize": OpDef(2, 3, "int8", generic.trequantize, _like_first),     # lo, hi, axis
    # tensors z, shift, r (the int8 shortcut), mult_r; scalars lo, hi, axis
    "trequantize_residual": OpDef(4, 3, "int8", generic.trequantize_residual, _like_first),
    "tthreshold": OpDef(3, 1, "int8", generic.tthreshold, _like_first),        # axis
    "tdequantize": OpDef(3, 1, "float32", generic.tdequantize, _like_first),   # axis
}


def op_name(name: str) -> str:
    return f"relax.tternary_{name}"


def _scalar(expr):
    """The Python number a scalar argument (an IntImm / FloatImm) carries."""
    return expr.value


def _split(call, spec: OpDef):
    return list(call.args[:spec.n_tensors]), [_scalar(a) for a in call.args[spec.n_tensors:]]


def legalize(name: str, bb, call):
    """Lower one ternary op: the registry's implementation for the target, else generic."""
    spec = OPS[name]
    impl = registry.select(name, call)
    if impl is not None:
        return impl.emit(bb, call)
    tensors, scalars = _split(call, spec)
    return bb.call_te(lambda *ts: spec.compute(*ts, *scalars), *tensors, primfunc_name_hint=name)


def register_op(name: str, infer: Callable, lower: Callable) -> None:
    """Register ``relax.tternary_<name>`` once per process (TVM keeps a global op table)."""
    full = op_name(name)
    try:
        tvm.ir.Op.get(full)
        return
    except Exception:  # not registered yet
        pass
    tvm_ffi.get_global_func("ir.RegisterOp")(full, f"ternary operator {name} (tvm-ternary)")
    tvm.ir.register_op_attr(full, "FInferType", infer)
    tvm.ir.register_op_attr(full, "FLegalize", lower)
    tvm.ir.register_op_attr(full, "FPurity", True)  # no side effects (Relax passes ask)


def _register(name: str, spec: OpDef) -> None:
    def infer(call, ctx):
        tensors, scalars = _split(call, spec)
        shapes = [[int(d) for d in t.ty.shape] for t in tensors]
        return relax.TensorType(spec.out_shape(shapes, scalars), spec.out_dtype)

    register_op(name, infer, lambda bb, call: legalize(name, bb, call))


def register_all() -> None:
    """Register every ternary op, and the fused ones (``relax.fused_ops``)."""
    from . import fused_ops

    for name, spec in OPS.items():
        _register(name, spec)
    fused_ops.register_all()


def call(name: str, tensors: list, scalars: list) -> relax.Call:
    """Build ``R.tternary_<name>(*tensors, *scalars)``."""
    register_all()
    # Floats as float64 so scales and thresholds reach the kernel bit for bit.
    prims = [relax.prim_value(tirx.const(s, "float64" if isinstance(s, float) else "int64"))
             for s in scalars]
    return relax.Call(tvm.ir.Op.get(op_name(name)), list(tensors) + prims)
