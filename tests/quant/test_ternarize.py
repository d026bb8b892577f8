"""ternarize(): layer replacement, the public layer API, and every bad-input path."""

import warnings

import pytest
import torch
from torch import nn

import tvm_ternary as tt
from tvm_ternary import models
from tvm_ternary.errors import NonFiniteWeightError, UnknownMethodError, UnsupportedLayerError


def test_replaces_linear_and_conv_and_keeps_the_original():
    model = models.digits_cnn()
    qm = tt.quant.ternarize(model, "twn")
    kinds = [type(m).__name__ for m in qm.modules()]
    assert kinds.count("TernaryConv2d") == 3 and kinds.count("TernaryLinear") == 2
    assert not any(isinstance(m, tt.quant.TernaryLinear) for m in model.modules())


@pytest.mark.parametrize("method", ["twn", "ttq", "absmean"])
def test_layer_api_shapes_and_values(method):
    torch.manual_seed(0)
    qm = tt.quant.ternarize(models.digits_cnn(), method)
    for _, layer in tt.quant.ternary_layers(qm):
        w_t = layer.ternary_weight()
        assert w_t.dtype == torch.int8 and w_t.shape == layer.weight.shape
        assert set(w_t.unique().tolist()) <= {-1, 0, 1}
        alpha_p, alpha_n = layer.scales()
        assert alpha_p.dtype == alpha_n.dtype == torch.float32
        assert alpha_p.shape == alpha_n.shape == (layer.weight.shape[0],)
        # The fake-quant forward uses exactly alpha_p * [w=1] - alpha_n * [w=-1].
        w_eff = layer._quantized_weight().detach()
        shape = (-1,) + (1,) * (w_t.dim() - 1)
        expect = alpha_p.reshape(shape) * (w_t == 1) - alpha_n.reshape(shape) * (w_t == -1)
        torch.testing.assert_close(w_eff, expect)


def test_twn_hand_worked_threshold_and_scale():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -0.2, 0.5, -2.5]]))
    qm = tt.quant.ternarize(nn.Sequential(layer), "twn")
    # mean|w| = 1.05 -> delta = 0.735: keeps 1.0 and -2.5; alpha = (1.0 + 2.5) / 2
    assert qm[0].ternary_weight().tolist() == [[1, 0, 0, -1]]
    assert qm[0].scales()[0].tolist() == pytest.approx([1.75])


def test_absmean_hand_worked():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.9, -0.1, 0.5, -1.0]]))
    qm = tt.quant.ternarize(nn.Sequential(layer), "absmean")
    # gamma = 0.625: w / gamma = [1.44, -0.16, 0.8, -1.6] -> [1, 0, 1, -1]
    assert qm[0].ternary_weight().tolist() == [[1, 0, 1, -1]]
    assert qm[0].scales()[0].tolist() == pytest.approx([0.625])


def test_ttq_scale_gradients_have_the_exact_sign():
    torch.manual_seed(0)
    qm = tt.quant.ternarize(nn.Sequential(nn.Linear(16, 4, bias=False)), "ttq", act=None)
    layer = qm[0]
    layer._quantized_weight().sum().backward()
    w_t = layer.ternary_weight()
    q = layer.weight_quant
    # d(sum(Wp*[w=1] - Wn*[w=-1]))/dWp = #(+1), /dWn = -#(-1)
    assert q.wp.grad.item() == pytest.approx(float((w_t == 1).sum()))
    assert q.wn.grad.item() == pytest.approx(-float((w_t == -1).sum()))


def test_unknown_method_lists_valid_ones():
    with pytest.raises(UnknownMethodError, match="twn") as err:
        tt.quant.ternarize(models.digits_mlp(), "twm")
    assert "'twm'" in str(err.value)


def test_unsupported_layer_warns_or_raises_under_strict():
    model = nn.Sequential(nn.Conv1d(2, 2, 3), nn.Flatten(), nn.Linear(4, 2))
    with pytest.warns(UserWarning, match="'0' \\(Conv1d\\) cannot be ternarized"):
        qm = tt.quant.ternarize(model, "twn")
    assert type(qm[0]) is nn.Conv1d and isinstance(qm[2], tt.quant.TernaryLinear)
    with pytest.raises(UnsupportedLayerError, match="Conv1d"):
        tt.quant.ternarize(model, "twn", strict=True)


def test_non_finite_weights_name_the_layer():
    model = models.digits_mlp()
    with torch.no_grad():
        model[5].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightError, match="'5'"):
        tt.quant.ternarize(model, "twn")


def test_keep_float_and_skip_first_last():
    model = models.digits_cnn()
    qm = tt.quant.ternarize(model, "twn", skip_first_last=True)
    assert type(qm[0]) is nn.Conv2d and type(qm[15]) is nn.Linear
    assert isinstance(qm[3], tt.quant.TernaryConv2d)
    qm = tt.quant.ternarize(model, "twn", keep_float=["3"])
    assert type(qm[3]) is nn.Conv2d
    with pytest.raises(ValueError, match="nope"):
        tt.quant.ternarize(model, "twn", keep_float=["nope"])


def test_unknown_activation_quantizer_is_named():
    with pytest.raises(ValueError, match="'int4'"):
        tt.quant.ternarize(models.digits_mlp(), "twn", act="int4")
