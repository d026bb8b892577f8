"""Sparse ternary networks by regularisation, quantization pruning and retraining
(Faraone et al., ICONIP 2017).

Only the paper's abstract could be read (three stages: L2 + a quantization-threshold
regulariser, quantization pruning, retraining; up to ~98% sparsity). The formulas below
are OUR INTERPRETATION, not the paper's:

1. Train with TWN's per-channel quantizer, L2 weight decay, and the threshold regulariser
   ``R = lam * sum_{|w| <= delta} |w|``: an L1 pull on exactly the weights that already
   quantize to zero, so they settle at zero and the per-channel threshold falls.
2. Quantization pruning: per layer, keep the largest-magnitude weights; the rest are
   masked to zero for good (``prune_mask``). The network-wide sparsity is the target; the
   first and last layers keep at least half their weights (``layer_sparsities``). The sparsity rises
   to the target over the first half of retraining on the cubic schedule of Zhu & Gupta
   (2017), ``s_t = s_f + (s_0 - s_f) (1 - t/T)**3``: one-shot pruning from the ~40% that
   stage 1 leaves to 90% loses more than a short retraining recovers.
3. Retrain with the mask fixed; surviving weights are ternarized by sign (threshold 0), so
   the sparsity is exactly the target; the scale is their mean magnitude per channel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import WeightQuantizer, reduce_dims
from .twn import twn_ternarize


class SparseTernary(WeightQuantizer):
    def __init__(self, ratio: float = 0.7, reg: float = 1e-3):
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


def layer_sparsities(sizes: list[int], target: float, edge_cap: float = 0.5,
                     max_sparsity: float = 0.995) -> list[float]:
    """Per-layer sparsities whose weighted mean is ``target`` (when reachable).

    The first layer (few inputs, e.g. 9 weights per filter on a grey image) and the last
    (the classifier) keep at most ``edge_cap`` unless the other layers cannot reach the
    target without them; the others share the rest uniformly. Our choice, after the usual
    practice for first and last layers: the paper's is unknown.
    """
    total = sum(sizes)
    edges = [0, len(sizes) - 1] if len(sizes) > 1 else [0]
    edge_total = sum(sizes[i] for i in edges)
    inner = total - edge_total
    if inner == 0:
        return [target] * len(sizes)
    edge = min(target, edge_cap)
    rest = (target * total - edge * edge_total) / inner
    if rest > max_sparsity:  # the inner layers cannot absorb it: the edges take the rest
        rest = max_sparsity
        edge = min(max_sparsity, (target * total - rest * inner) / edge_total)
    rest = max(0.0, rest)
    return [edge if i in edges else rest for i in range(len(sizes))]


@torch.no_grad()
def prune(model, sparsity: float) -> list[float]:
    """Stage 2: zero the smallest-magnitude weights of every ternary layer for good, so the
    whole network reaches ``sparsity``. Returns the per-layer sparsities."""
    from ..layers import ternary_layers

    layers = [layer for _, layer in ternary_layers(model)]
    targets = layer_sparsities([layer.weight.numel() for layer in layers], sparsity)
    for layer, target in zip(layers, targets):
        w = layer.weight.abs().flatten()
        keep = max(1, int(round(w.numel() * (1 - target))))
        cutoff = torch.topk(w, keep).values.min()
        layer.prune_mask = (layer.weight.abs() >= cutoff).to(layer.weight.dtype)
        layer.weight.mul_(layer.prune_mask)  # pruned for good: a later prune cannot revive it
        layer.weight_quant.ratio = 0.0
    return targets
