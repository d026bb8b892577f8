"""tt.compile(target="cpu"): whole ternary models compiled with TVM match the integer
model bit for bit (and the numpy reference)."""

import pytest
import torch

import tvm_ternary as tt
from tvm_ternary import models

from .quant.helpers import frozen_pair, random_digits_model, randomize_batchnorm




@pytest.mark.parametrize("kind,method,act", [
    ("cnn", "twn", "int8"), ("cnn", "ttq", "ternary"), ("cnn", "absmean", "ternary_half"),
    ("mlp", "ttq", "int8"), ("mlp", "twn", "ternary"),
])
def test_compiled_model_equals_frozen_and_reference(kind, method, act):
    x = torch.rand(16, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model(kind, 3), method, x, act=act)
    cm = tt.compile(frozen, (x,), target="cpu")
    y = cm(x)
    assert torch.equal(y, frozen(x))
    assert torch.equal(y, tt.quant.run_reference(frozen, x))
    assert cm.stats["target"]["kind"] == "llvm"


def test_residual_model_compiles_with_float_host_ops():
    torch.manual_seed(0)
    model = models.resnet18_cifar(width=0.125)
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 32, 32)
    _, frozen = frozen_pair(model, "twn", x)
    cm = tt.compile(frozen, (x,))
    # adds, ReLUs and the average pool run in float on the host: equal up to float rounding
    torch.testing.assert_close(cm(x), frozen(x), rtol=1e-5, atol=1e-6)


def test_uncalibrated_model_is_calibrated_with_a_warning():
    qm = tt.quant.ternarize(random_digits_model("mlp", 1), "twn")
    x = torch.rand(8, 1, 8, 8)
    with pytest.warns(UserWarning, match="not calibrated"):
        cm = tt.compile(qm, (x,))
    assert cm(x).shape == (8, 10)


def test_export_load_round_trip(tmp_path):
    x = torch.rand(4, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("cnn", 5), "twn", x)
    cm = tt.compile(frozen, (x,))
    path = cm.export(tmp_path / "m.tar")
    cm2 = tt.load(path)
    assert torch.equal(cm2(x), frozen(x))
    assert cm2.target == cm.target


def test_compile_from_exported_program_file(tmp_path):
    x = torch.rand(4, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 6), "ttq", x, act="ternary")
    torch.export.save(torch.export.export(frozen, (x,)), tmp_path / "f.pt2")
    cm = tt.compile(torch.export.load(tmp_path / "f.pt2"), (x,))
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))


def test_bad_inputs_and_files_are_named(tmp_path):
    from tvm_ternary.errors import DataFileError, ShapeMismatchError

    x = torch.rand(4, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 7), "twn", x)
    cm = tt.compile(frozen, (x,))
    with pytest.raises(ShapeMismatchError, match=r"\[\[4, 1, 8, 8\]\]"):
        cm(torch.rand(3, 1, 8, 8))
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DataFileError, match="bad.tar"):
        tt.load(bad)
    with pytest.raises(DataFileError, match="missing.tar"):
        tt.load(tmp_path / "missing.tar")


def test_kernel_selection_symmetric_dual_and_portable():
    x = torch.rand(4, 1, 8, 8)
    _, sym = frozen_pair(random_digits_model("mlp", 8), "twn", x)
    _, dual = frozen_pair(random_digits_model("mlp", 8), "ttq", x)
    from tvm_ternary.cpu.strategy import has_avx2
    from tvm_ternary.target import host_target

    host = tt.compile(sym, (x,))
    linears = [k for k in host.stats["kernels"] if k.startswith("tlinear")]
    assert len(linears) == 3  # one record per layer (fused with its epilogue or not)
    if has_avx2(host_target()):  # a SIMD kernel (AVX2, or wider where the host has it)
        assert not any(k.endswith(": generic") for k in linears)
    assert torch.equal(host(x), sym(x))
    # dual-scale layers need two accumulators: the generic path, still exact
    cm = tt.compile(dual, (x,))
    assert "tlinear: generic" in cm.stats["kernels"] and torch.equal(cm(x), dual(x))
    # a CPU without AVX2 gets the portable path, exact too
    portable = tt.compile(sym, (x,), target={"kind": "llvm", "mcpu": "x86-64", "num-cores": 1})
    assert all(k.endswith("generic") for k in portable.stats["kernels"])
    assert torch.equal(portable(x), sym(x))


def test_unaligned_inputs_are_accepted():
    storage = torch.rand(9 * 64 + 1)
    x = storage[1:].view(9, 1, 8, 8)  # 4 bytes past an allocation: never 64-byte aligned
    assert x.data_ptr() % 64 != 0
    _, frozen = frozen_pair(random_digits_model("mlp", 9), "twn", x[:1])
    cm = tt.compile(frozen, (x[:1],))
    for i in range(9):
        assert torch.equal(cm(x[i:i + 1]), frozen(x[i:i + 1]))
