"""Frozen models export through torch.export with ternary layers as tternary::* ops."""

import torch

import tvm_ternary as tt
from tvm_ternary import models

from .helpers import frozen_pair, randomize_batchnorm


def _tternary_ops(ep) -> set[str]:
    return {str(n.target) for n in ep.graph.nodes
            if n.op == "call_function" and str(n.target).startswith("tternary.")}


def test_resnet18_cifar_exports_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = models.resnet18_cifar()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 32, 32)
    _, frozen = frozen_pair(model, "twn", x)
    ep = torch.export.export(frozen, (x,))
    ops = _tternary_ops(ep)
    assert {"tternary.tquantize.default", "tternary.tconv2d.default", "tternary.trequantize.default",
            "tternary.trequantize_residual.default", "tternary.tlinear.default",
            "tternary.tdequantize.default"} <= ops
    n_convs = sum(1 for n in ep.graph.nodes if str(n.target) == "tternary.tconv2d.default")
    assert n_convs == 20  # stem + 16 block convs + 3 shortcut convs
    # every block but the last (its consumer is the float average pool) adds on integers
    n_residual = sum(1 for n in ep.graph.nodes if str(n.target) == "tternary.trequantize_residual.default")
    assert n_residual == 7
    eager = frozen(x)
    assert torch.equal(ep.module()(x), eager)
    path = tmp_path / "resnet.pt2"
    torch.export.save(ep, path)
    assert torch.equal(torch.export.load(path).module()(x), eager)


def test_exported_ops_carry_integer_parameters():
    torch.manual_seed(1)
    model = models.digits_mlp()
    x = torch.rand(4, 1, 8, 8)
    _, frozen = frozen_pair(model, "ttq", x, act="ternary")
    ep = torch.export.export(frozen, (x,))
    ops = _tternary_ops(ep)
    assert "tternary.tthreshold.default" in ops and "tternary.tquantize_ternary.default" in ops
    weights = [v for k, v in ep.state_dict.items() if k.endswith("w_t")]
    assert weights and all(w.dtype == torch.int8 and set(w.unique().tolist()) <= {-1, 0, 1}
                           for w in weights)
    assert torch.equal(ep.module()(x), tt.quant.run_reference(frozen, x))
