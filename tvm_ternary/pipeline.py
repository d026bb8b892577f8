"""The compilation pipeline behind ``tt.compile``: a ternary model -> a callable built with TVM."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from tvm_ternary import target as targets


class CompiledModel:
    """A compiled ternary model: ``cm(x)`` takes and returns torch tensors.

    ``stats`` holds what is known about the compiled program (target; more per target as
    the CPU strategies and the accelerator land).
    """

    def __init__(self, executable, target: dict, relax_mod, frozen):
        from tvm import relax
        import tvm

        self.executable = executable
        self.target = target
        self.relax_mod = relax_mod
        self.frozen = frozen
        self._vm = relax.VirtualMachine(executable, tvm.cpu())
        self.stats: dict = {"target": target}

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        import tvm

        args = [tvm.runtime.tensor(np.ascontiguousarray(x.detach().cpu().numpy())) for x in inputs]
        out = self._vm["main"](*args)
        return torch.from_numpy(out.numpy())


def _frozen(model: nn.Module, example_inputs: tuple) -> nn.Module:
    from tvm_ternary.quant import calibrate, freeze
    from tvm_ternary.quant.calibrate import act_quantizers

    if getattr(model, "is_frozen", False):
        return model
    if any(not q.calibrated for q in act_quantizers(model)):
        warnings.warn("tt.compile: the model is not calibrated; calibrating on example_inputs "
                      "(pass a frozen or calibrated model to control this)", stacklevel=3)
        calibrate(model, [example_inputs[0]])
    return freeze(model)


def compile(model: nn.Module, example_inputs, target="cpu") -> CompiledModel:  # noqa: A001
    """Freeze (if needed), import into Relax, legalize and build for ``target``."""
    import tvm
    from tvm import relax

    from tvm_ternary.frontend import from_frozen

    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    tgt = targets.resolve(target)
    frozen = _frozen(model, example_inputs)
    mod = from_frozen(frozen, example_inputs)
    mod = relax.transform.LegalizeOps()(mod)
    executable = tvm.compile(mod, target=tvm.target.Target(tgt))
    return CompiledModel(executable, tgt, mod, frozen)
