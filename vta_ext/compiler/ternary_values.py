"""Which int8 tensors of a Relax function hold trits {-1, 0, +1} only.

The accelerator stores ternary activations in 2 bits when a HwConfig has ``act_bits = 2``,
so a layer whose input comes from a ternary quantizer or threshold epilogue (possibly
through value-preserving ops such as max pooling or a reshape) can read 2-bit inputs; an
int8 input cannot.
"""

from __future__ import annotations

import tvm
from tvm import relax

from tvm_ternary.relax import ops
from tvm_ternary.relax.analysis import op_of

_TERNARY_SOURCES = {ops.op_name("tquantize_ternary")} | {
    ops.op_name(f"{body}_tthreshold") for body in ("tlinear", "tconv2d")}
# Ops whose output values are a subset of their first input's values (trits stay trits).
_PRESERVING = {"relax.nn.max_pool2d", "relax.reshape", "relax.flatten", "relax.permute_dims",
               "relax.squeeze", "relax.expand_dims", "relax.strided_slice", "relax.take"}


def _produced_op(expr, mod: tvm.IRModule | None) -> str | None:
    """The op a call applies; for a call to a composite function, the op inside it."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, relax.GlobalVar) and mod is not None:
        func = mod[expr.op]
        if isinstance(func, relax.Function) and "Composite" in (func.attrs or {}):
            (block,) = func.body.blocks
            return op_of(block.bindings[-1].value)
    return op_of(expr)


def _is_ternary(value, ternary: set, mod) -> bool:
    if isinstance(value, relax.Var):
        return value in ternary
    if isinstance(value, relax.TupleGetItem):
        return (value.tuple_value, value.index) in ternary
    op = _produced_op(value, mod)
    if op in _TERNARY_SOURCES:
        return True
    if op in _PRESERVING:
        return _is_ternary(value.args[0], ternary, mod)
    return False


def ternary_vars(func: relax.Function, mod: tvm.IRModule | None = None) -> set:
    """The variables of ``func`` (and tuple fields, as ``(var, index)``) that hold trits."""
    ternary: set = set()
    for block in func.body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            if isinstance(value, relax.Tuple):
                for i, field in enumerate(value.fields):
                    if _is_ternary(field, ternary, mod):
                        ternary.add((var, i))
            elif _is_ternary(value, ternary, mod):
                ternary.add(var)
    return ternary
