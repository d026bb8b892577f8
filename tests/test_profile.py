"""CompiledModel.profile: a per-function time breakdown that adds up and names the op
that dominates."""

import pytest
import torch
from torch import nn

import tvm_ternary as tt
from tvm_ternary.errors import ShapeMismatchError

from .quant.helpers import frozen_pair, random_digits_model


def test_breakdown_adds_up_and_is_kept_in_stats():
    x = torch.rand(4, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("cnn", 81), "twn", x)
    cm = tt.compile(frozen, (x,))
    times = cm.profile(x, repeat=3)
    assert cm.stats["times_ms"] is times
    kernels = [(s, t) for s, t in times["per_function"] if not s.startswith("vm.builtin")]
    assert len(kernels) >= len(frozen.frozen_layers())  # at least one call per layer
    assert all(t >= 0 for _, t in times["per_function"])
    # a sum of per-function minima never exceeds the fastest whole run
    assert sum(t for _, t in times["per_function"]) <= times["total_ms"]
    with pytest.raises(ShapeMismatchError):
        cm.profile(torch.rand(3, 1, 8, 8))


def test_the_dominant_op_comes_first():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 8)).eval()
    x = torch.randn(32, 256)
    cm = tt.compile(model, (x,))
    calls = [(s, t) for s, t in cm.profile(x, repeat=5)["per_function"] if not s.startswith("vm.")]
    # 32 x 256 x 2048 MACs against 32 x 2048 x 8: 32x the work, well above noise
    assert "matmul" in calls[0][0] and calls[0][1] >= 3 * calls[1][1]


def test_profiling_leaves_no_hook_on_the_vm():
    """A hook left installed (even a no-op one) runs Python around every later VM call."""
    from tvm_ternary.profile import profile

    class RecordingVM:
        def __init__(self):
            self.hooks = []

        def set_instrument(self, hook):
            self.hooks.append(hook)

        def __getitem__(self, name):
            return lambda *args: None

    vm = RecordingVM()
    profile(vm, [], repeat=2)
    assert len(vm.hooks) == 4 and vm.hooks[-1] is None
