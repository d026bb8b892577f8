"""The benchmark's workloads: what is built, and the work (multiply-adds) and traffic
(bytes) each does, counted from the float model itself.

Kinds: ``linear`` (batch, in, out), ``conv`` (batch, cin, cout, hw, k, stride), ``model``
(a ``tvm_ternary.models`` constructor name + input shape), ``ffn`` (d_model, d_ff, tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tvm_ternary import models
from tvm_ternary.errors import BenchmarkError

WEIGHT_BITS = 2  # our packed format; the roofline charges the weights at this width


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str
    shape: tuple

    def build(self, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
        """The float model (eval mode) and one example input."""
        torch.manual_seed(seed)
        if self.kind == "linear":
            batch, k, n = self.shape
            module, x = nn.Sequential(nn.Linear(k, n, bias=False)), torch.randn(batch, k)
        elif self.kind == "conv":
            batch, cin, cout, hw, k, stride = self.shape
            module = nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False))
            x = torch.randn(batch, cin, hw, hw)
        elif self.kind == "model":
            ctor, input_shape = self.shape
            module, x = getattr(models, ctor)(), torch.randn(*input_shape)
        elif self.kind == "ffn":
            d_model, d_ff, tokens = self.shape
            module, x = models.transformer_ffn(d_model, d_ff), torch.randn(tokens, d_model)
        else:
            raise BenchmarkError(f"workload {self.name}: unknown kind {self.kind!r}")
        return module.eval(), x


def count(module: nn.Module, x: torch.Tensor) -> dict:
    """Multiply-adds and parameters of every Linear / Conv2d on one forward of ``x``, the
    share of those MACs in Linear layers, and the bytes a kernel must move at least: the
    weights at ``WEIGHT_BITS`` plus the float32 input and output."""
    macs = {"linear": 0, "conv": 0}
    weights = 0

    def hook(layer, _inputs, output):
        nonlocal weights
        weights += layer.weight.numel()
        if isinstance(layer, nn.Linear):
            macs["linear"] += output.numel() * layer.in_features
        else:
            per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            macs["conv"] += output.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            y = module(x)
    finally:
        for h in handles:
            h.remove()
    total = macs["linear"] + macs["conv"]
    weight_bytes = weights * WEIGHT_BITS / 8
    return {"macs": total, "linear_mac_share": macs["linear"] / total if total else 0.0,
            "weights": weights, "weight_bytes": weight_bytes,
            "bytes": weight_bytes + 4 * x.numel() + 4 * y.numel()}


FULL = [
    Workload("gemv_4096", "linear", (1, 4096, 4096)),
    Workload("gemm_4096x32", "linear", (32, 4096, 4096)),
    Workload("gemv_11008x4096", "linear", (1, 4096, 11008)),
    Workload("resnet_conv_56_64", "conv", (1, 64, 64, 56, 3, 1)),
    Workload("resnet_conv_28_128", "conv", (1, 128, 128, 28, 3, 1)),
    Workload("ffn_2048x8192", "ffn", (2048, 8192, 1)),
    Workload("resnet18_cifar", "model", ("resnet18_cifar", (1, 3, 32, 32))),
]
QUICK = [
    Workload("gemv_512", "linear", (1, 512, 512)),
    Workload("gemm_512x8", "linear", (8, 512, 512)),
    Workload("conv_14_16", "conv", (1, 16, 16, 14, 3, 1)),
    Workload("ffn_256x1024", "ffn", (256, 1024, 1)),
    Workload("digits_cnn", "model", ("digits_cnn", (1, 1, 8, 8))),
]
