"""Small queries over Relax functions that several passes share."""

from __future__ import annotations

import tvm
from tvm import relax


def op_of(expr) -> str | None:
    """The operator name of a call to a Relax op (``relax.nn.batch_norm``), else None."""
    return expr.op.name if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else None


def use_counts(func: relax.Function) -> dict:
    """How many bindings of its dataflow block use each variable (a pass fuses or folds a
    producer into its consumer only when that consumer is its one user)."""
    counts: dict = {}
    for block in func.body.blocks:
        if isinstance(block, relax.DataflowBlock):
            for var, users in relax.analysis.udchain(block).items():
                counts[var] = len(users)
    return counts
