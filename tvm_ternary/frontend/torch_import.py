"""Import a frozen ternary model into Relax.

``torch.export`` records the frozen model's ``tternary::*`` ops; TVM's
``from_exported_program`` converts the aten ops, and the converters here turn each ternary
op into the matching ``R.tternary_*`` operator, carrying its integer parameters (weights,
bias, multipliers as constants; scalars as PrimValues).
"""

from __future__ import annotations

import torch
from torch import nn

from tvm_ternary.errors import ExportError
from tvm_ternary.relax import ops as rops

from .checks import check_layer_shapes, check_supported, check_ternary_weights, layer_name


def _scalars(name: str, args: list) -> list:
    """Flatten the op's non-tensor arguments in the order ``relax.ops.OPS`` expects."""
    if name == "tconv2d":
        stride, padding, dilation, groups = args[:4]
        pad_value = args[4] if len(args) > 4 else 0
        return [*stride, *padding, *dilation, groups, pad_value]
    return list(args)


def _converter(name: str):
    n_tensors = rops.OPS[name].n_tensors

    def convert(node, importer):
        args = importer.retrieve_args(node)
        tensors, rest = list(args[:n_tensors]), list(args[n_tensors:])
        scalars = _scalars(name, rest)
        check_layer_shapes(name, layer_name(node), tensors, scalars)
        return importer.block_builder.emit(rops.call(name, tensors, scalars))

    return convert


def tternary_converters() -> dict:
    """``custom_convert_map`` for ``from_exported_program``: keys are op names without
    their namespace (``tlinear.default``), which is why every ternary op starts with t."""
    return {f"{name}.default": _converter(name) for name in rops.OPS}


def export_frozen(frozen: nn.Module, example_inputs: tuple) -> torch.export.ExportedProgram:
    """torch.export a frozen model; a failure says what to change."""
    try:
        return torch.export.export(frozen, tuple(example_inputs))
    except Exception as err:
        raise ExportError(f"torch.export failed: {err}\nMake the model's forward traceable "
                           "(no data-dependent Python control flow) and pass example inputs of "
                           "the shape you will run.") from err


def from_exported(ep: torch.export.ExportedProgram):
    """Import an exported frozen model into a Relax IRModule with R.tternary_* ops.

    Ops TVM has no converter for are reported by name and source line (``check_supported``)
    before TVM's importer would stop at the first with an assertion.
    """
    from tvm.relax.frontend.torch import from_exported_program
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    rops.register_all()
    converters = tternary_converters()
    ep = ep.run_decompositions()  # what TVM's importer would do; custom ops survive it
    check_supported(ep.graph, {**ExportedProgramImporter().create_convert_map(), **converters})
    check_ternary_weights(ep)
    return from_exported_program(ep, custom_convert_map=converters, run_ep_decomposition=False,
                                 unwrap_unit_return_tuple=True)


def from_frozen(frozen: nn.Module, example_inputs: tuple):
    """torch.export the frozen model and import it into a Relax IRModule."""
    return from_exported(export_frozen(frozen, example_inputs))
