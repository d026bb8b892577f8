"""ScheduleHostOps: real CPU schedules for the PrimFuncs no strategy scheduled.

TVM's default legalization leaves float host ops (float linears kept on the host, layer
norm, softmax, ...) as unscheduled loop nests. After fusion, this pass applies our
``Matmul`` rule (vectorized over N, parallel over rows) and DLight's CPU rules
(``tvm.s_tir.dlight.cpu``: ``GEMV`` for matrix-vector products, ``Reduction`` for softmax
and norms). Purely elementwise functions are left to LLVM's auto-vectorizer: a
parallel + vectorize rule with full inlining measured slower than that on the FFN's
GELU epilogue (2.05 vs 1.31 ms), so it is not applied. Functions a strategy already
scheduled (any parallel, vectorized, unrolled or tensorized loop) are left alone.

Measured (float LayerNorm-Linear-GELU-Linear-Softmax, 64 x 256 -> 1024, 2 loaded cores):
85.7 ms unscheduled, 4.9 ms with these rules, torch 3.0 ms.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir import dlight
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

_MIN_PARALLEL = 4096   # fewer outputs than this: thread start-up costs more than it saves
_VECTOR = 8            # float32 lanes of an AVX2 register


def _extent(loop_rv, sch) -> int | None:
    ext = sch.get(loop_rv).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


class Matmul(CPUScheduleRule):
    """Float matmul / dense (a host linear, ``x @ w.T`` with ``w`` pre-transposed by
    constant folding): one reduction block ``[..., M, N] += A[..., M, K] * B[K, N]``.
    The N axis is split by two vector widths and vectorized innermost, K runs just above
    it (so each A element is broadcast against contiguous B rows), the outer spatial loops
    run in parallel. An epilogue (bias add, activation) keeps its own loop nest, which
    LLVM vectorizes as it stands."""

    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        infos = try_inline(sch, infos)
        reductions = [i for i in infos if not i.is_injective()]
        kind = reductions[0].dom_kind() if len(reductions) == 1 else ""
        if not (kind.endswith("SSR") and kind.count("R") == 1):
            return None
        block = reductions[0].block_rv
        *spatial, k = sch.get_loops(block)
        extents = [_extent(loop, sch) for loop in spatial]
        if any(e is None for e in extents) or extents[-1] % _VECTOR:
            return None
        lanes = 2 * _VECTOR if extents[-1] % (2 * _VECTOR) == 0 else _VECTOR
        n_outer, n_inner = sch.split(spatial[-1], [None, lanes])
        sch.reorder(*spatial[:-1], n_outer, k, n_inner)
        tile = sch.fuse(*spatial[:-1], n_outer) if spatial[:-1] else n_outer
        if _total(extents) >= _MIN_PARALLEL:
            sch.parallel(tile)
        sch.vectorize(n_inner)
        sch.decompose_reduction(block, k)  # last: TVM checks the others on whole reductions
        return sch


def _total(extents) -> int:
    total = 1
    for e in extents:
        total *= e
    return total


def already_scheduled(func: tirx.PrimFunc) -> bool:
    """Whether a strategy scheduled ``func``: any loop that is not plain serial."""
    found = []

    def visit_for(node):
        if node.kind != tirx.ForKind.SERIAL:
            found.append(node)

    tvm_ffi.structural_walk(func.body, [(tirx.For, visit_for)], order="post")
    return bool(found) or bool(func.attrs and func.attrs.get("tirx.is_scheduled", False))


def _mark_scheduled(mod: tvm.IRModule) -> tvm.IRModule:
    out = tvm.IRModule(mod.functions, attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc) and already_scheduled(func):
            out[gv] = func.with_attr("tirx.is_scheduled", True)
    return out


def schedule_host_ops(target: tvm.target.Target) -> tvm.transform.Pass:
    rules = dlight.ApplyDefaultSchedule(Matmul(), dlight.cpu.GEMV(), dlight.cpu.Reduction())

    @tvm.transform.module_pass(opt_level=0, name="ScheduleHostOps")
    def _pass(mod, _ctx):
        with target:
            return rules(_mark_scheduled(mod))

    return _pass
