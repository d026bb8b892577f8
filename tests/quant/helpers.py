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


def _hooked_forward(model: nn.Module, x: torch.Tensor, hooks: dict) -> dict:
    """Run ``model(x)`` with ``read(module, inputs, output)`` hooked on each
    ``key: (module, read)`` of ``hooks``; returns ``{key: what read returned}``."""
    found = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, key=key, read=read:
                                       found.__setitem__(key, read(mod, inp, out)))
               for key, (m, read) in hooks.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return found


def fake_quant_integers(qm: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The integer input each ternary layer of the fake-quant model sees, by layer name."""
    def read(q, inp, out):
        return torch.round(out / q.scale - getattr(q, "offset", 0)).to(torch.int64)

    return _hooked_forward(qm, x, {name: (layer.act_quant, read) for name, layer in tt.quant.ternary_layers(qm)})


def frozen_integers(frozen, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The integer input of each frozen layer (quantizing its own float input if needed)."""
    from tvm_ternary.quant import reference

    def read(layer, inp, out):
        v = inp[0]  # a residual layer's second input is its shortcut
        if layer.input_kind == "int8":
            v = torch.from_numpy(reference.quantize(v.numpy(), layer.input_params["scale"]))
        elif layer.input_kind == "ternary":
            v = torch.from_numpy(reference.quantize_ternary(
                v.numpy(), layer.input_params["t_lo"], layer.input_params["t_hi"]))
        return v.to(torch.int64)

    return _hooked_forward(frozen, x, {layer.layer_name: (layer, read) for layer in frozen.frozen_layers()})


def _fake_quant_residuals(qm: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The integers each quantized ``ResidualQuant`` of the fake-quant model adds, by name."""
    from tvm_ternary.quant.residual import ResidualQuant

    def read(m, inp, out):
        return torch.round(out / m.act_quant.scale).to(torch.int64)

    return _hooked_forward(qm, x, {name: (m, read) for name, m in qm.named_modules()
                                   if isinstance(m, ResidualQuant) and m.act_quant is not None})


def layers_alone_integers(qm: nn.Module, frozen, x: torch.Tensor) -> dict[str, tuple]:
    """Each frozen layer on its own: ``name -> (output, expected)``, where ``output`` is
    the layer's integer output when fed the fake-quant model's integers (its input and,
    for a residual epilogue, its shortcut) and ``expected`` the integers the fake-quant
    model's consumer of that output sees. Differences then come from this layer alone,
    none carried in from earlier layers.

    A residual layer's shortcut is the ``ResidualQuant`` of its own block (a sibling
    module, as in ``models.BasicBlock``). Layers with a float output are left out.
    """
    from tvm_ternary.quant.residual import ResidualQuant

    fq, res = fake_quant_integers(qm, x), _fake_quant_residuals(qm, x)

    def shortcut(name: str) -> torch.Tensor:
        block = name.rpartition(".")[0]
        quant = next(n for n, m in qm.get_submodule(block).named_children()
                     if isinstance(m, ResidualQuant))
        return res[f"{block}.{quant}"]

    def feed(mod, args):
        if mod.input_kind != "int":
            return None  # a float input: the layer quantizes it itself
        fed = [fq[mod.layer_name].to(torch.int8)]
        if len(args) == 2:
            fed.append(shortcut(mod.layer_name).to(torch.int8))
        return tuple(fed)

    def record(mod, inp, out):
        if mod.output_kind != "float":
            outputs[mod.layer_name] = out.to(torch.int64)

    outputs, hooks = {}, []
    for layer in frozen.frozen_layers():
        hooks += [layer.register_forward_pre_hook(feed), layer.register_forward_hook(record)]
    with torch.no_grad():
        frozen(x)
    for h in hooks:
        h.remove()

    found = {}
    for node in frozen.graph_module.graph.nodes:
        if node.target not in outputs:
            continue
        readers = [u for u in node.users if u.target in fq]  # frozen layers read integers
        main = [u for u in readers if u.args[0] is node]
        expected = fq[main[0].target] if main else shortcut(readers[0].target)
        found[node.target] = (outputs[node.target], expected)
    return found
