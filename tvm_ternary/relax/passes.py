"""The ordered Relax pipeline of ``tt.compile``: one list, one place.

Each pass is a function ``(IRModule, CompileState) -> IRModule``; the state carries the
target and collects what the passes decided (kernels, fallbacks, host ops) for
``CompiledModel.stats``. After them, ``build`` runs TVM's own CPU lowering with the host
scheduling pass inserted after operator fusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm

from .flatten_linear import flatten_linear_batch
from .fold_batchnorm import fold_batchnorm
from .fold_scale import fold_scale
from .fuse_epilogue import fuse_epilogue
from .legalize import legalize_by_strategy
from .ternary_inputs import annotate_ternary_inputs
from .schedule_host import schedule_host_ops  # noqa: F401  (re-exported for tests)


@dataclass
class CompileState:
    target: dict
    kernels: list = field(default_factory=list)     # "op: implementation" per ternary op
    generic: list = field(default_factory=list)     # ternary ops with no target kernel
    host_ops: dict = field(default_factory=dict)    # float ops left to TVM: name -> count
    folded: list = field(default_factory=list)      # host ops folded into ternary epilogues
    configs: dict = field(default_factory=dict)     # knob values per implementation (tuning)


PIPELINE = (
    fold_batchnorm,          # host batch norm after a dequantize -> its scale and bias
    fold_scale,              # constant * / + after a dequantize -> its scale and bias
    fuse_epilogue,           # body + requantize / threshold / dequantize -> one op
    flatten_linear_batch,    # [..., K] linears -> [rows, K] (what the kernels take)
    annotate_ternary_inputs, # mark linears fed only trits (last: passes that rebuild calls drop it)
    legalize_by_strategy,    # every op -> TIR; ternary ops through the strategy registry
)


def run(mod: tvm.IRModule, target: dict, configs: dict | None = None) -> tuple[tvm.IRModule, CompileState]:
    state = CompileState(target=target, configs=dict(configs or {}))
    for step in PIPELINE:
        mod = step(mod, state)
    return mod, state


def host_passes(target: tvm.target.Target) -> list:
    """TVM's CPU legalization and fusion (relax.backend.cpu_generic), then host scheduling."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    return cpu.library_dispatch_passes(target) + cpu.legalize_passes(target) + [schedule_host_ops(target)]


def _lowering(target: tvm.target.Target) -> tvm.transform.Pass:
    """TVM's CPU pipeline with ``host_passes`` in place of its legalization."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    passes = host_passes(target) + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target)

    @tvm.transform.module_pass(opt_level=0, name="TernaryLowering")
    def _pipeline(mod, _ctx):
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def build(mod: tvm.IRModule, target: dict, configs: dict | None = None):
    """Run the pipeline and compile; returns (executable, legalized module, state).
    ``configs``: knob values for the strategy implementations (``registry.config``)."""
    mod, state = run(mod, target, configs)
    tvm_target = tvm.target.Target(target)
    return tvm.compile(mod, target=tvm_target, relax_pipeline=_lowering(tvm_target)), mod, state


__all__ = ["CompileState", "PIPELINE", "build", "run"]
