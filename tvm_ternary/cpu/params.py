"""Kernel parameters in the types the kernels declare.

``relax.const`` narrows an int64 array whose values fit to int32, so a bias built that way
reaches legalization as int32 while every kernel takes an int64 bias (and int32
multipliers): a ``call_tir`` would then fail type checking deep inside TVM.
"""

from __future__ import annotations

import tvm
from tvm import relax


def typed(expr, dtype: str):
    """``expr`` as ``dtype``: unchanged if it already is, a retyped constant, or a cast."""
    if expr.ty.dtype == dtype:
        return expr
    if isinstance(expr, tvm.ir.expr.Constant):
        return relax.const(expr.value.numpy().astype(dtype), dtype)
    return relax.op.astype(expr, dtype)
