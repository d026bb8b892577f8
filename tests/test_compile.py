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


def test_residual_model_adds_on_integers():
    torch.manual_seed(0)
    model = models.resnet18_cifar(width=0.125)
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 32, 32)
    _, frozen = frozen_pair(model, "twn", x)
    cm = tt.compile(frozen, (x,))
    # blocks 0-6 add their shortcut in the second conv's epilogue (integers end to end);
    # the last block's add, its ReLU and the average pool run in float on the host
    assert str(cm.imported).count("R.tternary_trequantize_residual(") == 7
    assert cm.stats["fallback"]["host_ops"].get("add") == 1
    # route: one record per conv; the residual layers run the tiled conv with the residual
    # epilogue fused into its store (no separate epilogue compute reading a z tensor)
    assert sum(k.startswith("tconv2d") for k in cm.stats["kernels"]) == 20
    assert cm.stats["kernels"].count("tconv2d_trequantize_residual: conv2d_gemm_tiled") == 7
    assert "trequantize_residual" not in str(cm.relax_mod)
    torch.testing.assert_close(cm(x), frozen(x), rtol=1e-5, atol=1e-6)
    found = tt.debug.compare(cm, frozen, x)  # every integer layer exact, residual ones too
    assert found is None or found.layer == "<host ops>", str(found)


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
    # dual-scale layers (Mp != Mn) run the SIMD GEMV's two-accumulator variant, exact
    cm = tt.compile(dual, (x,))
    dual_linears = [k for k in cm.stats["kernels"] if k.startswith("tlinear")]
    assert len(dual_linears) == 3
    if has_avx2(host_target()):
        assert not any(k.endswith(": generic") for k in dual_linears)
    assert torch.equal(cm(x), dual(x))
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


def _model(name: str, seed: int):
    """(model, input batch) for the zoo models the issue names, seeded."""
    from .quant.helpers import randomize_batchnorm

    torch.manual_seed(seed)
    if name in ("cnn", "mlp"):
        return random_digits_model(name, seed), torch.rand(128, 1, 8, 8)
    if name.startswith("resnet"):
        width = 1.0 if name == "resnet_full" else 0.25
        model = models.resnet18_cifar(width=width)
        randomize_batchnorm(model, torch.Generator().manual_seed(seed))
        return model.eval(), torch.rand(4 if width == 1.0 else 16, 3, 32, 32)
    return models.transformer_ffn(64, 256).eval(), torch.randn(4, 32, 64)


def _check_whole_model(name: str, seed: int, method: str, act: str, lsb_check: bool = True):
    from .quant.helpers import fake_quant_integers, frozen_integers

    model, x = _model(name, seed)
    qm, frozen = frozen_pair(model, method, x, act=act)
    cm = tt.compile(frozen, (x,))
    y, ref = cm(x), tt.quant.run_reference(frozen, x)
    if name in ("cnn", "mlp"):  # integers from input to output: bit-exact
        assert torch.equal(y, ref)
    else:
        # Float host ops between quantizers (residual adds, layer norm, GELU) round by ulps
        # differently in TVM and torch, which can move a value across a quantization tie.
        # Every ternary layer, fed the reference's input, must still be exact on its own.
        found = tt.debug.compare(cm, frozen, x)
        assert found is None or found.layer == "<host ops>", str(found)
        assert (y.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.99
    # the torch fake-quant model, DESIGN's tolerance: top-1 >= 99%, and the integers every
    # ternary layer consumes within 1 LSB on >= 99.9% of elements
    with torch.no_grad():
        assert (y.argmax(-1) == qm(x).argmax(-1)).float().mean() >= 0.99
    if not lsb_check:
        return cm
    fq, fr = fake_quant_integers(qm, x), frozen_integers(frozen, x)
    for layer in fq:
        close = ((fq[layer] - fr[layer]).abs() <= 1).float().mean()
        assert close >= 0.999, f"{name} layer {layer}: only {close:.4%} within 1 LSB"
    return cm


@pytest.mark.parametrize("name,seed,method,act", [
    ("cnn", 41, "twn", "int8"), ("cnn", 42, "ttq", "ternary"), ("mlp", 43, "absmean", "int8"),
    ("ffn", 45, "twn", "int8"), ("ffn", 46, "absmean", "ternary"),
    # ~90 s (debug.compare compiles every layer alone when host ops move a tie); the fast
    # residual representative is test_residual_model_adds_on_integers. With integer
    # residual adds its 1-LSB check holds since the multipliers have 16 bits (worst layer
    # 99.96%, layers.5.conv1; 99.75% with 15 bits).
    pytest.param("resnet", 44, "twn", "int8", marks=pytest.mark.slow),
])
def test_whole_models_match_reference_and_fake_quant(name, seed, method, act):
    from tvm_ternary.cpu.strategy import has_avx2
    from tvm_ternary.target import host_target

    cm = _check_whole_model(name, seed, method, act)
    if name == "ffn":
        # layer norm and GELU stay on the host; the [batch, tokens, K] linears are
        # flattened to rows, which the CPU kernels take
        assert {"nn.layer_norm", "nn.gelu"} <= set(cm.stats["fallback"]["host_ops"])
        if has_avx2(host_target()):
            assert not any(k.startswith("tlinear") and k.endswith(": generic")
                           for k in cm.stats["kernels"])


@pytest.mark.slow
def test_full_width_resnet18_at_32x32():
    _check_whole_model("resnet_full", 47, "twn", "int8", lsb_check=False)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "16-bit multipliers: layers.7.conv1 98.19% within 1 LSB (max 4), first below 99.9% at "
    "layers.3.conv1; top-1 100%. The conv's M rounding is the cause (M alone at 16 bits: "
    "98.22%; Mr alone 99.88%; bias 100%); each layer fed the fake-quant integers is within "
    "1 LSB everywhere and exact on >= 99.97%, the 8 residual blocks amplify single tie "
    "flips. No width fixes it: these 4 images pass from 22 bits only because no tie is hit; "
    "on 32 images 24-bit M gives 99.75% and the fake-quant model in float64 vs float32 "
    "99.74% (docs/numerics.md, 'Full-width ResNet-18')"))
def test_full_width_resnet18_layer_integers_within_one_lsb():
    _check_whole_model("resnet_full", 47, "twn", "int8")
