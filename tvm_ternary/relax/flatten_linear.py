"""FlattenLinearBatch: a ternary linear on ``x [..., K]`` runs on ``x [M, K]``.

Transformer blocks call linears on ``[batch, tokens, K]``; the CPU kernels take a 2-D
input (rows x K), so the leading dimensions are folded into rows around the op
(reshapes are free: they only relabel a contiguous buffer).
"""

from __future__ import annotations

import math

import tvm
from tvm import relax
from tvm.relax import expr_functor

from . import fused_ops, ops

_LINEARS = {ops.op_name("tlinear")} | {ops.op_name(n) for n, d in fused_ops.FUSED.items()
                                       if d.body == "tlinear"}


@expr_functor.mutator
class _Flattener(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name in _LINEARS):
            return call
        x = call.args[0]
        shape = [int(d) for d in x.ty.shape]
        if len(shape) <= 2:
            return call
        rows = math.prod(shape[:-1])
        x2 = self.builder_.emit(relax.op.reshape(x, [rows, shape[-1]]))
        flat = self.builder_.emit(relax.Call(call.op, [x2] + list(call.args[1:])))
        out_features = int(call.args[1].ty.shape[0])  # w [N, K]
        return relax.op.reshape(flat, shape[:-1] + [out_features])


def flatten_linear_batch(mod: tvm.IRModule, state=None) -> tvm.IRModule:
    ops.register_all()
    out = tvm.IRModule(mod.functions, attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gv] = _Flattener(mod).visit_expr(func)
    return out
