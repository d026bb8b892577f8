"""FoldBatchNorm: an inference batch norm right after a ``tdequantize`` joins it.

Freeze folds batch norm into the integer epilogue whenever the next layer is ternary; a
batch norm whose output goes elsewhere (a residual add, the model output) is left on the
host, after the layer's ``tdequantize(z, scale, bias)``. Both are per-channel affine maps,
so ``bn(z * scale + bias) = z * (scale * g) + ((bias - mean) * g + beta)`` with
``g = gamma / sqrt(var + eps)``: one pass over the tensor instead of two, folded in
float64 and stored in float32 like every dequantize parameter.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import expr_functor

from . import ops
from .analysis import op_of, use_counts

_BN = "relax.nn.batch_norm"
_DEQ = ops.op_name("tdequantize")


def _const(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


def _folded(deq: relax.Call, bn: relax.Call) -> relax.Call | None:
    """The dequantize with the batch norm folded in, or None if they do not line up."""
    z, scale, bias, axis = deq.args
    ndim = len(z.ty.shape)
    if bn.attrs.training or int(bn.attrs.axis) % ndim != int(axis.value) % ndim:
        return None
    params = [_const(a) for a in (scale, bias, *bn.args[1:])]
    if any(p is None for p in params):
        return None
    scale, bias, gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    g = (gamma if bn.attrs.scale else 1.0) / np.sqrt(var + float(bn.attrs.epsilon))
    new_bias = (bias - mean) * g + (beta if bn.attrs.center else 0.0)
    return relax.Call(deq.op, [z, relax.const(scale * g, "float32"),
                               relax.const(new_bias, "float32"), axis])


@expr_functor.mutator
class _Folder(relax.PyExprMutator):
    def __init__(self, mod, var2val: dict, uses: dict, state):
        super().__init__(mod)
        self.var2val, self.uses, self.state = var2val, uses, state

    def visit_tuple_getitem_(self, op: relax.TupleGetItem) -> relax.Expr:
        op = super().visit_tuple_getitem_(op)
        bn = self.var2val.get(op.tuple_value)
        if op.index != 0 or op_of(bn) != _BN or self.uses.get(op.tuple_value, 0) != 1:
            return op
        deq = self.var2val.get(bn.args[0])
        if op_of(deq) != _DEQ or self.uses.get(bn.args[0], 0) != 1:
            return op
        folded = _folded(deq, bn)
        if folded is None:
            return op
        if self.state is not None:
            self.state.folded.append("nn.batch_norm")
        return folded


def fold_batchnorm(mod: tvm.IRModule, state=None) -> tvm.IRModule:
    ops.register_all()
    out = tvm.IRModule(mod.functions, attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            folder = _Folder(mod, relax.analysis.get_var2val(func), use_counts(func), state)
            out[gv] = relax.analysis.remove_all_unused(folder.visit_expr(func))
    return out
