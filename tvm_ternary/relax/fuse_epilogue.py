"""FuseEpilogue: ``epilogue(body(x, ...))`` -> one fused ternary op per layer.

A ``tlinear`` / ``tconv2d`` whose only user is a ``trequantize`` / ``tthreshold`` /
``tdequantize`` (or a ``tconv2d`` whose only user is a ``trequantize_residual``) becomes ``R.tternary_<body>_<epilogue>`` (see ``relax.fused_ops``), so a
target's strategy can legalize the whole layer at once; the unfused body is then dead and
removed. A body with several users is left alone (fusing it would compute it twice).
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax import expr_functor

from . import fused_ops, ops
from .analysis import op_of, use_counts

_BODIES = {ops.op_name(b): b for b in fused_ops.BODIES}
_EPILOGUES = {ops.op_name(e): e for e in fused_ops.EPILOGUES}


@expr_functor.mutator
class _Fuser(relax.PyExprMutator):
    def __init__(self, mod, var2val: dict, uses: dict):
        super().__init__(mod)
        self.var2val, self.uses = var2val, uses

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if op_of(call) not in _EPILOGUES:
            return call
        z = call.args[0]
        body = self.var2val.get(z)
        if op_of(body) not in _BODIES or self.uses.get(z, 0) != 1:
            return call
        if f"{_BODIES[op_of(body)]}_{_EPILOGUES[op_of(call)]}" not in fused_ops.FUSED:
            return call
        return fused_ops.fuse(body, call)


def fuse_epilogue(mod: tvm.IRModule, state=None) -> tvm.IRModule:
    ops.register_all()
    out = tvm.IRModule(mod.functions, attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if not isinstance(func, relax.Function):
            continue
        fuser = _Fuser(mod, relax.analysis.get_var2val(func), use_counts(func))
        out[gv] = relax.analysis.remove_all_unused(fuser.visit_expr(func))
    return out
