"""Activation quantizers: int8 (per-tensor, or dynamic per-token) and ternary (two thresholds).

Each is a fake-quantizer: float in, float out (the value the integer model will see times
its scale), with a straight-through gradient. ``calibrate`` (in ``calibrate.py``) puts
them in observing mode, feeds data, and fixes their scales / thresholds; ``freeze`` then
reads ``scale`` and the thresholds to build the integer model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .ops import round_half_away
from .reference import INT8_MAX


class _RoundSTE(torch.autograd.Function):
    """Round half away from zero forward, identity backward."""

    @staticmethod
    def forward(ctx, x):
        return round_half_away(x)

    @staticmethod
    def backward(ctx, g):
        return g


class ActQuantizer(nn.Module):
    """Base: observing mode collects statistics instead of quantizing."""

    def __init__(self):
        super().__init__()
        self.observing = False

    def begin_observe(self) -> None:
        self.observing = True
        self.reset_stats()

    def end_observe(self) -> None:
        self.observing = False
        self.apply_stats()

    def reset_stats(self) -> None: ...

    def apply_stats(self) -> None: ...

    @property
    def calibrated(self) -> bool:
        return bool(self.initialized)


class Int8Act(ActQuantizer):
    """Symmetric int8, one scale per tensor: ``q = clamp(round(x / scale), -127, 127)``.

    In training mode the scale follows an exponential moving average of ``max|x|`` (as
    PyTorch's moving-average observers do); in eval mode it is fixed. ``dynamic=True`` is
    BitNet's per-token variant: the scale of each row (last dimension) is recomputed from
    that row at every call.
    """

    kind = "int8"

    def __init__(self, momentum: float = 0.1, dynamic: bool = False):
        super().__init__()
        self.momentum = momentum
        self.dynamic = dynamic
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))
        self._observed_max = 0.0

    def reset_stats(self) -> None:
        self._observed_max = 0.0

    def apply_stats(self) -> None:
        self.scale.fill_(max(self._observed_max, 1e-8) / INT8_MAX)
        self.initialized.fill_(True)

    def _fake_quant(self, x: Tensor, scale: Tensor) -> Tensor:
        q = _RoundSTE.apply(x / scale).clamp(-INT8_MAX, INT8_MAX)
        return q * scale

    def forward(self, x: Tensor) -> Tensor:
        if self.dynamic:
            row_max = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-5)
            return self._fake_quant(x, row_max / INT8_MAX)
        if self.observing:
            self._observed_max = max(self._observed_max, x.detach().abs().max().item())
            return x
        if self.training:
            with torch.no_grad():
                new = max(x.abs().max().item(), 1e-8) / INT8_MAX
                if bool(self.initialized):
                    new = (1 - self.momentum) * self.scale.item() + self.momentum * new
                self.scale.fill_(new)
                self.initialized.fill_(True)
        return self._fake_quant(x, self.scale)

    def fake_quant_current(self, x: Tensor) -> Tensor:
        """Fake-quantize with the current scale, never updating or observing it: a second
        reader of a tensor whose first reader already calls this quantizer (a residual
        branch sharing a layer's input quantizer)."""
        return x if self.observing else self._fake_quant(x, self.scale)

    @property
    def calibrated(self) -> bool:
        return self.dynamic or bool(self.initialized)

    def descriptor(self) -> dict:
        return {"scale": float(self.scale)}


class TernaryAct(ActQuantizer):
    """Ternary activations by two thresholds: ``t = +1`` above ``t_hi``, ``-1`` below ``t_lo``.

    Output value ``scale * (t + offset)``: ``offset = 0`` gives levels {-1, 0, +1};
    ``half_range=True`` gives ``offset = 1``, levels {0, 1, 2}, for inputs after a ReLU
    (FATNN's half-range activations). The integer model carries ``t`` and folds the offset
    into the consumer's bias, so both need only ternary arithmetic. Thresholds are per
    channel (dimension 1) when ``channels`` is given, else per tensor; the scale is per
    tensor so the next layer accumulates integers of one scale.

    Calibration (or the first training batch) sets them: symmetric, TWN's rule on the
    activations (``t_hi = -t_lo = 0.7 mean|x|``, scale = mean |x| above it); half range,
    a uniform grid ``scale = 2 mean(x[x > 0]) / 3``, thresholds at 0.5 and 1.5 scales.
    Gradient: straight through inside ``[-clip, clip]``, ``clip = 3 * scale``.
    """

    kind = "ternary"

    def __init__(self, channels: int | None = None, ratio: float = 0.7, half_range: bool = False):
        super().__init__()
        n = channels or 1
        self.channels = channels
        self.ratio = ratio
        self.half_range = half_range
        self.register_buffer("t_lo", torch.full((n,), -0.5))
        self.register_buffer("t_hi", torch.full((n,), 0.5))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))
        self._batches: list[Tensor] = []

    def _per_channel(self, t: Tensor, x: Tensor) -> Tensor:
        shape = [1] * x.dim()
        if self.channels:
            shape[1] = self.channels
        return t.reshape(shape)

    def _channel_dims(self, x: Tensor) -> list[int]:
        return [d for d in range(x.dim()) if not (self.channels and d == 1)]

    def reset_stats(self) -> None:
        self._batches = []

    def apply_stats(self) -> None:
        self._fit(torch.cat(self._batches, dim=0))
        self._batches = []

    @torch.no_grad()
    def _fit(self, x: Tensor) -> None:
        if self.half_range:
            pos = x[x > 0]
            scale = 2 * pos.mean().item() / 3 if pos.numel() else 1.0
            self.t_lo.fill_(0.5 * scale)
            self.t_hi.fill_(1.5 * scale)
        else:
            t = self.ratio * x.abs().mean(dim=self._channel_dims(x))
            big = x.abs() > self._per_channel(t, x)
            scale = ((x.abs() * big).sum() / big.sum().clamp_min(1)).item()
            self.t_hi.copy_(t.reshape(-1))
            self.t_lo.copy_(-t.reshape(-1))
        self.scale.fill_(max(scale, 1e-8))
        self.initialized.fill_(True)

    @property
    def offset(self) -> int:
        return 1 if self.half_range else 0

    def descriptor(self) -> dict:
        """The integer form ``freeze`` builds from: thresholds, scale and level offset."""
        return {"scale": float(self.scale), "t_lo": self.t_lo.clone(), "t_hi": self.t_hi.clone(),
                "offset": self.offset}

    def forward(self, x: Tensor) -> Tensor:
        if self.observing:
            self._batches.append(x.detach())
            return x
        if self.training and not bool(self.initialized):
            self._fit(x.detach())
        return self._fake_quant(x)

    def _fake_quant(self, x: Tensor) -> Tensor:
        t_lo, t_hi = self._per_channel(self.t_lo, x), self._per_channel(self.t_hi, x)
        levels = (x > t_hi).to(x.dtype) - (x < t_lo).to(x.dtype) + self.offset
        clip = 3 * self.scale
        # value: scale * levels; gradient: identity where |x| <= clip
        x_c = torch.maximum(torch.minimum(x, clip), -clip)
        return x_c + (self.scale * levels - x_c).detach()


def make_act_quantizer(act) -> nn.Module | None:
    """``act`` is "int8", "int8_dynamic", "ternary", "ternary_half" or None (float input)."""
    if act is None:
        return None
    if act == "int8":
        return Int8Act()
    if act == "int8_dynamic":
        return Int8Act(dynamic=True)
    if act == "ternary":
        return TernaryAct()
    if act == "ternary_half":
        return TernaryAct(half_range=True)
    if act == "fatnn":
        from .methods.fatnn import FatnnAct
        return FatnnAct()
    raise ValueError(f"unknown activation quantizer {act!r}; "
                     "valid: 'int8', 'int8_dynamic', 'ternary', 'ternary_half', 'fatnn', None")
