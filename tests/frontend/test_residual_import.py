"""A ResNet's integer residual adds import as R.tternary_trequantize_residual carrying the
shortcut tensor and its multipliers, and the imported module runs like the frozen model."""

import torch

from tvm_ternary import models
from tvm_ternary.frontend import from_frozen

from ..quant.helpers import frozen_pair, randomize_batchnorm


def test_resnet_residual_epilogues_import_with_their_shortcut():
    torch.manual_seed(0)
    model = models.resnet18_cifar(width=0.0625)
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = torch.rand(1, 3, 32, 32)
    _, frozen = frozen_pair(model.eval(), "twn", x)
    text = str(from_frozen(frozen, (x,)))
    n_residual = sum(l.output_kind == "requant_residual" for l in frozen.frozen_layers())
    assert n_residual == 7
    assert text.count("R.tternary_trequantize_residual(") == n_residual
    # the last block's add stays in float (its consumer is the float average pool)
    assert text.count("R.add(") == 1
