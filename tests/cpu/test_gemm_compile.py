"""Whole models through tt.compile on the tiled GEMM / conv kernels equal the integer
reference: the digits CNN bit for bit, ResNet-18 (CIFAR) with its float host ops."""

import pytest
import torch
import torch.nn as nn

import tvm_ternary as tt
from tvm_ternary import models
from tvm_ternary.cpu.gemm_linear import GEMM_MIN_BATCH
from tvm_ternary.target import cpu_info

from ..quant.helpers import frozen_pair, random_digits_model, randomize_batchnorm
from .targets import AVX2_TARGET

pytestmark = pytest.mark.skipif("avx2" not in cpu_info()["flags"], reason="host has no AVX2")
AVX2_ONLY = AVX2_TARGET


def _frozen_linear(batch, k, n, seed, method="twn"):
    torch.manual_seed(seed)
    x = torch.randn(batch, k)
    qm = tt.quant.ternarize(nn.Sequential(nn.Linear(k, n)), method)
    tt.quant.calibrate(qm, [x])
    return tt.quant.freeze(qm), x


@pytest.mark.parametrize("target", ["cpu", AVX2_ONLY])
@pytest.mark.parametrize("extra,k,n", [(0, 300, 37), (7, 1000, 130)])
def test_batched_linear_uses_the_gemm_and_is_exact(target, extra, k, n):
    frozen, x = _frozen_linear(GEMM_MIN_BATCH + extra, k, n, k + n)
    cm = tt.compile(frozen, (x,), target=target)
    assert any(s.startswith("tlinear") and s.endswith(": gemm_tiled") for s in cm.stats["kernels"])
    y = cm(x)
    assert torch.equal(y, frozen(x)) and torch.equal(y, tt.quant.run_reference(frozen, x))


@pytest.mark.parametrize("target", ["cpu", AVX2_ONLY])
def test_dual_scale_linear_uses_the_gemm_and_is_exact(target):
    # TTQ (Mp != Mn per channel) at batch >= GEMM_MIN_BATCH: the GEMM's second accumulator
    frozen, x = _frozen_linear(GEMM_MIN_BATCH + 5, 333, 45, 9, method="ttq")
    cm = tt.compile(frozen, (x,), target=target)
    assert any(s.startswith("tlinear") and s.endswith(": gemm_tiled") for s in cm.stats["kernels"])
    y = cm(x)
    assert torch.equal(y, frozen(x)) and torch.equal(y, tt.quant.run_reference(frozen, x))


def test_batch_below_threshold_keeps_the_gemv():
    frozen, x = _frozen_linear(GEMM_MIN_BATCH - 1, 200, 20, 5)
    cm = tt.compile(frozen, (x,))
    assert not any(s.endswith(": gemm_tiled") for s in cm.stats["kernels"])


@pytest.mark.parametrize("target", ["cpu", AVX2_ONLY])
@pytest.mark.parametrize("method,act", [("twn", "int8"), ("absmean", "ternary_half"), ("ttq", "int8")])
def test_digits_cnn_is_bit_exact(target, method, act):
    x = torch.rand(GEMM_MIN_BATCH + 3, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("cnn", 11), method, x, act=act)
    cm = tt.compile(frozen, (x,), target=target)
    convs = [s for s in cm.stats["kernels"] if s.startswith("tconv2d")]
    assert convs and all(s.endswith(": conv2d_gemm_tiled") for s in convs)
    # the requantize / threshold epilogue runs in the kernel's store (fused op -> this kernel)
    fused = "tconv2d_tthreshold" if act.startswith("ternary") else "tconv2d_trequantize"
    assert f"{fused}: conv2d_gemm_tiled" in convs
    y = cm(x)
    assert torch.equal(y, frozen(x)) and torch.equal(y, tt.quant.run_reference(frozen, x))


def _resnet_case(target, width):
    torch.manual_seed(0)
    model = models.resnet18_cifar(width=width)
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 32, 32)
    _, frozen = frozen_pair(model.eval(), "twn", x)
    cm = tt.compile(frozen, (x,), target=target)
    convs = [s for s in cm.stats["kernels"] if s.startswith("tconv2d")]
    assert len(convs) >= 17 and all(s.endswith(": conv2d_gemm_tiled") for s in convs)
    # residual adds and the average pool run in float on the host: a one-LSB integer
    # difference would move an output by a quantization step, far above this tolerance
    torch.testing.assert_close(cm(x), tt.quant.run_reference(frozen, x), rtol=1e-5, atol=1e-6)


def test_resnet18_cifar_matches_reference():
    _resnet_case("cpu", 0.125)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cpu", AVX2_ONLY])
def test_resnet18_cifar_wider_matches_reference(target):
    _resnet_case(target, 0.25)
