"""``compile_vta``: a ternary model -> a CompiledModel whose ternary layers run on the accelerator.

The Relax pipeline of ``tt.compile`` runs up to legalization; ``partition_for_vta`` then
offloads every layer the HwConfig can run to a packed function (``vta_ext.runtime``), and
the rest (quantizers, pooling, residual adds, float heads, layers the hardware lacks a
feature for) is built for the host CPU as ``target="cpu"`` would build it.
"""

from __future__ import annotations

import numpy as np
import torch

from tvm_ternary import target as targets
from tvm_ternary.errors import UnsupportedTargetError
from tvm_ternary.pipeline import CompiledModel, import_model

from .config import HwConfig
from .compiler.partition import Partitioned, partition_for_vta
from .runtime import Session
from .stats import model_stats, run_stats


class VtaCompiledModel(CompiledModel):
    """A CompiledModel whose accelerator regions live in this process (the packed functions
    of ``session``); ``stats`` adds the accelerator's cost and what stayed on the host."""

    def __init__(self, executable, target: dict, input_shapes: list, relax_mod, frozen,
                 session: Session, partitioned: Partitioned):
        super().__init__(executable, target, input_shapes, relax_mod, frozen)
        self.session = session
        self.partitioned = partitioned
        self.runs = 0  # successful calls (stats["runs"])

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.session.take_error()
        try:
            y = super().__call__(*inputs)
        except Exception:
            err = self.session.take_error()
            if err is None:
                raise
            raise err from None  # the region's typed error, not the VM's RuntimeError
        self.runs += 1
        self.stats.update(run_stats(self.session), runs=self.runs)
        return y

    def export(self, path):
        raise UnsupportedTargetError(
            "export of a target='vta' model: the accelerator programs live in this process "
            "(packed functions), they are not serialized into the library yet")


def compile_vta(model, example_inputs, hw="default", backend="fsim", host="cpu") -> VtaCompiledModel:
    """Compile ``model`` (a ternary nn.Module, frozen or not, or an ExportedProgram of a
    frozen one) for the accelerator ``hw`` (a HwConfig, its name, JSON path or dict), running
    the accelerator regions on ``backend`` (``fsim``, ``rtl``, ``reference`` or a Backend)
    and the host regions on ``host`` (a CPU target, as ``tt.compile`` takes)."""
    from tvm_ternary.relax import passes
    from tvm_ternary.relax.legalize import legalize_by_strategy

    import tvm_ternary.cpu.strategy  # noqa: F401  (registers the CPU kernels for host layers)

    hw = _hw_config(hw)
    host_target = targets.resolve(host)
    mod, frozen, example_inputs = import_model(model, example_inputs)
    state = passes.CompileState(target=host_target)
    for step in passes.PIPELINE[:passes.PIPELINE.index(legalize_by_strategy)]:
        mod = step(mod, state)
    session = Session(hw, backend)
    parts = partition_for_vta(mod, session.offload, _layer_namer(frozen))
    executable, legalized, state = passes.build(parts.mod, host_target)
    # The whole HwConfig, so the target dict alone recompiles the same model (tt.debug).
    tgt = {"kind": "vta", "hw": hw.to_dict(), "hw_hash": hw.hash,
           "backend": session.backend.name, "host": host_target}
    cm = VtaCompiledModel(executable, tgt, [list(x.shape) for x in example_inputs], legalized,
                          frozen, session, parts)
    cm.imported = mod
    cm.stats.update(model_stats(parts, session, hw, state))
    cm.stats["lowering"] = _lowerings(parts, session)
    # layers the user kept in float (keep_float / skip_first_last): host float ops
    cm.stats["float_layers"] = list(frozen.host_layers) if frozen is not None else []
    return cm


def _lowerings(parts: Partitioned, session: Session) -> dict:
    """Accelerator layer -> the route that lowered its program (``LayerStats.lowering``:
    "tir" by default); a backend that runs no program (reference) lowers nothing."""
    out = {}
    for p in parts.placements:
        stats = getattr(session.region(p.packed_func).compiled, "stats", None) \
            if p.on_accelerator else None
        if stats is not None:
            out[p.name] = stats.lowering
    return out


def _hw_config(hw) -> HwConfig:
    """A HwConfig from itself, its name, a JSON path, or its dict (``HwConfig.to_dict``)."""
    if isinstance(hw, HwConfig):
        return hw
    return HwConfig.from_dict(hw) if isinstance(hw, dict) else HwConfig.load(hw)


def is_vta_target(target) -> bool:
    return target == "vta" or (isinstance(target, dict) and target.get("kind") == "vta")


def options_from_target(target, hw="default", backend="fsim") -> dict:
    """``compile_vta`` keywords for ``tt.compile(target="vta", hw=..., backend=...)`` or for a
    target dict a target="vta" model carries (``cm.target``: its own hw, backend, host)."""
    if isinstance(target, dict):
        return {"hw": target.get("hw", hw), "backend": target.get("backend", backend),
                "host": target.get("host", "cpu")}
    return {"hw": hw, "backend": backend}


def _layer_namer(frozen):
    """Names layers by their weights and bias (Relax keeps no layer names): the frozen
    model's layer whose integers these are; None without a model (then by position)."""
    if frozen is None:
        return lambda weight, bias: None
    table: dict = {}
    for layer in frozen.frozen_layers():
        table.setdefault(_key(layer.w_t.numpy(), layer.bias.numpy()), []).append(layer.layer_name)

    def name_of(weight, bias):
        names = table.get(_key(weight, bias))
        # Identical layers (same weights and bias) are interchangeable: name them in order.
        return names.pop(0) if names else None

    return name_of


def _key(weight, bias) -> tuple:
    w, b = np.asarray(weight, np.int8), np.asarray(bias, np.int64)
    return w.shape, w.tobytes(), b.tobytes()


__all__ = ["VtaCompiledModel", "compile_vta", "is_vta_target", "options_from_target"]
