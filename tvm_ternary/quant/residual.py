"""``ResidualQuant``: the quantizer on a residual branch, so a residual add sums integers.

Brevitas puts a ``QuantIdentity`` on a ResNet shortcut and shares its quantizer with the
layer that reads the same tensor; FINN then adds integers. This is the same idea. In a
float model ``ResidualQuant`` is the identity. ``ternarize(..., act="int8")`` gives it a
quantizer (``attach_residual_quantizers``):

* the input quantizer of a ternary layer that reads the same tensor (an identity
  shortcut: the block input is already quantized for the block's first conv, so the add
  uses those very integers), or
* its own ``Int8Act`` (a shortcut that computes, e.g. a 1x1 conv + batch norm), calibrated
  like every other quantizer; ``freeze`` then gives the shortcut layer a requantize
  epilogue at this scale.

``freeze`` folds the add into the block's last conv (``z + Mr * r``, docs/numerics.md)
when the block's consumers read int8; otherwise the add runs in float on the
dequantized residual, the same value the fake-quant model adds.
"""

from __future__ import annotations

import warnings

from torch import Tensor, fx, nn

from .act import Int8Act


class ResidualQuant(nn.Module):
    def __init__(self):
        super().__init__()
        self.act_quant: nn.Module | None = None
        self.shared = False  # act_quant belongs to a layer reading the same tensor

    def forward(self, x: Tensor) -> Tensor:
        if self.act_quant is None:
            return x
        if self.shared:  # that layer already updates and observes the scale
            return self.act_quant.fake_quant_current(x)
        return self.act_quant(x)

    def extra_repr(self) -> str:
        return "float" if self.act_quant is None else ("shared" if self.shared else "own") + " int8"


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        from .layers import TERNARY_LAYERS

        return isinstance(m, (ResidualQuant, *TERNARY_LAYERS)) or super().is_leaf_module(m, qualname)


def _static_int8(layer) -> bool:
    q = getattr(layer, "act_quant", None)
    return isinstance(q, Int8Act) and not q.dynamic


def _readers_quantizers(model: nn.Module) -> dict[str, nn.Module]:
    """ResidualQuant name -> the int8 quantizer of a ternary layer reading the same tensor."""
    from .layers import TERNARY_LAYERS

    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    found = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], ResidualQuant):
            continue
        source = node.args[0]
        for user in getattr(source, "users", ()):
            layer = modules.get(user.target) if user.op == "call_module" else None
            if isinstance(layer, TERNARY_LAYERS) and _static_int8(layer):
                found[node.target] = layer.act_quant
                break
    return found


def attach_residual_quantizers(model: nn.Module) -> None:
    """Give every ``ResidualQuant`` of a ternarized model its int8 quantizer (shared where
    a ternary layer reads the same tensor, else its own)."""
    names = [n for n, m in model.named_modules() if isinstance(m, ResidualQuant)]
    if not names:
        return
    try:
        shared = _readers_quantizers(model)
    except Exception as err:  # fx cannot trace data-dependent Python control flow
        warnings.warn(f"residual quantizers: the model could not be traced ({err}); each gets "
                      "its own quantizer, and residual adds stay in float", stacklevel=3)
        shared = {}
    for name in names:
        rq = model.get_submodule(name)
        rq.shared = name in shared
        rq.act_quant = shared[name] if rq.shared else Int8Act()
