"""The model zoo every test and benchmark uses (torchvision is not available here).

* ``digits_cnn`` / ``digits_mlp``: small models for scikit-learn's 8x8 digits.
* ``resnet18_cifar``: ResNet-18 with a 3x3 stem and no max pool (about 0.56 GMAC at 32x32).
* ``transformer_ffn``: a transformer feed-forward block (LayerNorm, Linear, GELU, Linear).

``width`` scales channel counts (EC2T's super-network scaling uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tvm_ternary.quant.residual import ResidualQuant


def _w(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class StochasticTernary(nn.Module):
    """Stochastic firing (the teacher activation of Alemdar et al.'s TNN, as in the authors'
    ``tnn_train`` code): ``y = clamp(x, -1, 1)``; training fires ``floor(y + u)``,
    ``u ~ U[0, 1)``, so ``P(+1) = y`` for ``y >= 0`` (``P(-1) = -y`` below zero); evaluation
    fires ``round(y)``, i.e. two thresholds at +-0.5. Gradient: straight through."""

    def forward(self, x: Tensor) -> Tensor:
        y = x.clamp(-1, 1)
        if self.training:
            fired = torch.floor(y + torch.rand_like(y))
        else:
            fired = torch.sign(y) * (y.abs() >= 0.5).to(y.dtype)
        return y + (fired - y).detach()


def _act(name: str) -> nn.Module:
    """"relu"; "hardtanh" or "stochastic_ternary" for teachers of ternary students."""
    return {"relu": nn.ReLU, "hardtanh": nn.Hardtanh, "stochastic_ternary": StochasticTernary}[name]()


def digits_cnn(num_classes: int = 10, width: float = 1.0, act: str = "relu") -> nn.Sequential:
    c1, c2, c3, h = _w(16, width), _w(32, width), _w(64, width), _w(64, width)
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), _act(act),
        nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), _act(act),
        nn.MaxPool2d(2),                                                  # 8x8 -> 4x4
        nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), _act(act),
        nn.MaxPool2d(2),                                                  # 4x4 -> 2x2
        nn.Flatten(),
        nn.Linear(c3 * 4, h, bias=False), nn.BatchNorm1d(h), _act(act),
        nn.Linear(h, num_classes),
    )


def digits_mlp(num_classes: int = 10, width: float = 1.0, hidden: int = 128,
               dropout: float = 0.0, act: str = "relu") -> nn.Sequential:
    h = _w(hidden, width)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, h, bias=False), nn.BatchNorm1d(h), _act(act), nn.Dropout(dropout),
        nn.Linear(h, h, bias=False), nn.BatchNorm1d(h), _act(act), nn.Dropout(dropout),
        nn.Linear(h, num_classes),
    )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))
        # identity in float; ternarize(act="int8") quantizes the branch so the add sums
        # integers (shared with conv1's input quantizer on an identity shortcut)
        self.residual_quant = ResidualQuant()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.residual_quant(self.shortcut(x)))


class ResNetCifar(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), num_classes: int = 10, width: float = 1.0):
        super().__init__()
        chans = [_w(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(3, chans[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(chans[0]), nn.ReLU())
        layers, cin = [], chans[0]
        for i, (n, cout) in enumerate(zip(blocks, chans)):
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


def resnet18_cifar(num_classes: int = 10, width: float = 1.0) -> ResNetCifar:
    return ResNetCifar((2, 2, 2, 2), num_classes, width)


def transformer_ffn(d_model: int = 256, d_ff: int = 1024) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_ff), nn.GELU(),
                         nn.Linear(d_ff, d_model))


@dataclass(frozen=True)
class ConvShape:
    """One convolution of a benchmark table: square input, batch 1."""
    name: str
    size: int       # input height = width
    cin: int
    cout: int
    kernel: int
    stride: int
    pad: int
    count: int      # how many convolutions of this shape the network has

    @property
    def out_size(self) -> int:
        return (self.size + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def macs(self) -> int:
        return self.out_size ** 2 * self.cin * self.cout * self.kernel ** 2

    def shape(self) -> str:
        return (f"{self.size}x{self.size}x{self.cin}->{self.cout} {self.kernel}x{self.kernel}"
                f"/{self.stride}")


# ResNet-18's ImageNet convolutions as the old VTA benchmark numbers them (apache/tvm
# vta/tests/python/integration/test_benchmark_topi_conv2d.py, ``resnet_wkls``, commit
# 3acde3efd902125ebaa2b9fb37aced668106686e): C1 (3 input channels, commented out there)
# to C11. DESIGN's "C8 and C11" (the zero-block target) are the 3x3 layers at 14x14 and 7x7.
RESNET18_IMAGENET_CONVS = (
    ConvShape("C1", 224, 3, 64, 7, 2, 3, 1),
    ConvShape("C2", 56, 64, 64, 3, 1, 1, 4),
    ConvShape("C3", 56, 64, 128, 3, 2, 1, 1),
    ConvShape("C4", 56, 64, 128, 1, 2, 0, 1),
    ConvShape("C5", 28, 128, 128, 3, 1, 1, 3),
    ConvShape("C6", 28, 128, 256, 3, 2, 1, 1),
    ConvShape("C7", 28, 128, 256, 1, 2, 0, 1),
    ConvShape("C8", 14, 256, 256, 3, 1, 1, 3),
    ConvShape("C9", 14, 256, 512, 3, 2, 1, 1),
    ConvShape("C10", 14, 256, 512, 1, 2, 0, 1),
    ConvShape("C11", 7, 512, 512, 3, 1, 1, 3),
)
