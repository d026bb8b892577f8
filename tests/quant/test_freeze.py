"""Freeze: the integer model equals the numpy reference exactly, and agrees with the
float fake-quant model within the quantization error."""

import zlib

import pytest
import torch
from torch import nn

import tvm_ternary as tt
from tvm_ternary import models
from tvm_ternary.errors import FreezeError, FrozenModelError

from .helpers import (fake_quant_integers, frozen_integers, frozen_pair, random_digits_model,
                      randomize_batchnorm)

CASES = [(method, act) for method in ("twn", "ttq", "absmean")
         for act in ("int8", "ternary", "ternary_half")]




@pytest.mark.parametrize("method,act", CASES)
@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_frozen_model_equals_numpy_reference(kind, method, act):
    model = random_digits_model(kind, seed=zlib.crc32(f"{kind}{method}{act}".encode()) % 1000)
    x = torch.rand(48, 1, 8, 8)
    _, frozen = frozen_pair(model, method, x, act=act)
    assert torch.equal(frozen(x), tt.quant.run_reference(frozen, x))


@pytest.mark.parametrize("method,act", CASES)
def test_frozen_model_agrees_with_fake_quant(method, act):
    model = random_digits_model("cnn", seed=7)
    x = torch.rand(256, 1, 8, 8)
    qm, frozen = frozen_pair(model, method, x, act=act)
    with torch.no_grad():
        assert (qm(x).argmax(1) == frozen(x).argmax(1)).float().mean() >= 0.99
    # Layer by layer, the integers each layer consumes: within 1 LSB on >= 99.9%.
    fq, fr = fake_quant_integers(qm, x), frozen_integers(frozen, x)
    assert fq.keys() == fr.keys()
    for name in fq:
        close = ((fq[name] - fr[name]).abs() <= 1).float().mean()
        assert close >= 0.999, f"layer {name}: only {close:.4%} within 1 LSB"


def test_batchnorm_relu_maxpool_flatten_are_folded():
    _, frozen = frozen_pair(random_digits_model("cnn", 0), "twn", torch.rand(8, 1, 8, 8))
    kinds = [layer.output_kind for layer in frozen.frozen_layers()]
    assert kinds == ["requant"] * 4 + ["float"]
    assert frozen.fused["0"] == ["bn", "relu"]
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU)) for m in frozen.modules())


def test_negative_gamma_flips_channel_weights():
    model = random_digits_model("mlp", 3)
    bn = model[2]
    with torch.no_grad():
        bn.weight.abs_()
        bn.weight[0] = -bn.weight[0]
    qm, frozen = frozen_pair(model, "twn", torch.rand(16, 1, 8, 8))
    w_float = qm[1].ternary_weight()
    w_frozen = frozen.frozen_layers()[0].w_t
    assert torch.equal(w_frozen[0], -w_float[0])
    assert torch.equal(w_frozen[1:], w_float[1:])
    assert (frozen.frozen_layers()[0].mult >= 0).all()


def test_residual_model_runs_add_on_host_and_matches_reference():
    torch.manual_seed(0)
    model = models.resnet18_cifar(width=0.125)
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 32, 32)
    qm, frozen = frozen_pair(model, "twn", x)
    assert torch.equal(frozen(x), tt.quant.run_reference(frozen, x))
    with torch.no_grad():
        assert (qm(x) - frozen(x)).abs().max() < 0.1 * qm(x).abs().max()


def test_frozen_model_refuses_to_train():
    _, frozen = frozen_pair(random_digits_model("mlp", 1), "twn", torch.rand(8, 1, 8, 8))
    with pytest.raises(FrozenModelError, match="frozen"):
        frozen.train()
    with pytest.raises(FrozenModelError):
        tt.quant.ternarize(frozen, "twn")
    from tvm_ternary.quant.train import TrainConfig, fit
    with pytest.raises(FrozenModelError):
        fit(frozen, torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), TrainConfig(epochs=1))


def test_uncalibrated_model_cannot_freeze():
    qm = tt.quant.ternarize(random_digits_model("mlp", 2), "twn")
    with pytest.raises(FreezeError, match="calibrate"):
        tt.quant.freeze(qm)


def test_layer_without_input_quantizer_stays_on_host():
    model = random_digits_model("mlp", 4)
    qm = tt.quant.ternarize(model, "twn", act=None)
    frozen = tt.quant.freeze(qm)
    assert frozen.frozen_layers() == []
    assert frozen.host_layers == ["1", "5", "9"]
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), qm(x))


def test_dynamic_per_token_activations_cannot_freeze_and_say_so():
    qm = tt.quant.ternarize(random_digits_model("mlp", 5), "absmean", act="int8_dynamic")
    x = torch.rand(8, 1, 8, 8)
    y = qm(x)  # the fake-quant model runs: scales come from each row
    assert y.shape == (8, 10)
    tt.quant.calibrate(qm, [x])
    with pytest.raises(FreezeError, match="layer '1': dynamic per-token"):
        tt.quant.freeze(qm)


def test_per_token_fake_quant_matches_bitnet_formula():
    q = tt.quant.Int8Act(dynamic=True)
    x = torch.tensor([[0.5, -1.0, 0.25], [2.0, 1.0, -0.01]])
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    expected = torch.clamp(torch.round(x / scale), -127, 127) * scale  # no .5 ties here
    torch.testing.assert_close(q(x), expected)


class _BranchOnData(nn.Module):
    """A forward whose Python ``if`` depends on a tensor value: fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


def test_untraceable_model_cannot_freeze_and_says_what_to_change():
    qm = tt.quant.ternarize(_BranchOnData(), "twn")
    x = torch.rand(8, 16)
    tt.quant.calibrate(qm, [x])
    with pytest.raises(FreezeError, match=r"could not trace.*torch\.where"):
        tt.quant.freeze(qm)
