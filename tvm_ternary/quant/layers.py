"""Ternary layers: drop-in replacements of ``nn.Linear`` and ``nn.Conv2d``.

Each holds the latent float weight (trained), a method's weight quantizer, an optional
input activation quantizer (``act_quant``), and an optional pruning mask (weights forced to
zero, used by the ``sparse`` method). The float forward is the fake-quant model; the
integer parameters come from ``ternary_weight()`` and ``scales()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .methods.base import WeightQuantizer


class _TernaryMixin:
    weight: nn.Parameter
    weight_quant: WeightQuantizer
    act_quant: nn.Module | None
    prune_mask: Tensor | None

    def _init_ternary(self, weight_quant: WeightQuantizer, act_quant: nn.Module | None) -> None:
        self.weight_quant = weight_quant
        self.act_quant = act_quant
        self.register_buffer("prune_mask", None)
        weight_quant.init_from(self.weight)

    def _quantized_weight(self) -> Tensor:
        w = self.weight if self.prune_mask is None else self.weight * self.prune_mask
        return self.weight_quant(w)

    def _quantized_input(self, x: Tensor) -> Tensor:
        return x if self.act_quant is None else self.act_quant(x)

    @torch.no_grad()
    def ternarize_weight(self) -> tuple[Tensor, Tensor, Tensor]:
        w = self.weight if self.prune_mask is None else self.weight * self.prune_mask
        w_t, alpha_p, alpha_n = self.weight_quant.ternarize(w)
        if self.prune_mask is not None:
            w_t = w_t * (self.prune_mask != 0).to(torch.int8)
        return w_t.to(torch.int8), alpha_p.float(), alpha_n.float()

    def ternary_weight(self) -> Tensor:
        """The integer weight in {-1, 0, +1} (torch.int8, the layer's weight layout)."""
        return self.ternarize_weight()[0]

    def scales(self) -> tuple[Tensor, Tensor]:
        """``(alpha_p, alpha_n)``: float32 ``[out_channels]`` each."""
        _, alpha_p, alpha_n = self.ternarize_weight()
        return alpha_p, alpha_n

    def sparsity(self) -> float:
        return float((self.ternary_weight() == 0).float().mean())

    def regularizer(self) -> Tensor:
        return self.weight_quant.regularizer(self.weight)


class TernaryLinear(_TernaryMixin, nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_quant: WeightQuantizer, act_quant: nn.Module | None = None):
        nn.Linear.__init__(self, in_features, out_features, bias)
        self._init_ternary(weight_quant, act_quant)

    @classmethod
    def from_float(cls, layer: nn.Linear, weight_quant, act_quant) -> "TernaryLinear":
        new = cls.__new__(cls)
        nn.Linear.__init__(new, layer.in_features, layer.out_features, layer.bias is not None)
        new.load_state_dict(layer.state_dict())
        new._init_ternary(weight_quant, act_quant)
        return new

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self._quantized_input(x), self._quantized_weight(), self.bias)


class TernaryConv2d(_TernaryMixin, nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *,
                 weight_quant: WeightQuantizer, act_quant: nn.Module | None = None):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                           dilation, groups, bias)
        self._init_ternary(weight_quant, act_quant)

    @classmethod
    def from_float(cls, layer: nn.Conv2d, weight_quant, act_quant) -> "TernaryConv2d":
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError("only zero padding with explicit sizes is supported")
        new = cls.__new__(cls)
        nn.Conv2d.__init__(new, layer.in_channels, layer.out_channels, layer.kernel_size,
                           layer.stride, layer.padding, layer.dilation, layer.groups,
                           layer.bias is not None)
        new.load_state_dict(layer.state_dict())
        new._init_ternary(weight_quant, act_quant)
        return new

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self._quantized_input(x), self._quantized_weight(), self.bias,
                        self.stride, self.padding, self.dilation, self.groups)


TERNARY_LAYERS = (TernaryLinear, TernaryConv2d)


def ternary_layers(model: nn.Module):
    """``(name, layer)`` for every ternary layer of ``model``, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TERNARY_LAYERS)]
