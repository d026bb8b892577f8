"""``ternarize(model, method, ...)``: replace Linear / Conv2d layers with ternary layers."""

from __future__ import annotations

import copy
import warnings
import torch
from torch import nn

from tvm_ternary.errors import FrozenModelError, NonFiniteWeightError, UnsupportedLayerError

from .act import make_act_quantizer
from .layers import TernaryConv2d, TernaryLinear
from .residual import attach_residual_quantizers
from .methods.registry import lookup

# Layers with weights that we cannot ternarize (yet): kept float, or an error under strict.
_UNSUPPORTED = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                nn.ConvTranspose3d, nn.Bilinear, nn.MultiheadAttention, nn.RNNBase)


def _ternarizable(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def ternarize(model: nn.Module, method: str = "twn", *, act: str | None = "default",
              keep_float: list[str] | tuple[str, ...] = (), skip_first_last: bool = False,
              strict: bool = False, inplace: bool = False, **opts) -> nn.Module:
    """Return a copy of ``model`` whose Linear and Conv2d layers are ternary.

    ``act``: input quantizer of every ternary layer: "int8" (default for most methods),
    "int8_dynamic" (per-token), "ternary" (default for ``fatnn`` / ``teacher_student``),
    or None (float inputs). ``keep_float`` names layers to leave in float;
    ``skip_first_last`` keeps the first and last ternarizable layers in float. Other layers
    with weights that cannot be ternarized (Conv1d, ConvTranspose, ...) stay float with a
    warning, or raise ``UnsupportedLayerError`` under ``strict=True``. ``opts`` go to the
    method's weight quantizer. With ``act="int8"``, every ``ResidualQuant`` of the model
    (a quantizer on a residual branch, e.g. in ``models.BasicBlock``) gets an int8
    quantizer, so residual adds can run on integers (``quant.residual``).
    """
    factory, default_act = lookup(method)
    if getattr(model, "is_frozen", False):
        raise FrozenModelError("ternarize() needs a float model; this one is already frozen")
    act = default_act if act == "default" else act
    qm = model if inplace else copy.deepcopy(model)

    names = _ternarizable(qm)
    unknown = sorted(set(keep_float) - set(dict(qm.named_modules())))
    if unknown:
        raise ValueError(f"keep_float names layers that do not exist: {unknown}")
    keep = set(keep_float)
    if skip_first_last and names:
        keep |= {names[0], names[-1]}

    for name, mod in qm.named_modules():
        if isinstance(mod, _UNSUPPORTED):
            msg = f"layer {name!r} ({type(mod).__name__}) cannot be ternarized"
            if strict:
                raise UnsupportedLayerError(msg)
            warnings.warn(msg + "; it stays float and runs on the host", stacklevel=2)

    for name in names:
        if name in keep:
            continue
        layer = qm.get_submodule(name)
        if not torch.isfinite(layer.weight).all():
            raise NonFiniteWeightError(f"layer {name!r}: weight contains NaN or infinity")
        quant = factory(layer, **opts)
        act_quant = make_act_quantizer(act)
        cls = TernaryConv2d if isinstance(layer, nn.Conv2d) else TernaryLinear
        _set_submodule(qm, name, cls.from_float(layer, quant, act_quant))
    if act == "int8":  # integer residual adds need int8 on both branches
        attach_residual_quantizers(qm)
    qm.ternary_method = method
    return qm
