"""EC2T: entropy-constrained trained ternarization (Marban, Becking, Wiedemann, Samek 2020).

Specified from the authors' code (``d-becking/efficientCNNs``,
``model_quantization/quantizer.py``); the paper's equations were not read. Per layer:

* centroids ``{-wn, 0, +wp}``, trained; initialised to ``wp = max(W) * s``,
  ``wn = |min(W)| * s`` (``s = init_divisor``, 0.45 in the code for CIFAR-100);
* assignment of each weight to ``argmin_c (w - c)^2 + lam * I_c`` with
  ``I_c = -log2 P_c``, where ``P_c`` comes from a nearest-centroid pre-assignment and
  ``P_0`` is raised to at least 0.5 (taken proportionally from ``P_+`` and ``P_-``);
* ``lam = lam_max * lambda_divider * decay``, recomputed every step: ``lam_max`` is the
  smallest ``lam`` that would send the most extreme weight to zero, and
  ``decay = (n_layer / n_largest + 0.1) / 1.1`` makes larger layers sparser;
* TTQ's gradients (scaled straight-through into the weights, sums into the centroids);
* after each step the centroids are kept at least ``0.675 * std(W)`` (``clamp_centroids``);
* stage 2 ("frozen-assignment retraining"): the assignment is fixed and only the centroids
  and non-ternary parameters train (``freeze_assignment``).
The super-network step (widening the float model before ternarization) is the ``width``
option of the recipe.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ttq import TwoScaleQuantizer


def _info(p: Tensor) -> Tensor:
    return -torch.log2(p.clamp_min(1e-12))


class EC2T(TwoScaleQuantizer):
    def __init__(self, init_divisor: float = 0.45, lambda_divider: float = 0.15, decay: float = 1.0):
        super().__init__()
        self.init_divisor = init_divisor
        self.lambda_divider = lambda_divider
        self.decay = decay
        self.register_buffer("fixed_codes", None)

    def init_from(self, w: Tensor) -> None:
        with torch.no_grad():
            self.wp.fill_(w.max().clamp_min(1e-8) * self.init_divisor)
            self.wn.fill_(w.min().abs().clamp_min(1e-8) * self.init_divisor)

    def _probabilities(self, w: Tensor, wp: Tensor, wn: Tensor) -> Tensor:
        centroids = torch.stack([-wn, torch.zeros_like(wp), wp])
        nearest = (w.reshape(-1, 1) - centroids).abs().argmin(dim=1)
        p = torch.bincount(nearest, minlength=3).double() / w.numel()
        if p[1] < 0.5:  # force P_0 >= 0.5, taking the mass proportionally from P_-, P_+
            side = p[0] + p[2]
            deficit = 0.5 - p[1]
            p = torch.stack([p[0] - deficit * p[0] / side, p[1] + deficit, p[2] - deficit * p[2] / side])
        return p

    def _codes(self, w: Tensor) -> Tensor:
        if self.fixed_codes is not None:
            return self.fixed_codes
        w = w.detach()
        wp, wn = self.wp.detach().abs(), self.wn.detach().abs()
        p = self._probabilities(w, wp, wn)
        info = _info(p)
        w_max, w_min = w.max(), w.min().abs()

        def lam_max(extreme, c, i_c):
            gap = i_c - info[1]
            if gap <= 0:
                return torch.tensor(float("inf"), dtype=torch.float64)
            return (extreme**2 - (c - extreme) ** 2).double() / gap

        lam = torch.minimum(lam_max(w_max, wp, info[2]), lam_max(w_min, wn, info[0]))
        lam = 0.0 if not torch.isfinite(lam) else float(lam.clamp_min(0)) * self.lambda_divider * self.decay
        centroids = torch.stack([-wn, torch.zeros_like(wp), wp])
        cost = (w.reshape(-1, 1) - centroids) ** 2 + lam * info.float()
        return (cost.argmin(dim=1) - 1).to(torch.int8).reshape(w.shape)

    @torch.no_grad()
    def clamp_centroids(self, w: Tensor) -> None:
        floor = 0.675 * w.std()
        self.wp.copy_(self.wp.abs().clamp_min(floor))
        self.wn.copy_(self.wn.abs().clamp_min(floor))

    @torch.no_grad()
    def freeze_assignment(self, w: Tensor) -> None:
        self.fixed_codes = self._codes(w)
