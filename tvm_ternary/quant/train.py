"""Small, deterministic training loops used by the methods' recipes and the experiments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tvm_ternary.errors import FrozenModelError

from .layers import ternary_layers


@dataclass
class TrainConfig:
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    seed: int = 0


def batches(x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator):
    order = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


def fit(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *,
        extra_loss: Callable[[nn.Module], Tensor] | None = None,
        params=None, after_step: Callable[[nn.Module], None] | None = None,
        progress=None) -> nn.Module:
    """Adam + cosine schedule on cross-entropy (+ ``extra_loss(model)``)."""
    if getattr(model, "is_frozen", False):
        raise FrozenModelError("a frozen model cannot be trained; train the float model from ternarize()")
    gen = torch.Generator().manual_seed(cfg.seed)
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(x) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    model.train()
    for _ in range(cfg.epochs):
        for xb, yb in batches(x, y, cfg.batch_size, gen):
            loss = F.cross_entropy(model(xb), yb)
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
        if progress is not None:
            progress.update(1)
    model.eval()
    return model


def fit_alternating(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig,
                    quantizer_params: list, progress=None) -> nn.Module:
    """Per batch, first a step on the quantizer parameters (SGD, Nesterov momentum 0.9),
    then a fresh forward / backward and a step on everything else (Adam): the sequential
    threshold-then-weight update of He & Fan's truncated-Gaussian method."""
    if getattr(model, "is_frozen", False):
        raise FrozenModelError("a frozen model cannot be trained; train the float model from ternarize()")
    gen = torch.Generator().manual_seed(cfg.seed)
    q_ids = {id(p) for p in quantizer_params}
    rest = [p for p in model.parameters() if id(p) not in q_ids and p.requires_grad]
    opt_q = torch.optim.SGD(quantizer_params, lr=cfg.lr, momentum=0.9, nesterov=True)
    opt_w = torch.optim.Adam(rest, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    for _ in range(cfg.epochs):
        for xb, yb in batches(x, y, cfg.batch_size, gen):
            for opt in (opt_q, opt_w):
                model.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
        if progress is not None:
            progress.update(1)
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    return float((model(x).argmax(dim=1) == y).float().mean())


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over all ternary layers."""
    zeros = total = 0
    for _, layer in ternary_layers(model):
        w_t = layer.ternary_weight()
        zeros += int((w_t == 0).sum())
        total += w_t.numel()
    return zeros / total if total else 0.0


def _float_bits(model: nn.Module) -> int:
    """32 bits per parameter that is not a ternary layer's weight."""
    ternary = {id(layer.weight) for _, layer in ternary_layers(model)}
    return sum(32 * p.numel() for p in model.parameters() if id(p) not in ternary)


def model_bits(model: nn.Module) -> int:
    """Storage of the model: 2 bits per ternary weight plus 32-bit floats for the rest."""
    ternary = sum(layer.weight.numel() for _, layer in ternary_layers(model))
    return 2 * ternary + _float_bits(model)


def entropy_bits(model: nn.Module) -> float:
    """Bits to store the ternary weights entropy-coded (per layer, from the frequencies of
    -1 / 0 / +1), plus 32-bit floats for the rest: what sparsity buys in storage."""
    bits = float(_float_bits(model))
    for _, layer in ternary_layers(model):
        w_t = layer.ternary_weight()
        p = torch.stack([(w_t == v).float().mean() for v in (-1, 0, 1)])
        p = p[p > 0]
        bits += float(-(p * torch.log2(p)).sum()) * w_t.numel()
    return bits
