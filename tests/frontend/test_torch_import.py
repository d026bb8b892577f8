"""The Relax import: every tternary op becomes an R.tternary_* op with its parameters."""

import torch

from tvm_ternary import models
from tvm_ternary.frontend import from_frozen

from ..quant.helpers import frozen_pair


def test_ternary_ops_and_integer_constants_in_relax():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 8, 8)
    _, frozen = frozen_pair(models.digits_cnn().eval(), "twn", x)
    text = str(from_frozen(frozen, (x,)))
    assert text.count("R.tternary_tconv2d(") == 3 and text.count("R.tternary_tlinear(") == 2
    assert text.count("R.tternary_trequantize(") == 4 and "R.tternary_tdequantize(" in text
    assert "R.tternary_tquantize(" in text and "R.nn.conv2d" not in text

