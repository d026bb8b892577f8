"""Sparse ternary networks by regularisation, quantization pruning and retraining
(Faraone et al., ICONIP 2017).

Only the paper's abstract could be read (three stages: L2 + a quantization-threshold
regulariser, quantization pruning, retraining; up to ~98% sparsity). The formulas below
are OUR INTERPRETATION, not the paper's:

1. Train with TWN's per-channel quantizer, L2 weight decay, and the threshold regulariser
   ``R = lam * sum_{|w| <= delta} |w|``: an L1 pull on exactly the weights that already
   quantize to zero, so they settle at zero and the per-channel threshold falls.
2. Quantization pruning: per layer, keep the ``1 - sparsity`` largest-magnitude weights;
   the rest are masked to zero for good (``prune_mask``).
3. Retrain with the mask fixed; surviving weights are ternarized by sign (threshold 0), so
   the sparsity is exactly the target; the scale is their mean magnitude per channel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import WeightQuantizer, reduce_dims
from .twn import twn_ternarize


class SparseTernary(WeightQuantizer):
    def __init__(self, ratio: float = 0.7, reg: float = 1e-4):
        super().__init__()
        self.ratio = ratio  # threshold ratio; 0 after pruning (sign of the survivors)
        self.reg = reg

    def ternarize(self, w: Tensor):
        w = w.detach()
        if self.ratio == 0:
            dims = reduce_dims(w)
            nz = w != 0
            alpha = (w.abs().sum(dims) / nz.sum(dims).clamp_min(1)).float()
            return torch.sign(w).to(torch.int8), alpha, alpha.clone()
        w_t, alpha = twn_ternarize(w, self.ratio)
        return w_t, alpha, alpha.clone()

    def regularizer(self, w: Tensor) -> Tensor:
        if self.ratio == 0 or self.reg == 0:
            return w.new_zeros(())
        dims = reduce_dims(w)
        delta = self.ratio * w.detach().abs().mean(dim=dims, keepdim=True)
        return self.reg * (w.abs() * (w.detach().abs() <= delta)).sum()


@torch.no_grad()
def prune(model, sparsity: float) -> None:
    """Stage 2: mask all but the largest ``1 - sparsity`` weights of every ternary layer."""
    from ..layers import ternary_layers

    for _, layer in ternary_layers(model):
        w = layer.weight.abs().flatten()
        keep = max(1, int(round(w.numel() * (1 - sparsity))))
        cutoff = torch.topk(w, keep).values.min()
        layer.prune_mask = (layer.weight.abs() >= cutoff).to(layer.weight.dtype)
        layer.weight_quant.ratio = 0.0
