"""The tternary command: --help answers without torch/TVM; quantize writes a real report."""

import json
import subprocess
import sys

import pytest


def test_help_does_not_import_torch_or_tvm():
    code = ("import sys; from tvm_ternary.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'tvm' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "quantize" in out.stdout


def test_quantize_help_lists_options():
    out = subprocess.run([sys.executable, "-m", "tvm_ternary.cli", "quantize", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--method" in out.stdout and "--out" in out.stdout


def test_options_are_those_each_command_uses():
    from tvm_ternary.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    options = {name: {o for a in sub[name]._actions for o in a.option_strings} for name in ("quantize", "compile", "run")}
    assert {"--seed", "--quiet"} <= options["quantize"]
    assert "--seed" in options["compile"] and "--quiet" not in options["compile"]  # no progress bars
    assert "--seed" not in options["run"] and "--quiet" in options["run"]          # nothing random
    assert not any("--verbose" in o for o in options.values())                     # nothing printed more


def test_quantize_writes_report_whose_integer_model_matches_reference(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tvm_ternary.cli", "quantize", "--epochs", "2",
                          "--qat-epochs", "1", "-q", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    row = report["results"][0]
    assert row["integer_matches_torch_ops"] is True
    assert 0.0 <= row["integer_acc"] <= 1.0 and row["method"] == "twn"
    assert report["provenance"]["tools"]["torch"].startswith("2.13.0")
    assert (tmp_path / "report.md").read_text().startswith("# tternary quantize")


def test_unknown_method_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tvm_ternary.cli", "quantize", "--method", "nope",
                          "--epochs", "1", "--qat-epochs", "1", "-q", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "valid methods" in out.stderr


def test_quantize_compile_run_chain(tmp_path):
    def tternary(*args):
        out = subprocess.run([sys.executable, "-m", "tvm_ternary.cli", *args], capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return out

    tternary("quantize", "--epochs", "2", "--qat-epochs", "1", "-q", "--out", str(tmp_path / "q"))
    tternary("compile", str(tmp_path / "q" / "frozen.pt2"), "--out", str(tmp_path / "c"))
    compiled = json.loads((tmp_path / "c" / "report.json").read_text())["results"][0]
    assert compiled["bit_exact_vs_exported"] is True
    tternary("run", str(tmp_path / "c" / "model.tar"), "-q", "--out", str(tmp_path / "r"))
    ran = json.loads((tmp_path / "r" / "report.json").read_text())["results"][0]
    quantized = json.loads((tmp_path / "q" / "report.json").read_text())["results"][0]
    # the compiled model classifies the test split exactly as the integer model does
    assert ran["images"] == 450
    assert round(ran["accuracy"] * 450) == round(quantized["integer_acc"] * 450)
    # the same frozen model on the simulated accelerator: exact, with its cost model figures
    tternary("compile", str(tmp_path / "q" / "frozen.pt2"), "--target", "vta", "--hw", "tiny",
             "--out", str(tmp_path / "v"))
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    on_vta = report["results"][0]
    assert on_vta["bit_exact_vs_exported"] is True
    assert on_vta["cycles"] > 0 and 0 < on_vta["gemm_utilization"] <= 1
    assert on_vta["host_layers"] == len(report["stats"]["host_layers"])


@pytest.mark.parametrize("command,content,message", [
    ("compile", None, "x.pt2: no such file"),
    ("compile", b"not a zip archive", "x.pt2: not a torch.export file"),
    ("run", None, "x.pt2: no such compiled model file"),
    ("run", b"not a tar archive", "x.pt2: not a tvm-ternary compiled model"),
])
def test_missing_or_corrupt_file_is_one_clear_line(tmp_path, command, content, message):
    path = tmp_path / "x.pt2"
    if content is not None:
        path.write_bytes(content)
    out = subprocess.run([sys.executable, "-m", "tvm_ternary.cli", command, str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    # one error line (tarfile's reason may wrap onto a few more); torch.export.load's own
    # logged traceback is not printed
    assert out.stderr.startswith(f"tternary {command}: error: {tmp_path}/{message}")
    assert "Traceback" not in out.stderr and "torch/export" not in out.stderr
