"""The compilation pipeline behind ``tt.compile``: a ternary model -> a callable built with TVM."""

from __future__ import annotations

import json
import tarfile
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from tvm_ternary import target as targets
from tvm_ternary.errors import DataFileError, ShapeMismatchError


class CompiledModel:
    """A compiled ternary model: ``cm(x)`` takes and returns torch tensors.

    ``stats`` holds what is known about the compiled program (target; more per target as
    the CPU strategies and the accelerator land). ``export(path)`` writes a tar with the
    shared library and its metadata; ``tt.load(path)`` reads it back.
    """

    def __init__(self, executable, target: dict, input_shapes: list, relax_mod=None, frozen=None):
        import tvm
        from tvm import relax

        self.executable = executable
        self.target = target
        self.input_shapes = [list(s) for s in input_shapes]
        self.relax_mod = relax_mod
        self.frozen = frozen
        self.imported = None  # the Relax module before the pipeline (tt.debug recompiles it)
        self._vm = relax.VirtualMachine(executable, tvm.cpu())
        self._main = self._vm["main"]  # the lookup costs ~7 us, a few % of a 4096 GEMV call
        self.stats: dict = {"target": target}

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        import tvm

        self._check_shapes(inputs)
        # DLPack shares memory both ways: a numpy round trip cost ~0.1 ms per call on a
        # 4096-wide GEMV, a third of the kernel's time. Passing capsules, not tensors,
        # skips the __dlpack__ protocol negotiation: ~6 us per call on the way out and
        # 4-5 us on the way in (docs/cpu_kernels.md).
        args = [tvm.runtime.from_dlpack(torch.utils.dlpack.to_dlpack(_aligned(x))) for x in inputs]
        return torch.utils.dlpack.from_dlpack(self._main(*args).__dlpack__())

    def profile(self, *inputs: torch.Tensor, repeat: int = 5) -> dict:
        """Time each VM call (fused layer or host op) on ``inputs``; the result is also
        kept in ``stats["times_ms"]``. The hook adds a little per call: compare entries
        with each other, and use ``time_evaluator`` for the end-to-end figure."""
        import tvm

        from tvm_ternary.profile import profile

        self._check_shapes(inputs)
        times = profile(self._vm, [tvm.runtime.from_dlpack(_aligned(x)) for x in inputs], repeat)
        self.stats["times_ms"] = times
        return times

    def _check_shapes(self, inputs) -> None:
        shapes = [list(x.shape) for x in inputs]
        if shapes != self.input_shapes:
            raise ShapeMismatchError(f"compiled for input shapes {self.input_shapes}, got {shapes}")

    def export(self, path) -> Path:
        """Write ``path`` (a .tar): ``model.so`` + ``meta.json`` (target, input shapes)."""
        path = Path(path)
        with tempfile.TemporaryDirectory() as tmp:
            lib = Path(tmp) / "model.so"
            self.executable.export_library(str(lib))
            meta = Path(tmp) / "meta.json"
            meta.write_text(json.dumps({"format": _FORMAT, "target": self.target,
                                        "input_shapes": self.input_shapes}))
            with tarfile.open(path, "w") as tar:
                tar.add(lib, "model.so")
                tar.add(meta, "meta.json")
        return path


def _aligned(x: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor whose data TVM accepts: DLPack import needs 64-byte
    alignment, which a slice such as ``x[i:i + 1]`` usually lacks (then copy once)."""
    x = x.detach().cpu().contiguous()
    return x if x.data_ptr() % 64 == 0 else x.clone()


_FORMAT = "tvm-ternary-compiled-1"


def load(path) -> CompiledModel:
    """Load a model written by ``CompiledModel.export``."""
    import tvm

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such compiled model file")
    try:
        with tarfile.open(path) as tar:
            meta = json.loads(tar.extractfile("meta.json").read())
            # The library must stay on disk while loaded: keep it next to nothing else.
            tmp = Path(tempfile.mkdtemp(prefix="tternary-"))
            tar.extract("model.so", tmp, filter="data")
    except (tarfile.TarError, KeyError, json.JSONDecodeError, AttributeError) as err:
        raise DataFileError(f"{path}: not a tvm-ternary compiled model ({err})") from err
    if meta.get("format") != _FORMAT:
        raise DataFileError(f"{path}: unknown format {meta.get('format')!r}, expected {_FORMAT!r}")
    executable = tvm.runtime.load_module(str(tmp / "model.so"))
    return CompiledModel(executable, meta["target"], meta["input_shapes"])


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


def import_model(model, example_inputs) -> tuple:
    """``(Relax IRModule, frozen model or None, example inputs as a tuple)`` for what
    ``tt.compile`` accepts: a ternary ``nn.Module`` (frozen if needed) or an
    ``ExportedProgram`` of a frozen model."""
    from tvm_ternary.frontend import from_exported, from_frozen

    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if isinstance(model, torch.export.ExportedProgram):
        return from_exported(model), None, example_inputs
    frozen = _frozen(model, example_inputs)
    return from_frozen(frozen, example_inputs), frozen, example_inputs


def compile(model, example_inputs, target="cpu", hw="default", backend="fsim") -> CompiledModel:  # noqa: A001
    """Freeze (if needed), import into Relax, legalize and build for ``target``.

    ``target="vta"`` (or a vta target dict, ``cm.target`` of such a model) runs the ternary
    layers on the accelerator ``hw`` through ``backend`` (``vta_ext.compile.compile_vta``).

    ``model`` is a ternary ``nn.Module`` (frozen, calibrated, or neither: then it is
    calibrated on ``example_inputs`` with a warning) or a ``torch.export.ExportedProgram``
    of a frozen model (as ``tternary quantize`` saves it).
    """
    from vta_ext.compile import compile_vta, is_vta_target, options_from_target

    if is_vta_target(target):
        return compile_vta(model, example_inputs, **options_from_target(target, hw, backend))
    tgt = targets.resolve(target)
    mod, frozen, example_inputs = import_model(model, example_inputs)
    import tvm_ternary.cpu.strategy  # noqa: F401  (registers the CPU kernels)
    from tvm_ternary.relax import passes

    executable, legalized, state = passes.build(mod, tgt)
    cm = CompiledModel(executable, tgt, [list(x.shape) for x in example_inputs], legalized, frozen)
    cm.imported = mod
    cm.stats.update(_stats(state))
    return cm


def _stats(state) -> dict:
    """What the passes decided: the kernel per ternary op, and what fell back (ternary ops
    without a target kernel; float ops TVM lowers on the host)."""
    return {"kernels": state.kernels,
            "fallback": {"generic": state.generic, "host_ops": state.host_ops},
            "folded": state.folded}
