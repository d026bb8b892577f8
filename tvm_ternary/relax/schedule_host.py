"""ScheduleHostOps: real CPU schedules for the PrimFuncs no strategy scheduled.

TVM's default legalization leaves float host ops (layer norm, softmax, GELU, pools, adds,
float linears kept on the host) as unscheduled loop nests: one thread, no vectors. After
fusion, this pass applies DLight's CPU rules (``tvm.s_tir.dlight.cpu``: ``GEMV`` for
matrix-vector products, ``Reduction`` for softmax / norms) and, for purely spatial
(injective) functions, a parallel + vectorize rule of our own. Functions a strategy
already scheduled (any parallel, vectorized, unrolled or tensorized loop) are left alone.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir import dlight
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

_MIN_PARALLEL = 4096   # fewer elements than this: thread start-up costs more than it saves
_VECTOR = 8            # float32 lanes of an AVX2 register


def _extent(loop_rv, sch) -> int | None:
    ext = sch.get(loop_rv).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


class Injective(CPUScheduleRule):
    """Inline what can be inlined; fuse each remaining spatial nest, parallelize the outer
    part and vectorize the inner when the extent divides evenly."""

    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        infos = try_inline(sch, infos)
        if not infos or any(not info.is_injective() for info in infos):
            return None
        for info in infos:
            loops = sch.get_loops(info.block_rv)
            if not loops:
                continue
            fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            extent = _extent(fused, sch)
            if extent is None:
                continue
            if extent % _VECTOR == 0 and extent >= _VECTOR:
                outer, inner = sch.split(fused, [None, _VECTOR])
                sch.vectorize(inner)
            else:
                outer = fused
            if extent >= _MIN_PARALLEL:
                sch.parallel(outer)
        return sch


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
    rules = dlight.ApplyDefaultSchedule(dlight.cpu.GEMV(), dlight.cpu.Reduction(), Injective())

    @tvm.transform.module_pass(opt_level=0, name="ScheduleHostOps")
    def _pass(mod, _ctx):
        with target:
            return rules(_mark_scheduled(mod))

    return _pass
