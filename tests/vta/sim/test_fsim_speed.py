"""The simulator runs a ResNet-18-style 32x32 network (resnet18_cifar's 20 convolutions,
compiled by vta_ext.compiler for `default`) bit-exactly, well inside the 30 s budget."""

import time

import numpy as np
import pytest

from vta_ext import HwConfig
from vta_ext.compiler.lower import compile_layer
from vta_ext.sim.fsim import simulate

from ..compiler.specs import layer_input, layer_spec, trits

BUDGET_S = 30.0


def _resnet18_cifar_convs():
    """(in, out, size, stride, kernel) of resnet18_cifar: 3x3 stem, four stages of two basic
    blocks, 1x1 stride-2 shortcuts where the width doubles."""
    convs = [(3, 64, 32, 1, 3)]
    size, cin = 32, 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            convs.append((cin, cout, size, s, 3))
            if s != 1 or cin != cout:
                convs.append((cin, cout, size, s, 1))
            size //= s
            convs.append((cout, cout, size, 1, 3))
            cin = cout
    return convs


@pytest.mark.slow
def test_resnet18_cifar_simulates_bit_exact_within_budget():
    hw = HwConfig.load("default")
    rng = np.random.default_rng(18)
    sim_seconds, macs = 0.0, 0
    convs = _resnet18_cifar_convs()
    assert len(convs) == 20
    for cin, cout, size, stride, k in convs:
        spec = layer_spec(rng, "conv2d", (1, cin, size, size), trits(rng, (cout, cin, k, k)),
                          stride=(stride, stride), padding=(k // 2, k // 2))
        x = layer_input(rng, spec)
        cl = compile_layer(spec, hw)
        t = time.perf_counter()
        result = simulate(cl.bind(x), hw)
        sim_seconds += time.perf_counter() - t
        np.testing.assert_array_equal(cl.read_output(result.dram), spec.reference(x))
        macs += result.totals()["macs"]
    assert macs > 0.5e9  # about 0.56 GMAC (DESIGN: resnet18_cifar)
    assert sim_seconds < BUDGET_S, f"{sim_seconds:.1f} s"
