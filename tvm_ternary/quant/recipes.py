"""Each method's whole training procedure, from a trained float model to a ternary one.

``run_recipe(method, fp_model, x, y, cfg, **opts)`` returns ``(ternary_model, info)``.
Single-stage methods (twn, ttq, absmean, fatnn) fine-tune with their straight-through
estimators; ``tgauss`` alternates threshold and weight steps; ``sparse``, ``ec2t`` and
``teacher_student`` run their stages here.
"""

from __future__ import annotations

import copy
from dataclasses import replace
import torch
from torch import Tensor, nn

from .layers import ternary_layers
from .methods.sparse import prune
from .methods.teacher_student import train_teacher_student
from .ternarize import ternarize
from .train import TrainConfig, fit, fit_alternating, weight_sparsity


def _regularizer(model: nn.Module) -> Tensor:
    return sum((layer.regularizer() for _, layer in ternary_layers(model)), torch.zeros(()))


def _finetune(method, fp, x, y, cfg, act="default", progress=None, **opts):
    qm = ternarize(fp, method, act=act, **opts)
    fit(qm, x, y, cfg, progress=progress)
    return qm, {}


def _sparse(fp, x, y, cfg, act="default", sparsity: float = 0.9, reg: float = 1e-3, progress=None):
    qm = ternarize(fp, "sparse", act=act, reg=reg)
    half = replace(cfg, epochs=max(1, cfg.epochs // 2))
    fit(qm, x, y, replace(half, weight_decay=1e-4), extra_loss=_regularizer, progress=progress)
    start = weight_sparsity(qm)
    ramp = max(1, half.epochs // 2)
    for epoch in range(half.epochs):  # prune gradually, then retrain at the target
        t = min(1.0, (epoch + 1) / ramp)
        per_layer = prune(qm, sparsity + (start - sparsity) * (1 - t) ** 3)
        fit(qm, x, y, replace(half, epochs=1, seed=cfg.seed + epoch), progress=progress)
    return qm, {"target_sparsity": sparsity, "layer_sparsity": [round(s, 4) for s in per_layer]}


def _ec2t(fp, x, y, cfg, act="default", lambda_divider: float = 0.15, progress=None,
          width: float = 1.0):
    """``fp`` must already be the (width-scaled) super-network when ``width != 1``."""
    qm = ternarize(fp, "ec2t", act=act, lambda_divider=lambda_divider)
    layers = ternary_layers(qm)
    largest = max(layer.weight.numel() for _, layer in layers)
    for _, layer in layers:
        layer.weight_quant.decay = (layer.weight.numel() / largest + 0.1) / 1.1

    def clamp(model):
        for _, layer in ternary_layers(model):
            layer.weight_quant.clamp_centroids(layer.weight)

    half = replace(cfg, epochs=max(1, cfg.epochs // 2))
    fit(qm, x, y, half, after_step=clamp, progress=progress)
    # Stage 2, frozen-assignment retraining: centroids and non-ternary parameters only.
    latent = set()
    for _, layer in ternary_layers(qm):
        layer.weight_quant.freeze_assignment(layer.weight)
        latent.add(id(layer.weight))
    params = [p for p in qm.parameters() if id(p) not in latent]
    fit(qm, x, y, half, params=params, after_step=clamp, progress=progress)
    return qm, {"lambda_divider": lambda_divider, "width": width}


def _tgauss(fp, x, y, cfg, act="default", progress=None, **opts):
    qm = ternarize(fp, "tgauss", act=act, **opts)
    deltas = [layer.weight_quant.delta for _, layer in ternary_layers(qm)]
    fit_alternating(qm, x, y, cfg, deltas, progress=progress)
    return qm, {}


def _teacher_student(teacher, x, y, cfg, act="default", progress=None):
    return train_teacher_student(teacher, x, y, cfg, progress=progress), {}


def float_activation(method: str) -> str:
    """The activation of the float model a method starts from: the teacher-student student
    learns from a teacher trained with stochastic firing (``models.StochasticTernary``)."""
    return "stochastic_ternary" if method == "teacher_student" else "relu"


def run_recipe(method: str, fp: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, **opts):
    """Train ``method``'s ternary model starting from the trained float model ``fp``."""
    fp = copy.deepcopy(fp)
    if method == "sparse":
        return _sparse(fp, x, y, cfg, **opts)
    if method == "ec2t":
        return _ec2t(fp, x, y, cfg, **opts)
    if method == "teacher_student":
        return _teacher_student(fp, x, y, cfg, **opts)
    if method == "tgauss":
        return _tgauss(fp, x, y, cfg, **opts)
    return _finetune(method, fp, x, y, cfg, **opts)


def recipe_epochs(method: str, cfg: TrainConfig, n_layers: int) -> int:
    """Epochs a recipe reports to a progress bar."""
    if method == "teacher_student":
        return cfg.epochs * n_layers
    if method in ("sparse", "ec2t"):
        return 2 * max(1, cfg.epochs // 2)
    return cfg.epochs


__all__ = ["float_activation", "recipe_epochs", "run_recipe"]
