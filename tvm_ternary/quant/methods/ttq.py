"""TTQ: Trained Ternary Quantization (Zhu, Han, Mao, Dally; ICLR 2017).

Per layer: ``delta = t * max|w|`` (``t = 0.05``, the paper's value, applied to the weights
normalised by their maximum), and two trained positive scales ``Wp``, ``Wn``:
``w_q = Wp`` above ``delta``, ``-Wn`` below ``-delta``, else 0.

Gradients: the scales get the exact autograd gradient of ``Wp * m_p - Wn * m_n`` (so
``dL/dWn = -sum_{I_n} g``, the correct sign; see METHODS.md on the printed ``+sum``), the
latent weights the scaled straight-through estimator ``Wp*g``, ``g``, ``Wn*g`` on the
positive, zero and negative sets.

Our choice, not the paper's: ``Wp``/``Wn`` start at the mean magnitude of the weights in
their set (the reference code starts at 1.0), so fine-tuning starts from the float model's
output scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import WeightQuantizer, scaled_straight_through


def trained_scale_weight(w: Tensor, w_t: Tensor, wp: Tensor, wn: Tensor) -> Tensor:
    """Effective weight of a two-scale ternary layer with TTQ's gradients (shared by EC2T)."""
    pos = (w_t == 1).to(w.dtype)
    neg = (w_t == -1).to(w.dtype)
    zero = 1 - pos - neg
    factor = wp.detach().abs() * pos + zero + wn.detach().abs() * neg
    return wp * pos - wn * neg + scaled_straight_through(w, factor)


class TwoScaleQuantizer(WeightQuantizer):
    """Per-layer trained positive scales ``Wp``, ``Wn`` with TTQ's gradients; subclasses
    decide the assignment (``_codes``)."""

    symmetric = False

    def __init__(self):
        super().__init__()
        self.wp = nn.Parameter(torch.tensor(1.0))
        self.wn = nn.Parameter(torch.tensor(1.0))

    def _codes(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def ternarize(self, w: Tensor):
        out = w.shape[0]
        alpha_p = self.wp.detach().abs().float().expand(out).clone()
        alpha_n = self.wn.detach().abs().float().expand(out).clone()
        return self._codes(w), alpha_p, alpha_n

    def forward(self, w: Tensor) -> Tensor:
        return trained_scale_weight(w, self._codes(w), self.wp.abs(), self.wn.abs())


class TTQ(TwoScaleQuantizer):
    def __init__(self, threshold: float = 0.05):
        super().__init__()
        self.threshold = threshold

    def _codes(self, w: Tensor) -> Tensor:
        w = w.detach()
        delta = self.threshold * w.abs().max()
        return ((w > delta).to(torch.int8) - (w < -delta).to(torch.int8))

    def init_from(self, w: Tensor) -> None:
        w = w.detach()
        w_t = self._codes(w)
        with torch.no_grad():
            if (w_t == 1).any():
                self.wp.fill_(w[w_t == 1].abs().mean())
            if (w_t == -1).any():
                self.wn.fill_(w[w_t == -1].abs().mean())
