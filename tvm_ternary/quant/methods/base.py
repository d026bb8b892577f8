"""What every ternarization method provides: a weight quantizer.

A weight quantizer maps a layer's latent float weight ``w [O, ...]`` to

* ``ternarize(w)``: the integer weight ``w_t`` (int8 in {-1, 0, +1}) and the scales
  ``(alpha_p, alpha_n)``, float32 ``[O]`` each (equal for symmetric methods), and
* ``forward(w)``: the effective float weight ``alpha_p * [w_t = 1] - alpha_n * [w_t = -1]``
  whose gradient is the method's straight-through estimator.

Methods that train their own parameters (TTQ's scales, the Gaussian threshold, EC2T's
centroids) hold them as ``nn.Parameter`` on the quantizer module.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def per_channel(v: Tensor, like: Tensor) -> Tensor:
    """Reshape ``[O]`` so that it broadcasts over a weight ``[O, ...]``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def reduce_dims(w: Tensor) -> tuple[int, ...]:
    """All dimensions of a weight but the output channel."""
    return tuple(range(1, w.dim()))


def straight_through(w: Tensor, w_q: Tensor) -> Tensor:
    """Value of ``w_q``, gradient of ``w`` (the identity straight-through estimator)."""
    return w + (w_q - w).detach()


def scaled_straight_through(w: Tensor, factor: Tensor) -> Tensor:
    """Zero in value, ``factor * grad`` into ``w``: adds a scaled STE to a forward."""
    f = factor.detach()
    return w * f - (w * f).detach()


def dequantized(w_t: Tensor, alpha_p: Tensor, alpha_n: Tensor) -> Tensor:
    """The float weight a ternary weight stands for."""
    pos = (w_t == 1).to(alpha_p.dtype)
    neg = (w_t == -1).to(alpha_p.dtype)
    return per_channel(alpha_p, w_t) * pos - per_channel(alpha_n, w_t) * neg


class WeightQuantizer(nn.Module):
    """Base class. Subclasses implement ``ternarize`` and may override ``forward``."""

    symmetric = True  # False for methods with independent positive / negative scales

    def ternarize(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, w: Tensor) -> Tensor:
        w_t, alpha_p, alpha_n = self.ternarize(w)
        return straight_through(w, dequantized(w_t, alpha_p, alpha_n))

    def init_from(self, w: Tensor) -> None:
        """Initialise trainable quantizer parameters from the starting weights."""

    def regularizer(self, w: Tensor) -> Tensor:
        """Extra training loss this method adds for one layer (zero by default)."""
        return w.new_zeros(())
