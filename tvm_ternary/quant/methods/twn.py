"""TWN: Ternary Weight Networks (Li & Liu, 2016).

Threshold ``delta = ratio * mean|w|`` with ``ratio = 0.7``; scale ``alpha = mean |w|`` over
the weights above the threshold (the least-squares optimum for that threshold). Per output
channel by default, as the authors' code does (the paper states one per layer:
``per_channel=False``). Plain straight-through gradient; nothing else is trained.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import WeightQuantizer, per_channel, reduce_dims


def twn_ternarize(w: Tensor, ratio: float = 0.7, per_channel_scale: bool = True):
    """TWN's threshold rule on ``w`` -> ``(w_t, alpha)``; shared by methods built on it."""
    w = w.detach()
    dims = reduce_dims(w) if per_channel_scale else tuple(range(w.dim()))
    absw = w.abs()
    delta = ratio * absw.mean(dim=dims, keepdim=True)
    mask = absw > delta
    count = mask.sum(dim=dims, keepdim=True).clamp_min(1)
    alpha = (absw * mask).sum(dim=dims, keepdim=True) / count
    w_t = (torch.sign(w) * mask).to(torch.int8)
    alpha = alpha.expand(w.shape[0], *([1] * (w.dim() - 1))).reshape(w.shape[0])
    return w_t, alpha.float()


class TWN(WeightQuantizer):
    def __init__(self, ratio: float = 0.7, per_channel: bool = True):
        super().__init__()
        self.ratio = ratio
        self.per_channel = per_channel

    def ternarize(self, w: Tensor):
        w_t, alpha = twn_ternarize(w, self.ratio, self.per_channel)
        return w_t, alpha, alpha.clone()
