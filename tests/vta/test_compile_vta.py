"""compile_vta: whole ternary models with their ternary layers on the accelerator (fsim) and
the rest on the host CPU, bit-exact with the frozen integer reference; stats add up."""

import dataclasses

import numpy as np
import pytest
import torch

import tvm_ternary as tt
from tvm_ternary import models
from tvm_ternary.errors import BackendError, UnsupportedTargetError
from vta_ext import HwConfig
from vta_ext.compile import compile_vta, options_from_target

from ..quant.helpers import frozen_pair, random_digits_model, randomize_batchnorm


def _x(shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _check_stats_add_up(cm, hw):
    s = cm.stats
    acc = [r for r in s["layers"] if r["placement"] == "accelerator"]
    assert [r["name"] for r in acc] == s["accelerator_layers"]
    assert s["cycles"] == sum(r["cycles"] for r in acc) > 0
    assert s["dram_bytes"] == sum(r["dram_bytes"] for r in acc) > 0
    assert s["energy_pj"] == pytest.approx(sum(r["energy_pj"] for r in acc))
    assert s["gemm_utilization"] == pytest.approx(
        sum(r["useful_macs"] for r in acc) / (hw.macs_per_cycle * s["cycles"]))
    assert 0 < s["gemm_utilization"] <= 1
    assert s["seconds"] == pytest.approx(s["cycles"] / (hw.clock_mhz * 1e6))
    host = {r["name"]: r["reason"] for r in s["layers"] if r["placement"] == "host"}
    assert host == s["host_layers"]
    macs = sum(r["macs"] for r in s["layers"])
    assert s["accelerator_mac_fraction"] == pytest.approx(sum(r["macs"] for r in acc) / macs)


def _regions_ran(cm, times):
    return [r.calls for r in cm.session.regions] == [times] * len(cm.session.regions)


@pytest.mark.parametrize("kind,method,act,seed", [
    ("cnn", "twn", "int8", 21), ("cnn", "ttq", "ternary", 22), ("cnn", "absmean", "ternary_half", 23),
    ("mlp", "ttq", "int8", 24), ("mlp", "twn", "ternary", 25),
])
def test_digits_models_are_bit_exact_on_fsim(kind, method, act, seed):
    x = _x((6, 1, 8, 8), seed)
    _, frozen = frozen_pair(random_digits_model(kind, seed), method, x, act=act)
    hw = HwConfig.load("default")
    cm = compile_vta(frozen, (x,), hw=hw, backend="fsim")
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    x2 = _x((6, 1, 8, 8), seed + 100)  # a second call: the programs' images are reused intact
    assert torch.equal(cm(x2), tt.quant.run_reference(frozen, x2))
    assert _regions_ran(cm, 2)
    assert cm.stats["runs"] == 2
    assert sorted(cm.stats["packed_functions"].values()) == sorted(cm.stats["accelerator_layers"])
    assert set(cm.stats["packed_functions"]) == set(cm.session.func_names)
    assert all(f"R.call_dps_packed(\"{f}\"" in str(cm.partitioned.mod["main"])
               for f in cm.stats["packed_functions"])
    assert cm.stats["backend_calls"] == {name: 2 for name in cm.stats["accelerator_layers"]}
    assert all(t > 0 for t in cm.stats["backend_seconds"].values())
    layers = frozen.frozen_layers()
    # float-output layers too: the accelerator stores their accumulators, the host finishes
    assert cm.stats["accelerator_layers"] == [l.layer_name for l in layers]
    assert cm.stats["host_layers"] == {} and cm.stats["accelerator_mac_fraction"] == 1.0
    floats = [l for l in layers if l.output_kind == "float"]
    assert floats and set(cm.stats["host_epilogues"]) == {l.layer_name for l in floats}
    for l in floats:  # the digits models' float heads are linears: batch x out_features
        got = cm.stats["host_epilogues"][l.layer_name]
        assert "dequantize" in got["op"] and got["elements"] == x.shape[0] * l.w_t.shape[0]
    assert cm.stats["backend"] == "fsim" and cm.target["kind"] == "vta"
    _check_stats_add_up(cm, hw)


@pytest.mark.parametrize("hw_name", ["tiny", "int8", "tiny_tact"])
def test_other_hw_configs_are_bit_exact(hw_name):
    x = _x((3, 1, 8, 8), 31)
    _, frozen = frozen_pair(random_digits_model("cnn", 31), "twn", x, act="ternary")
    cm = compile_vta(frozen, (x,), hw=hw_name)
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    hw = HwConfig.load(hw_name)
    if hw.ternary_act:
        assert cm.stats["accelerator_layers"] and _regions_ran(cm, 1)
        _check_stats_add_up(cm, hw)
    else:  # int8: no threshold unit, so only the float head (accumulators) is offloaded
        floats = [l.layer_name for l in frozen.frozen_layers() if l.output_kind == "float"]
        assert cm.stats["accelerator_layers"] == floats
        assert cm.stats["host_layers"] and all("ternary_act" in r for r in cm.stats["host_layers"].values())
        _check_stats_add_up(cm, hw)


def test_dual_scale_layers_run_on_host_without_dual_accumulators_and_stay_exact():
    x = _x((4, 1, 8, 8), 41)
    _, frozen = frozen_pair(random_digits_model("cnn", 41), "ttq", x)
    hw = dataclasses.replace(HwConfig.load("default"), name="no_dual", dual_scale=False)
    cm = compile_vta(frozen, (x,), hw=hw)
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    dual = [l.layer_name for l in frozen.frozen_layers()
            if not torch.equal(l.mult[0], l.mult[1]) and l.output_kind != "float"]
    assert dual
    for name in dual:
        assert "dual_scale" in cm.stats["host_layers"][name]
    assert cm.stats["accelerator_mac_fraction"] < 1
    # the target dict carries the whole (modified) HwConfig: it alone compiles the same model
    again = compile_vta(frozen, (x,), **options_from_target(cm.target))
    assert again.stats["host_layers"] == cm.stats["host_layers"]
    assert again.target == cm.target and again.target["hw"]["dual_scale"] is False
    assert options_from_target("vta", hw="tiny", backend="reference") == {"hw": "tiny", "backend": "reference"}


@pytest.mark.slow  # ~25 s (torch.export of 21 layers); the digits models are the fast tier
def test_resnet18_style_runs_every_ternary_layer_on_fsim_exactly():
    from vta_ext.fsim_backend import FsimBackend

    class Recording(FsimBackend):
        """fsim, keeping each region's real input and output."""

        def __init__(self):
            self.seen = []

        def run(self, compiled, x, residual=None):
            y = super().run(compiled, x, residual)
            self.seen.append((compiled.spec, x, residual, y))
            return y

    torch.manual_seed(0)
    model = models.resnet18_cifar(width=0.125)
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = _x((1, 3, 32, 32), 51)
    _, frozen = frozen_pair(model, "twn", x)
    backend = Recording()
    cm = compile_vta(frozen, (x,), backend=backend)
    # integer residual adds (fused into each block's second conv where the block's
    # consumers read int8): the whole model equals the frozen integer reference
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    # every layer on the accelerator, exact on the activations the whole model fed it
    first_convs = [l.layer_name for l in frozen.frozen_layers() if l.layer_name.endswith("conv1")]
    assert len(first_convs) == 8 and set(first_convs) <= set(cm.stats["accelerator_layers"])
    assert sorted(spec.name for spec, *_ in backend.seen) == sorted(cm.stats["accelerator_layers"])
    for spec, x_layer, r_layer, y_layer in backend.seen:
        assert np.array_equal(y_layer, spec.reference(x_layer, r_layer)), spec.name
    _check_stats_add_up(cm, HwConfig.load("default"))
    # every ternary layer runs on the accelerator; float-output ones (their accumulators)
    # list their host epilogue
    assert cm.stats["host_layers"] == {} and cm.stats["accelerator_mac_fraction"] == 1.0
    floats = {l.layer_name for l in frozen.frozen_layers() if l.output_kind == "float"}
    assert set(cm.stats["host_epilogues"]) == floats
    fused = [spec.name for spec, _, r, _ in backend.seen if r is not None]
    assert len(fused) == 7 and all(n.endswith("conv2") for n in fused)  # 8 blocks, the last feeds the float pool


@pytest.mark.slow
def test_resnet18_full_width_at_32x32():
    torch.manual_seed(0)
    model = models.resnet18_cifar()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = _x((1, 3, 32, 32), 52)
    _, frozen = frozen_pair(model, "twn", x)
    cm = compile_vta(frozen, (x,))
    assert torch.equal(cm(x), tt.compile(frozen, (x,), target="cpu")(x))
    _check_stats_add_up(cm, HwConfig.load("default"))


@pytest.mark.slow
def test_teacher_student_ternary_activation_student():
    from tvm_ternary.data import load_digits_split
    from tvm_ternary.quant.recipes import run_recipe
    from tvm_ternary.quant.train import TrainConfig, fit

    d = load_digits_split()
    xt, yt = torch.from_numpy(d["x_train"]), torch.from_numpy(d["y_train"])
    torch.manual_seed(0)
    teacher = models.digits_mlp(act="hardtanh")
    fit(teacher, xt, yt, TrainConfig(epochs=2, lr=3e-3))
    qm, _ = run_recipe("teacher_student", teacher, xt, yt, TrainConfig(epochs=1))
    tt.quant.calibrate(qm, [xt])
    frozen = tt.quant.freeze(qm)
    x = torch.from_numpy(d["x_test"][:32])
    cm = compile_vta(frozen, (x,))
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    # the two threshold layers and the float head (its accumulators)
    assert len(cm.stats["accelerator_layers"]) == 3


def test_model_from_exported_program_names_layers_by_position():
    x = _x((4, 1, 8, 8), 61)
    _, frozen = frozen_pair(random_digits_model("mlp", 61), "twn", x, act="ternary")
    cm = compile_vta(torch.export.export(frozen, (x,)), (x,))
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    assert cm.stats["accelerator_layers"] == ["tlinear_tthreshold#0", "tlinear_tthreshold#1",
                                              "tlinear_tdequantize#2"]


def test_reference_backend_reports_no_accelerator_cost():
    x = _x((2, 1, 8, 8), 71)
    _, frozen = frozen_pair(random_digits_model("mlp", 71), "twn", x)
    cm = compile_vta(frozen, (x,), backend="reference")
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    assert cm.stats["backend"] == "reference"
    assert cm.stats["cycles"] is None and "reference" in cm.stats["cost_note"]


def test_bad_backend_hw_and_export_are_named(tmp_path):
    from tvm_ternary.errors import HwConfigError

    x = _x((2, 1, 8, 8), 81)
    _, frozen = frozen_pair(random_digits_model("mlp", 81), "twn", x)
    first = frozen.frozen_layers()[0].layer_name
    with pytest.raises(BackendError, match=f"rtl.*layer {first}"):
        compile_vta(frozen, (x,), backend="rtl")
    with pytest.raises(HwConfigError, match="nosuch"):
        compile_vta(frozen, (x,), hw="nosuch")
    cm = compile_vta(frozen, (x,), backend="reference")
    with pytest.raises(UnsupportedTargetError, match="vta"):
        cm.export(tmp_path / "m.tar")


def test_an_error_inside_a_region_reaches_the_caller_typed():
    from tvm_ternary.errors import SimulatorError
    from vta_ext.runtime import ReferenceBackend

    class Trapping(ReferenceBackend):
        def run(self, compiled, x, residual=None):
            raise SimulatorError(f"layer {compiled.name}: buffer overflow", 7)

    x = _x((2, 1, 8, 8), 91)
    _, frozen = frozen_pair(random_digits_model("mlp", 91), "twn", x)
    cm = compile_vta(frozen, (x,), backend=Trapping())
    with pytest.raises(SimulatorError, match="instruction 7.*buffer overflow"):
        cm(x)


def test_layer_the_real_lowering_refuses_is_named_runs_on_host_and_stays_exact():
    from torch import nn

    torch.manual_seed(5)
    # a 1x1 conv with padding 1: padding wider than the kernel extent, which the
    # accelerator's LOAD padding cannot express (the CPU runs it)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 1, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 10 * 10, 10))
    randomize_batchnorm(model, torch.Generator().manual_seed(5))
    x = _x((2, 1, 8, 8), 101)
    _, frozen = frozen_pair(model.eval(), "twn", x)
    cm = compile_vta(frozen, (x,))
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    names = [l.layer_name for l in frozen.frozen_layers()]
    assert cm.stats["accelerator_layers"] == [names[0], names[2]]  # names[2]: the float head
    reason = cm.stats["host_layers"][names[1]]
    assert reason.startswith("lowering refused") and "padding" in reason and names[1] in reason
    assert "tternary_tconv2d_trequantize" in cm.stats["host_ops"]


def test_uncalibrated_model_is_calibrated_with_a_warning_then_runs_exactly():
    qm = tt.quant.ternarize(random_digits_model("mlp", 111), "twn", act="ternary")
    x = _x((3, 1, 8, 8), 111)
    with pytest.warns(UserWarning, match="not calibrated"):
        cm = compile_vta(qm, (x,))
    assert torch.equal(cm(x), tt.quant.run_reference(cm.frozen, x))
    assert len(cm.stats["accelerator_layers"]) == 3  # two threshold layers and the float head


def test_layers_kept_in_float_run_on_host_and_are_listed():
    x = _x((3, 1, 8, 8), 121)
    _, frozen = frozen_pair(random_digits_model("cnn", 121), "twn", x, act="ternary",
                            skip_first_last=True)
    cm = compile_vta(frozen, (x,))
    assert cm.stats["float_layers"] == frozen.host_layers and len(frozen.host_layers) == 2
    assert cm.stats["host_ops"]["nn.conv2d"] == 1 and cm.stats["host_ops"]["matmul"] == 1
    # every ternary layer, float-output ones included (skip_first_last keeps nn layers float)
    assert set(cm.stats["accelerator_layers"]) == {l.layer_name for l in frozen.frozen_layers()}
    # float layers on the host: TVM's float conv / matmul, equal to the CPU build
    assert torch.equal(cm(x), tt.compile(frozen, (x,), target="cpu")(x))


def test_tt_compile_dispatches_target_vta_and_debug_compare_works_on_it():
    x = _x((2, 1, 8, 8), 131)
    _, frozen = frozen_pair(random_digits_model("cnn", 131), "ttq", x, act="ternary")
    cm = tt.compile(frozen, (x,), target="vta", hw="tiny", backend="fsim")
    assert cm.target["kind"] == "vta" and cm.target["hw"]["name"] == "tiny"
    assert cm.stats["accelerator_layers"] and cm.stats["backend"] == "fsim"
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    assert tt.debug.compare(cm, frozen, x) is None


def test_transformer_ffn_runs_wholly_on_the_accelerator():
    """Both linears of the FFN block end in a float op (GELU, the block output): their
    accumulators come from the accelerator, the dequantize epilogue from the host."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(3))
    _, frozen = frozen_pair(models.transformer_ffn(64, 256), "twn", x)
    cm = compile_vta(frozen, (x,))
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    s = cm.stats
    assert s["host_layers"] == {} and s["accelerator_mac_fraction"] == 1.0
    assert {k: v["elements"] for k, v in s["host_epilogues"].items()} == \
        {name: 10 * width for name, width in zip(s["accelerator_layers"], (256, 64))}
    assert "nn.gelu" in s["host_ops"] and "nn.layer_norm" in s["host_ops"]
    _check_stats_add_up(cm, HwConfig.load("default"))


def test_resnet_blocks_run_their_residual_adds_on_the_accelerator():
    """A stem and three residual blocks (identity and 1x1-conv shortcuts): each block whose
    output feeds an int8 consumer fuses its add into its second conv (LOAD OUT of the
    shortcut, REQUANT residual); every ternary MAC runs on the accelerator, exact."""
    from torch import nn

    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          models.BasicBlock(8, 8, 1), models.BasicBlock(8, 16, 2),
                          models.BasicBlock(16, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 10))
    randomize_batchnorm(model, torch.Generator().manual_seed(7))
    x = _x((2, 3, 12, 12), 141)
    _, frozen = frozen_pair(model.eval(), "twn", x)
    cm = compile_vta(frozen, (x,), hw="tiny")
    assert torch.equal(cm(x), tt.quant.run_reference(frozen, x))
    s = cm.stats
    fused = [r["name"] for r in s["layers"] if r.get("residual_input")]
    assert len(fused) >= 2 and all(n.endswith("conv2") for n in fused)
    assert s["host_layers"] == {} and s["accelerator_mac_fraction"] == 1.0
    _check_stats_add_up(cm, HwConfig.load("tiny"))
