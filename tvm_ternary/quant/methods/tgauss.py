"""Truncated-Gaussian ternarization (He & Fan, CVPR 2019): threshold, scale and weights
trained jointly.

The paper's method section was not reachable; this follows the first author's code
(``elliothe/tern_repo``, ``models/tern_threshold_trainable_5.py``), per layer:

* ``mu, sigma`` = mean / std of the layer's weights (recomputed every step, with gradient);
* trainable ``delta`` (init ``0.05 * max|W|``), threshold ``th = clip(|delta|, 0, 3 sigma)``;
* ``w_t = +1`` where ``W > mu + th``, ``-1`` where ``W < mu - th``;
* scale = mean of a Gaussian truncated to ``(mu + th, inf)``:
  ``alpha = mu + sigma * phi(b) / (1 - Phi(b))``, ``b = th / sigma``;
* weights get the identity straight-through gradient (the code's ``grad / alpha`` before
  the ``* alpha``: its "gradient correctness"); ``delta`` learns through ``alpha`` only.

Training alternates a threshold step and a weight step per batch
(``train.fit_alternating``, used by the ``tgauss`` recipe), with the threshold gradient
clipped to +-0.001, as the code does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import WeightQuantizer


def truncated_gaussian_mean(mu: Tensor, sigma: Tensor, th: Tensor) -> Tensor:
    b = th / sigma
    pdf = torch.exp(-0.5 * b * b) / math.sqrt(2 * math.pi)
    tail = 0.5 * torch.erfc(b / math.sqrt(2))
    return mu + sigma * pdf / tail.clamp_min(1e-12)


class TruncatedGaussian(WeightQuantizer):
    def __init__(self, init_ratio: float = 0.05):
        super().__init__()
        self.init_ratio = init_ratio
        self.delta = nn.Parameter(torch.tensor(0.0))
        self.delta.register_hook(lambda g: g.clamp(-1e-3, 1e-3))

    def init_from(self, w: Tensor) -> None:
        with torch.no_grad():
            self.delta.fill_(self.init_ratio * w.abs().max())

    def _threshold(self, w: Tensor):
        mu, sigma = w.mean(), w.std().clamp_min(1e-8)
        th = torch.minimum(self.delta.abs(), 3 * sigma)
        return mu, sigma, th

    def _codes(self, w: Tensor, mu: Tensor, th: Tensor) -> Tensor:
        w, mu, th = w.detach(), mu.detach(), th.detach()
        return (w > mu + th).to(torch.int8) - (w < mu - th).to(torch.int8)

    def ternarize(self, w: Tensor):
        mu, sigma, th = self._threshold(w.detach())
        alpha = truncated_gaussian_mean(mu, sigma, th).detach().float().abs()
        alpha = alpha.expand(w.shape[0]).clone()
        return self._codes(w, mu, th), alpha, alpha.clone()

    def forward(self, w: Tensor) -> Tensor:
        mu, sigma, th = self._threshold(w)
        alpha = truncated_gaussian_mean(mu, sigma, th).abs()
        return alpha * self._codes(w, mu, th).to(w.dtype) + (w - w.detach())
