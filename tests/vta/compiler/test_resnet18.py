"""ResNet-18's convolutions (the old VTA benchmark's C1-C11, tvm_ternary.models) compiled for `default` and run
on the functional simulator: bit-exact with the integer reference, and the GEMM work the
program issues equals the padded MAC count (no block computed twice or left out)."""

import numpy as np
import pytest

from tvm_ternary.models import RESNET18_IMAGENET_CONVS
from vta_ext import HwConfig

from .specs import layer_input, layer_spec, run, trits

DEFAULT = HwConfig.load("default")
RESNET18 = {c.name: (c.size, c.cin, c.cout, c.kernel, c.stride, c.pad) for c in RESNET18_IMAGENET_CONVS}
FAST = ("C2", "C7")


def _check(name):
    h, c, o, k, s, p = RESNET18[name]
    rng = np.random.default_rng(int(name[1:]))
    spec = layer_spec(rng, "conv2d", (1, c, h, h), trits(rng, (o, c, k, k)), stride=(s, s),
                      padding=(p, p))
    x = layer_input(rng, spec)
    y, cl, result = run(spec, DEFAULT, x)
    np.testing.assert_array_equal(y, spec.reference(x))
    oh = (h + 2 * p - k) // s + 1
    blocks = -(-c // 16) * -(-o // 16) * k * k
    macs = sum(st.macs for st in result.stats)
    assert macs == blocks * oh * oh * DEFAULT.macs_per_cycle


@pytest.mark.parametrize("name", FAST)
def test_resnet18_conv_fast(name):
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in RESNET18 if n not in FAST])
def test_resnet18_conv(name):
    _check(name)
