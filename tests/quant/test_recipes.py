"""Each method's recipe trains, freezes to an integer model equal to the reference, and
delivers what the method promises (sparsity, fixed assignment, ternary activations)."""

import pytest
import torch

import tvm_ternary as tt
from tvm_ternary import models
from tvm_ternary.data import load_digits_split
from tvm_ternary.quant.recipes import run_recipe
from tvm_ternary.quant.train import TrainConfig, fit, weight_sparsity


@pytest.fixture(scope="module")
def digits():
    d = load_digits_split()
    return tuple(torch.from_numpy(d[k]) for k in ("x_train", "y_train", "x_test", "y_test"))


def _trained(kind, act, digits):
    torch.manual_seed(0)
    fp = models.digits_mlp(act=act) if kind == "mlp" else models.digits_cnn(act=act)
    fit(fp, digits[0], digits[1], TrainConfig(epochs=3, lr=3e-3))
    return fp


@pytest.mark.parametrize("method", tt.quant.available_methods())
def test_recipe_freezes_to_reference_exact_model(method, digits):
    act = "hardtanh" if method == "teacher_student" else "relu"
    fp = _trained("mlp", act, digits)
    qm, _ = run_recipe(method, fp, digits[0], digits[1], TrainConfig(epochs=2, lr=1e-3))
    tt.quant.calibrate(qm, [digits[0]])
    frozen = tt.quant.freeze(qm)
    x = digits[2][:64]
    assert torch.equal(frozen(x), tt.quant.run_reference(frozen, x))
    with torch.no_grad():
        agree = (qm(x).argmax(1) == frozen(x).argmax(1)).float().mean()
    assert agree >= 0.95  # few-epoch models are near ties; the experiment measures >= 99%
    assert frozen.host_layers == []


def test_sparse_recipe_reaches_its_target_sparsity(digits):
    fp = _trained("mlp", "relu", digits)
    qm, info = run_recipe("sparse", fp, digits[0], digits[1], TrainConfig(epochs=2), sparsity=0.9)
    assert weight_sparsity(qm) >= 0.9 - 1e-3


def test_teacher_student_student_has_ternary_activations(digits):
    fp = _trained("mlp", "hardtanh", digits)
    qm, _ = run_recipe("teacher_student", fp, digits[0], digits[1], TrainConfig(epochs=1))
    tt.quant.calibrate(qm, [digits[0]])
    frozen = tt.quant.freeze(qm)
    outs = [layer.output_kind for layer in frozen.frozen_layers()]
    assert outs == ["threshold", "threshold", "float"]


def test_layer_sparsities_reach_the_network_target():
    from tvm_ternary.quant.methods.sparse import layer_sparsities

    for sizes in ([144, 4608, 18432, 16384, 640], [8192, 16384, 1280], [100, 100]):
        for target in (0.5, 0.9, 0.95):
            per_layer = layer_sparsities(sizes, target)
            overall = sum(s * n for s, n in zip(per_layer, sizes)) / sum(sizes)
            assert overall == pytest.approx(target, abs=1e-9)
            assert all(0 <= s <= 0.995 for s in per_layer)
    cnn = layer_sparsities([144, 4608, 18432, 16384, 640], 0.9)
    assert cnn[0] == cnn[-1] == 0.5  # the small edge layers are spared when possible
