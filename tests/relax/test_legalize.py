"""LegalizeByStrategy: ternary ops a target has no kernel for fall back to the portable
generic compute with a warning listing them; float host ops are listed in the stats."""

import warnings

import pytest
import torch

import tvm_ternary as tt
from tvm_ternary.relax.legalize import host_op_census
from tvm_ternary.frontend import from_frozen

from ..quant.helpers import frozen_pair, random_digits_model

GENERIC_CPU = {"kind": "llvm", "mcpu": "x86-64", "num-cores": 1}  # no SIMD kernels apply


def test_missing_kernels_warn_with_the_op_names_and_stay_exact():
    x = torch.rand(3, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("cnn", 61), "twn", x)
    with pytest.warns(UserWarning, match=r"x86-64: no target-specific kernel for tconv2d, tlinear"):
        cm = tt.compile(frozen, (x,), target=GENERIC_CPU)
    assert {"tconv2d", "tlinear"} <= set(cm.stats["fallback"]["generic"])
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))


def test_no_warning_when_every_layer_has_a_kernel():
    from tvm_ternary.cpu.strategy import has_avx2
    from tvm_ternary.target import host_target

    if not has_avx2(host_target()):
        pytest.skip("this host has no SIMD kernels")
    x = torch.rand(3, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 62), "twn", x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        cm = tt.compile(frozen, (x,))
    assert "tlinear" not in cm.stats["fallback"]["generic"]


def test_host_op_census_counts_float_ops_only():
    x = torch.rand(3, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("cnn", 63), "twn", x)
    census = host_op_census(from_frozen(frozen, (x,)))
    # the digits CNN keeps max pools and the flatten on integers (reshape), nothing ternary
    assert census.get("nn.max_pool2d") == 2
    assert not any(name.startswith("tternary") for name in census)
