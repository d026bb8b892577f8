"""Shared builders for quantization tests: small random models with realistic BN stats."""

from __future__ import annotations

import torch
from torch import nn

import tvm_ternary as tt


def randomize_batchnorm(model: nn.Module, gen: torch.Generator, negative_fraction: float = 0.2) -> None:
    """Give every BN random running stats and affine params, some gammas negative."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
                sign = torch.where(torch.rand(n, generator=gen) < negative_fraction, -1.0, 1.0)
                m.weight.copy_(sign * (torch.rand(n, generator=gen) + 0.5))
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def random_digits_model(kind: str, seed: int) -> nn.Module:
    """The digits CNN or MLP with seeded weights and random BN statistics, in eval mode."""
    from tvm_ternary import models

    torch.manual_seed(seed)
    model = models.digits_cnn() if kind == "cnn" else models.digits_mlp()
    randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    return model.eval()


def frozen_pair(model: nn.Module, method: str, x: torch.Tensor, act="int8", **opts):
    """(fake-quant model, frozen model) calibrated on ``x``."""
    qm = tt.quant.ternarize(model.eval(), method, act=act, **opts)
    tt.quant.calibrate(qm, [x])
    return qm, tt.quant.freeze(qm)


def fake_quant_integers(qm: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The integer input each ternary layer of the fake-quant model sees, by layer name."""
    found, hooks = {}, []
    for name, layer in tt.quant.ternary_layers(qm):
        q = layer.act_quant

        def hook(mod, inp, out, name=name, q=q):
            offset = getattr(q, "offset", 0)
            found[name] = torch.round(out / q.scale - offset).to(torch.int64)

        hooks.append(q.register_forward_hook(hook))
    with torch.no_grad():
        qm(x)
    for h in hooks:
        h.remove()
    return found


def frozen_integers(frozen, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The integer input of each frozen layer (quantizing its own float input if needed)."""
    from tvm_ternary.quant import reference

    found, hooks = {}, []
    for layer in frozen.frozen_layers():
        def hook(mod, inp, out, layer=layer):
            v = inp[0]  # a residual layer's second input is its shortcut
            if layer.input_kind == "int8":
                v = torch.from_numpy(reference.quantize(v.numpy(), layer.input_params["scale"]))
            elif layer.input_kind == "ternary":
                v = torch.from_numpy(reference.quantize_ternary(
                    v.numpy(), layer.input_params["t_lo"], layer.input_params["t_hi"]))
            found[layer.layer_name] = v.to(torch.int64)

        hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        frozen(x)
    for h in hooks:
        h.remove()
    return found
