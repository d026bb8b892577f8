"""ResNet-18's convolutions (the old VTA benchmark's C1-C12) compiled for `default` and run
on the functional simulator: bit-exact with the integer reference, and the GEMM work the
program issues equals the padded MAC count (no block computed twice or left out)."""

import numpy as np
import pytest

from vta_ext import HwConfig

from .specs import layer_input, layer_spec, run, trits

DEFAULT = HwConfig.load("default")
# name: (H = W, in channels, out channels, kernel, stride, padding)
RESNET18 = {
    "C1": (224, 3, 64, 7, 2, 3), "C2": (56, 64, 64, 3, 1, 1), "C3": (56, 64, 64, 1, 1, 0),
    "C4": (56, 64, 128, 3, 2, 1), "C5": (56, 64, 128, 1, 2, 0), "C6": (28, 128, 128, 3, 1, 1),
    "C7": (28, 128, 256, 3, 2, 1), "C8": (28, 128, 256, 1, 2, 0), "C9": (14, 256, 256, 3, 1, 1),
    "C10": (14, 256, 512, 3, 2, 1), "C11": (14, 256, 512, 1, 2, 0), "C12": (7, 512, 512, 3, 1, 1),
}
FAST = ("C2", "C8")


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
