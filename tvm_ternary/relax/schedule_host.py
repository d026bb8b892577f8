"""ScheduleHostOps: real CPU schedules for the PrimFuncs no strategy scheduled.

TVM's default legalization leaves float host ops as unscheduled loop nests; for the
reductions that dominate (float linears kept on the host, float convolutions, pools) that
is 4-40x slower than needed. After fusion, this pass applies, through DLight's
``ApplyDefaultSchedule`` driver, our ``SpatialVectorReduction`` rule: vectorize the
innermost output axis under the reduction loops, parallel over the rest.

DLight's own CPU rules (``tvm.s_tir.dlight.cpu.GEMV`` / ``Reduction``) were measured and
are not applied: ``Reduction`` made layer norm + softmax slower (64 x 256: 0.134 vs
0.081 ms; 512 x 1024: 6.0 vs 4.9 ms) and turned a 4096 -> 1001 GEMV into a strided
column walk (46 ms); ``GEMV`` did not fire on the host linears tried. Elementwise
functions are left to LLVM's auto-vectorizer: a parallel + vectorize rule with full
inlining measured slower on the FFN's GELU epilogue (2.05 vs 1.31 ms).

Measured on 2 loaded cores (min of repeats), unscheduled -> this pass (torch fp32):
float LayerNorm-Linear-GELU-Linear-Softmax (64 x 256 -> 1024) 85.7 -> 4.9 ms (3.0 ms);
float conv 3->64 + grouped conv + pools at 32 x 32: 12.6 -> 2.9 ms (2.1 ms); float
linear 4096 -> 1001 at batch 1: 34.7 -> 0.85 ms. Functions a strategy already scheduled
(any parallel, vectorized, unrolled or tensorized loop) are left alone.
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


class SpatialVectorReduction(CPUScheduleRule):
    """One reduction block, spatial loops then reduction loops: a float matmul / dense
    (``[..., M, N] += A[..., M, K] * B[K, N]``, ``w`` pre-transposed by constant folding),
    a float conv2d (``[n, oc, oh, ow] += x[n, ic, ...] * w[oc, ic, kh, kw]``, padding
    inlined) or a pool. The innermost spatial axis (N, or the output column) is split by
    a vector width and vectorized innermost, the reductions run just above it (each A /
    w element is broadcast against a vector of outputs), the outer spatial loops run in
    parallel. An epilogue (bias add, activation) keeps its own loop nest, which LLVM
    vectorizes as it stands."""

    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        infos = try_inline(sch, infos)
        reductions = [i for i in infos if not i.is_injective()]
        if len(reductions) != 1:
            return None
        kind = reductions[0].dom_kind()
        n_spatial = len(kind) - len(kind.lstrip("S"))
        if n_spatial < 1 or kind[n_spatial:] != "R" * (len(kind) - n_spatial):
            return None
        block = reductions[0].block_rv
        loops = sch.get_loops(block)
        spatial, reduce = loops[:n_spatial], loops[n_spatial:]
        extents = [_extent(loop, sch) for loop in spatial]
        if any(e is None for e in extents):
            return None
        lanes = next((v for v in (2 * _VECTOR, _VECTOR, _VECTOR // 2) if extents[-1] % v == 0), None)
        if lanes is None:
            # No vector width divides the axis: keep it whole and innermost, so each
            # reduction step is a contiguous loop LLVM vectorizes with a remainder.
            sch.reorder(*reduce, spatial[-1])
            if len(spatial) > 2 and _total(extents) >= _MIN_PARALLEL:
                sch.parallel(sch.fuse(*spatial[:-1]))
            sch.decompose_reduction(block, reduce[0])
            return sch
        v_outer, v_inner = sch.split(spatial[-1], [None, lanes])
        sch.reorder(*spatial[:-1], v_outer, *reduce, v_inner)
        tile = sch.fuse(*spatial[:-1], v_outer) if len(spatial) > 1 else v_outer
        if _total(extents) >= _MIN_PARALLEL:
            sch.parallel(tile)
        sch.vectorize(v_inner)
        sch.decompose_reduction(block, reduce[0])  # last: TVM checks the others on whole reductions
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
    rules = dlight.ApplyDefaultSchedule(SpatialVectorReduction())

    @tvm.transform.module_pass(opt_level=0, name="ScheduleHostOps")
    def _pass(mod, _ctx):
        with target:
            return rules(_mark_scheduled(mod))

    return _pass
