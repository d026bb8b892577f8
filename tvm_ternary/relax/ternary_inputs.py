"""AnnotateTernaryInputs: mark the linear layers whose input is known to be ternary.

A ternary x ternary kernel (``popcount_gemv``) is only correct when every input value is
in {-1, 0, 1}, which the input's int8 type does not say. The strategy registry sees one
call at a time, so this pass decides it from the dataflow and records the answer on the
call (a value-range annotation, ``tternary_input = "ternary"`` in the call's attrs),
where the kernel's ``applies`` reads it.

A value is ternary when it is produced by ``tquantize_ternary``, ``tthreshold`` or a
layer fused with its threshold (``t*_tthreshold``), or reaches the linear only through
ops that keep the value set (reshape, flatten, transposes, squeeze / expand_dims, max
pooling, ReLU, tuples and their items). Anything else (int8 activations, function
parameters, adds) is not. Run it last before legalization: passes that rebuild calls drop
their attrs.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax import expr_functor

ATTR = "tternary_input"
TERNARY = "ternary"

_PRODUCERS = {"relax.tternary_tquantize_ternary", "relax.tternary_tthreshold",
              "relax.tternary_tlinear_tthreshold", "relax.tternary_tconv2d_tthreshold"}
# Ops whose output values are a subset of their first input's values.
_KEEP_VALUES = {"relax.reshape", "relax.flatten", "relax.permute_dims", "relax.squeeze",
                "relax.expand_dims", "relax.nn.max_pool2d", "relax.nn.relu"}
_LINEARS = {"relax.tternary_tlinear", "relax.tternary_tlinear_trequantize",
            "relax.tternary_tlinear_tthreshold", "relax.tternary_tlinear_tdequantize"}


def _op_name(expr) -> str | None:
    return expr.op.name if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else None


def ternary_values(func: relax.Function) -> set:
    """The variables of ``func`` whose values are all in {-1, 0, 1}."""
    found: set = set()
    tuples: dict = {}

    def is_ternary(expr) -> bool:
        if isinstance(expr, relax.Var):
            return expr in found
        if isinstance(expr, relax.TupleGetItem):
            fields = tuples.get(expr.tuple_value)
            return fields is not None and fields[expr.index]
        name = _op_name(expr)
        if name in _PRODUCERS:
            return True
        return name in _KEEP_VALUES and is_ternary(expr.args[0])

    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Tuple):
                tuples[binding.var] = [is_ternary(f) for f in value.fields]
            elif is_ternary(value):
                found.add(binding.var)
    return found


def has_ternary_input(call: relax.Call) -> bool:
    attrs = call.attrs
    return isinstance(attrs, tvm.ir.DictAttrs) and ATTR in attrs and attrs[ATTR] == TERNARY


@expr_functor.mutator
class _Annotator(relax.PyExprMutator):
    def __init__(self, mod, ternary: set):
        super().__init__(mod)
        self.ternary = ternary

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if _op_name(call) in _LINEARS and call.args[0] in self.ternary:
            return relax.Call(call.op, call.args, {ATTR: TERNARY}, call.ty_args)
        return call


def annotate_ternary_inputs(mod: tvm.IRModule, state=None) -> tvm.IRModule:
    """The pass: every ternary-input linear call gets ``tternary_input = "ternary"``."""
    out = tvm.IRModule(mod.functions, attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gv] = _Annotator(mod, ternary_values(func)).visit_expr(func)
    return out
