"""Work and traffic counts against hand-worked formulas and the model zoo's stated size."""

import pytest
import torch

from tvm_ternary.bench.workloads import FULL, QUICK, Workload, count
from tvm_ternary.errors import BenchmarkError


def test_linear_counts():
    module, x = Workload("g", "linear", (3, 256, 100)).build()
    c = count(module, x)
    assert c["macs"] == 3 * 256 * 100
    assert c["linear_mac_share"] == 1.0
    assert c["weight_bytes"] == 256 * 100 / 4
    assert c["bytes"] == 256 * 100 / 4 + 4 * 3 * 256 + 4 * 3 * 100


def test_conv_counts_with_stride_and_padding():
    module, x = Workload("c", "conv", (1, 8, 16, 15, 3, 2)).build()   # 15x15 -> 8x8 (pad 1)
    c = count(module, x)
    assert c["macs"] == 16 * 8 * 8 * (8 * 3 * 3)
    assert c["linear_mac_share"] == 0.0


def test_resnet18_cifar_is_about_half_a_gmac():
    module, x = Workload("r", "model", ("resnet18_cifar", (1, 3, 32, 32))).build()
    c = count(module, x)
    assert 0.54e9 < c["macs"] < 0.57e9          # DESIGN.md: about 0.56 GMAC at 32x32
    assert 11.0e6 < c["weights"] < 11.3e6        # ResNet-18: about 11.2 M weights


def test_ffn_counts_both_linears():
    module, x = Workload("f", "ffn", (64, 256, 2)).build()
    assert count(module, x)["macs"] == 2 * (64 * 256 + 256 * 64)


def test_unknown_kind_names_the_workload():
    with pytest.raises(BenchmarkError, match="w9"):
        Workload("w9", "lstm", ()).build()


# The large single-layer workloads are plain nn.Linear; the full benchmark run builds them.
SMALL = [w for w in FULL + QUICK if not (w.kind == "linear" and w.shape[1] * w.shape[2] > 1 << 22)]


@pytest.mark.parametrize("w", SMALL, ids=lambda w: w.name)
def test_every_workload_builds(w):
    module, x = w.build()
    with torch.no_grad():
        assert torch.isfinite(module(x)).all()
