"""The per-kernel breakdown covers every kernel call of one inference."""

import torch

import tvm_ternary as tt
from tvm_ternary.bench import layer_profile
from tvm_ternary.models import digits_mlp


def test_breakdown_of_a_small_model():
    torch.manual_seed(0)
    model = digits_mlp(hidden=32).eval()
    x = torch.randn(1, 1, 8, 8)
    qm = tt.quant.ternarize(model, "twn")
    tt.quant.calibrate(qm, [x])
    cm = tt.compile(tt.quant.freeze(qm), (x,), target="cpu")
    prof = layer_profile.profile(cm, [x], repeats=3)
    kernels = [c for c in prof["calls"] if not c["builtin"]]
    # three Linear layers -> at least three kernel calls, each timed
    assert len(kernels) >= 3
    assert all(c["median_ms"] > 0 for c in prof["calls"])
    assert [c["index"] for c in prof["calls"]] == list(range(len(prof["calls"])))
    assert abs(sum(prof["by_symbol"].values()) - sum(c["median_ms"] for c in prof["calls"])) < 1e-9
    assert 0 < prof["kernels_ms"] <= prof["instrumented_total_ms"]
