"""absmean: BitNet b1.58 (Ma et al., 2024).

Per-tensor ``gamma = mean|W|``; ``w_t = clip(round(W / (gamma + eps)), -1, 1)``. The paper
rounds half to even; we round half away from zero, like every rounding in this project
(the two differ only for weights exactly at +-gamma/2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops import round_half_away
from .base import WeightQuantizer


class AbsMean(WeightQuantizer):
    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def ternarize(self, w: Tensor):
        w = w.detach()
        gamma = w.abs().mean().clamp_min(self.eps)
        w_t = round_half_away(w / (gamma + self.eps)).clamp(-1, 1).to(torch.int8)
        alpha = gamma.float().expand(w.shape[0]).clone()
        return w_t, alpha, alpha.clone()
