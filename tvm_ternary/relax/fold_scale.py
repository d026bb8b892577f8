"""FoldScale: constant scales and offsets applied to a ``tdequantize`` output join it.

``tdequantize(z, scale, bias)`` is ``z * scale + bias`` per channel, so a following
``* c``, ``/ c``, ``+ c`` or ``- c`` with a constant ``c`` that is a scalar or varies
only along the channel axis (a temperature, a residual scale, a float bias the model adds
itself) folds into its scale and bias: one pass over the tensor instead of two. Folded in
float64, stored in float32 like every dequantize parameter. Chains fold one op per round
until nothing changes.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import expr_functor

from . import ops
from .analysis import op_of, use_counts

_DEQ = ops.op_name("tdequantize")
_ARITH = {"relax.multiply", "relax.divide", "relax.add", "relax.subtract"}


def _channel_vector(value: np.ndarray, out_shape: list[int], axis: int) -> np.ndarray | None:
    """``value`` as a per-channel vector if it broadcasts along ``axis`` only, else None."""
    ndim, channels = len(out_shape), out_shape[axis]
    if value.ndim > ndim:
        return None
    shape = [1] * (ndim - value.ndim) + list(value.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != axis % ndim):
        return None
    return np.broadcast_to(value.reshape(-1) if value.size > 1 else value.reshape(()), (channels,))


def _folded(deq: relax.Call, op: str, const: np.ndarray, deq_first: bool) -> relax.Call | None:
    z, scale, bias, axis = deq.args
    out_shape = [int(d) for d in z.ty.shape]
    c = _channel_vector(const.astype(np.float64), out_shape, int(axis.value))
    if c is None or (op == "relax.divide" and (not deq_first or (c == 0).any())):
        return None
    if op == "relax.subtract" and not deq_first:
        return None
    s = scale.value.numpy().astype(np.float64)
    b = bias.value.numpy().astype(np.float64)
    if op == "relax.multiply":
        s, b = s * c, b * c
    elif op == "relax.divide":
        s, b = s / c, b / c
    elif op == "relax.add":
        b = b + c
    else:
        b = b - c
    return relax.Call(deq.op, [z, relax.const(s, "float32"), relax.const(b, "float32"), axis])


@expr_functor.mutator
class _Folder(relax.PyExprMutator):
    def __init__(self, mod, var2val: dict, uses: dict, state):
        super().__init__(mod)
        self.var2val, self.uses, self.state = var2val, uses, state
        self.changed = False

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = op_of(call)
        if name not in _ARITH or len(call.args) != 2:
            return call
        for deq_first, (var, other) in ((True, call.args), (False, call.args[::-1])):
            deq = self.var2val.get(var)
            if op_of(deq) != _DEQ or self.uses.get(var, 0) != 1:
                continue
            if not isinstance(other, tvm.ir.expr.Constant) or deq.ty.dtype != other.ty.dtype:
                continue
            folded = _folded(deq, name, other.value.numpy(), deq_first)
            if folded is not None:
                self.changed = True
                if self.state is not None:
                    self.state.folded.append(name.removeprefix("relax."))
                return folded
        return call


def fold_scale(mod: tvm.IRModule, state=None) -> tvm.IRModule:
    ops.register_all()
    while True:
        out, changed = tvm.IRModule(mod.functions, attrs=mod.attrs), False
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function):
                folder = _Folder(mod, relax.analysis.get_var2val(func), use_counts(func), state)
                out[gv] = relax.analysis.remove_all_unused(folder.visit_expr(func))
                changed |= folder.changed
        mod = out
        if not changed:
            return mod
