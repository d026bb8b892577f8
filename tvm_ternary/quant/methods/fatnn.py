"""FATNN: fast and accurate ternary networks (Chen, Zhuang, Shen; ICCV 2021).

The paper's method section could not be read; the quantizer follows the authors' code
(``aim-uofa/model-quantization``, ``models/quant.py``, keyword ``non-uniform``):

* weights: per output channel, normalised ``(w - mean) / std``, then
  ``y = round(clamp(w_n * a0, -1, 0)) + round(clamp(w_n * a1, 0, 1))`` in {-1, 0, 1} with
  trainable interval widths ``a0, a1`` (init 0.5) and a straight-through round;
* activations after a ReLU (``FatnnAct``): ``y = round(clamp(x a0, 0, 1)) +
  round(clamp((x - 1/a0) a1, 0, 1))`` in {0, 1, 2}, trainable ``a0, a1``.
The thresholds are free (learned, asymmetric) but the levels are equally spaced: that is
the implementation dependence. OUR INTERPRETATION of the 2x cheaper inner product, which
the paper states but we could not read: with equally spaced levels, {0, 1, 2} = 1 + {-1,
0, 1}, so the integer model carries ternary ``t`` and folds ``sum(w)`` into the bias
(``freeze`` does this), and a ternary x ternary dot product needs two popcounts over the
bit planes (``m = nz_x & nz_w``; ``sum = popcount(m) - 2 popcount(m & (s_x ^ s_w))``)
instead of the four AND-popcounts of a generic 2-bit x 2-bit product. The constraint:
three equally spaced levels per tensor, one scale per tensor for activations, zero padding
encoded as the level of real zero (``pad_value = -1``). Our addition: a per-channel
least-squares weight scale, so layers without a following batch norm keep their range.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..act import TernaryAct, _RoundSTE
from .base import WeightQuantizer, per_channel, reduce_dims


def _two_sided(x: Tensor, a0: Tensor, a1: Tensor) -> Tensor:
    return _RoundSTE.apply((x * a0).clamp(-1, 0)) + _RoundSTE.apply((x * a1).clamp(0, 1))


class FatnnWeight(WeightQuantizer):
    def __init__(self, out_channels: int, init: float = 0.5):
        super().__init__()
        self.a0 = nn.Parameter(torch.full((out_channels,), init))
        self.a1 = nn.Parameter(torch.full((out_channels,), init))

    def _levels(self, w: Tensor) -> Tensor:
        dims = reduce_dims(w)
        w_n = (w - w.mean(dims, keepdim=True)) / w.std(dims, keepdim=True).clamp_min(1e-8)
        return _two_sided(w_n, per_channel(self.a0.abs(), w), per_channel(self.a1.abs(), w))

    @staticmethod
    def _scale(w: Tensor, y: Tensor) -> Tensor:
        dims = reduce_dims(w)
        return ((w * y).sum(dims) / (y * y).sum(dims).clamp_min(1e-8)).detach().abs()

    def ternarize(self, w: Tensor):
        with torch.no_grad():
            y = self._levels(w)
            alpha = self._scale(w, y).float()
        return y.to(torch.int8), alpha, alpha.clone()

    def forward(self, w: Tensor) -> Tensor:
        y = self._levels(w)
        return per_channel(self._scale(w, y), w) * y


class FatnnAct(TernaryAct):
    """Half-range ternary activations {0, 1, 2} with trainable interval widths."""

    def __init__(self):
        super().__init__(half_range=True)
        self.a0 = nn.Parameter(torch.tensor(1.0))
        self.a1 = nn.Parameter(torch.tensor(1.0))

    @torch.no_grad()
    def _fit(self, x: Tensor) -> None:
        super()._fit(x)  # a uniform grid: thresholds at 0.5 and 1.5 steps
        self.a0.fill_(1 / float(self.scale))
        self.a1.fill_(1 / float(self.scale))
        self._sync()

    @torch.no_grad()
    def _sync(self) -> None:
        a0, a1 = float(self.a0.abs()), float(self.a1.abs())
        self.t_lo.fill_(0.5 / a0)
        self.t_hi.fill_(1 / a0 + 0.5 / a1)
        self.scale.fill_(1.0)

    def descriptor(self) -> dict:
        self._sync()
        return super().descriptor()

    def _fake_quant(self, x: Tensor) -> Tensor:
        a0, a1 = self.a0.abs(), self.a1.abs()
        y1 = _RoundSTE.apply((x * a0).clamp(0, 1))
        y2 = _RoundSTE.apply(((x - 1 / a0) * a1).clamp(0, 1))
        return y1 + y2
