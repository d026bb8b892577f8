"""FoldScale: constant scales / offsets after a dequantize fold into it; what does not
broadcast per channel (or divides a constant by the tensor) stays."""

import numpy as np
import pytest
import torch
from torch import nn

import tvm_ternary as tt
from tvm_ternary.frontend import from_frozen
from tvm_ternary.relax.fold_scale import fold_scale
from tvm_ternary.relax.passes import CompileState
from tvm_ternary.target import host_target

from ..quant.helpers import frozen_pair, random_digits_model


class _Scaled(nn.Module):
    """The frozen digits MLP's logits, then a temperature, an offset and a per-class scale."""

    def __init__(self, frozen, seed: int):
        super().__init__()
        self.frozen = frozen
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("offset", torch.randn(10, generator=g))
        self.register_buffer("gain", torch.rand(10, generator=g) + 0.5)

    def forward(self, x):
        return (self.frozen(x) / 3.0 - self.offset) * self.gain + 0.25


def _expected(frozen, module, x):
    y = tt.quant.run_reference(frozen, x).double()
    return (y / 3.0 - module.offset.double()) * module.gain.double() + 0.25


@pytest.mark.parametrize("seed", [71, 72])
def test_scale_and_offset_chain_folds_and_matches(seed):
    x = torch.rand(6, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", seed), "twn", x)
    module = _Scaled(frozen, seed).eval()
    mod = from_frozen(module, (x,))
    state = CompileState(target=host_target())
    folded = str(fold_scale(mod, state))
    for op in ("R.divide(", "R.subtract(", "R.multiply(", "R.add("):
        assert op not in folded, op
    assert sorted(state.folded) == ["add", "divide", "multiply", "subtract"]
    cm = tt.compile(module, (x,))
    torch.testing.assert_close(cm(x).double(), _expected(frozen, module, x), rtol=2e-6, atol=1e-6)


class _NotFoldable(nn.Module):
    def __init__(self, frozen):
        super().__init__()
        self.frozen = frozen
        self.register_buffer("per_row", torch.arange(1.0, 7.0).reshape(6, 1))

    def forward(self, x):
        y = self.frozen(x)
        return 2.0 / (y * self.per_row + 10.0)  # per-row scale; constant / tensor


def test_non_channel_constants_and_reversed_divide_stay():
    x = torch.rand(6, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 73), "twn", x)
    module = _NotFoldable(frozen).eval()
    state = CompileState(target=host_target())
    text = str(fold_scale(from_frozen(module, (x,)), state))
    assert "R.multiply(" in text and "R.divide(" in text and state.folded == []
    cm = tt.compile(module, (x,))
    with torch.no_grad():
        expected = 2.0 / (tt.quant.run_reference(frozen, x).double() * module.per_row.double() + 10.0)
    np.testing.assert_allclose(cm(x).double().numpy(), expected.numpy(), rtol=1e-6)
