"""LegalizeByStrategy: lower every op to TIR, ternary ops through the strategy registry.

Ternary ops ask ``strategy.registry`` for the target's implementation (compute + schedule)
and fall back to the portable generic compute; every other op (the float host ops a
frozen model keeps: layer norm, GELU, softmax, adds, pools...) gets TVM's own
legalization. The state records which kernel each ternary op got, which ternary ops
had no target implementation, and which float ops stayed on the host.
"""

from __future__ import annotations

import warnings
from collections import Counter

import tvm
from tvm import relax

from tvm_ternary.strategy import registry

from . import fused_ops, ops

_TERNARY_PREFIX = "relax.tternary_"


def host_op_census(mod: tvm.IRModule) -> dict[str, int]:
    """How many calls of each non-ternary Relax op the module's functions make."""
    found: Counter = Counter()

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            name = expr.op.name
            if not name.startswith(_TERNARY_PREFIX):
                found[name.removeprefix("relax.")] += 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return dict(sorted(found.items()))


def legalize_by_strategy(mod: tvm.IRModule, state) -> tvm.IRModule:
    ops.register_all()
    state.host_ops = host_op_census(mod)
    with registry.target_scope(state.target, state.configs) as chosen:
        mod = relax.transform.LegalizeOps()(mod)
    state.kernels = [f"{op}: {impl}" for op, impl in chosen]
    state.generic = sorted({op for op, impl in chosen if impl == registry.GENERIC})
    # Elementwise ternary ops (quantize, epilogues) are expected to use the generic compute
    # (the host scheduler vectorizes them); a layer body without a kernel is worth a warning.
    slow = [op for op in state.generic if op in fused_ops.BODIES]
    if slow:
        warnings.warn(f"target {state.target.get('mcpu', state.target.get('kind'))}: no "
                      f"target-specific kernel for {', '.join(slow)}; using the portable "
                      "generic compute (exact, slower)", stacklevel=2)
    return mod
