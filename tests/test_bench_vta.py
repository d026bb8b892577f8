"""bench_vta --quick: every ResNet-18 layer on both configs, and a report whose numbers are
consistent with each other and with shapes worked out here from the old VTA benchmark's
table (no cycle count is asserted: the benchmark measures, the test checks behaviour)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_vta.py"
PEAK_MACS_PER_CYCLE = 1 * 16 * 16  # default and int8: batch 1, 16 x 16 blocks
# apache/tvm vta/tests/python/integration/test_benchmark_topi_conv2d.py resnet_wkls:
# name: (H = W, in, out, kernel, stride, pad), and the count of the shape in ResNet-18
# (stem; 4 convs of stage 1; per later stage: the strided 3x3, its 1x1 shortcut, 3 more 3x3).
VTA_RESNET18 = {
    "C1": ((224, 3, 64, 7, 2, 3), 1), "C2": ((56, 64, 64, 3, 1, 1), 4),
    "C3": ((56, 64, 128, 3, 2, 1), 1), "C4": ((56, 64, 128, 1, 2, 0), 1),
    "C5": ((28, 128, 128, 3, 1, 1), 3), "C6": ((28, 128, 256, 3, 2, 1), 1),
    "C7": ((28, 128, 256, 1, 2, 0), 1), "C8": ((14, 256, 256, 3, 1, 1), 3),
    "C9": ((14, 256, 512, 3, 2, 1), 1), "C10": ((14, 256, 512, 1, 2, 0), 1),
    "C11": ((7, 512, 512, 3, 1, 1), 3),
}
ENERGY_PARTS = {"gemm_pj", "alu_pj", "sram_pj", "dram_pj"}


def _run(out_dir, *flags):
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", "-q", "--out", str(out_dir), *flags],
                          capture_output=True, text=True, timeout=900)


def _load(out_dir):
    return json.loads((out_dir / "bench_vta.json").read_text()), (out_dir / "bench_vta.md").read_text()


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bench_vta_quick")
    proc = _run(out_dir, "--no-resnet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (*_load(out_dir), out_dir)


def _out_size(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def _macs(shape):
    h, c, o, k, s, p = shape
    return _out_size(h, k, s, p) ** 2 * c * o * k * k


def test_every_layer_on_both_configs_with_its_shape(quick):
    report, _, _ = quick
    assert [r["layer"] for r in report["layers"]] == list(VTA_RESNET18)
    assert sum(n for _, n in VTA_RESNET18.values()) == 20  # ResNet-18's convolutions
    for r in report["layers"]:
        shape, count = VTA_RESNET18[r["layer"]]
        assert r["count_in_resnet18"] == count and r["macs"] == _macs(shape)
        assert set(r["configs"]) == {"default", "int8"}


def test_utilization_is_useful_macs_over_peak_cycles(quick):
    report, _, _ = quick
    for r in report["layers"]:
        for cfg, c in r["configs"].items():
            assert c["useful_macs"] == r["macs"], (r["layer"], cfg)  # dense weights: nothing skipped
            assert 0 < c["gemm_utilization"] <= 1
            assert c["gemm_utilization"] == pytest.approx(c["useful_macs"] / (PEAK_MACS_PER_CYCLE * c["cycles"]))
            assert c["cycles"] >= c["useful_macs"] / PEAK_MACS_PER_CYCLE
            assert c["cycles"] >= max(c["busy_cycles"].values())  # no module runs past the end
            assert c["mac_slots"] >= c["useful_macs"]


def test_dram_traffic_by_memory_type(quick):
    report, _, _ = quick
    for r in report["layers"]:
        (h, _, o, k, s, p), _ = VTA_RESNET18[r["layer"]]
        for c in r["configs"].values():
            assert c["dram_bytes"] == sum(c["dram_read_bytes"].values()) + sum(c["dram_write_bytes"].values())
            # every int8 output element is written once, nothing else is written
            assert c["dram_write_bytes"] == {"out": _out_size(h, k, s, p) ** 2 * o}
            assert {"inp", "wgt"} <= set(c["dram_read_bytes"])


def test_energy_ratio_recomputed_from_the_breakdowns(quick):
    report, _, _ = quick
    totals = {"default": 0.0, "int8": 0.0}
    for r in report["layers"]:
        t, i8 = (r["configs"][c] for c in ("default", "int8"))
        for c in (t, i8):
            assert set(c["energy_breakdown_pj"]) == ENERGY_PARTS
            assert c["energy_pj"] == pytest.approx(sum(c["energy_breakdown_pj"].values()))
        want = sum(i8["energy_breakdown_pj"].values()) / sum(t["energy_breakdown_pj"].values())
        assert r["energy_ratio_int8_over_ternary"] == pytest.approx(want)
        # Horowitz 45 nm: a ternary MAC is one 32-bit add (0.1 pJ), an int8 MAC adds an
        # 8-bit multiply (0.2 pJ); both configs issue the same MAC slots
        assert t["mac_slots"] == i8["mac_slots"]
        assert i8["energy_breakdown_pj"]["gemm_pj"] == pytest.approx(3 * t["energy_breakdown_pj"]["gemm_pj"])
        for cfg in totals:
            totals[cfg] += r["configs"][cfg]["energy_pj"] * r["count_in_resnet18"]
    s = report["summary"]
    assert s["default"]["energy_pj_per_inference"] == pytest.approx(totals["default"])
    assert s["energy_ratio_per_inference"] == pytest.approx(totals["int8"] / totals["default"])


def test_mean_utilization_leaves_out_c1(quick):
    report, _, _ = quick
    s = report["summary"]
    assert s["mean_excludes"] == ["C1"]
    for cfg in ("default", "int8"):
        utils = [r["configs"][cfg]["gemm_utilization"] for r in report["layers"] if r["layer"] != "C1"]
        assert s[cfg]["mean_gemm_utilization"] == pytest.approx(sum(utils) / len(utils))
    goal = report["targets"][0]
    assert goal["measured"] == s["default"]["mean_gemm_utilization"]
    assert goal["met"] == (goal["measured"] >= 0.8)


def test_best_programs_are_exact_on_the_functional_simulator(quick):
    report, _, _ = quick
    for r in report["layers"]:
        for c in r["configs"].values():
            assert c["fsim"]["exact"] is True and c["fsim"]["seconds"] > 0


def test_best_schedule_is_one_measured_and_near_the_fewest_cycles(quick):
    report, _, _ = quick
    for r in report["layers"]:
        for c in r["configs"].values():
            srch = c["search"]
            assert srch["evaluated"] == len(srch["tried"]) == 2 and srch["space"] >= srch["evaluated"]
            cycles = [t[1] for t in srch["tried"]]
            assert [c["knobs"], c["cycles"]] in [t[:2] for t in srch["tried"]]
            assert c["cycles"] <= min(cycles) * (1 + srch["cycle_tolerance"])
            assert srch["default_cycles"] == cycles[0]


def test_zero_block_ratios_recomputed_from_recorded_cycles(quick):
    report, _, _ = quick
    zero = {z["layer"]: z for z in report["zero_blocks"]}
    assert set(zero) == {"C8", "C11"}
    for name, z in zero.items():
        (_, c, o, k, _, _), _ = VTA_RESNET18[name]
        blocks = (o // 16) * (c // 16) * k * k
        sp = z["sparse"]
        assert sp["skipped_weight_blocks"] == round(0.9 * blocks)
        assert sp["skipped_weight_blocks"] + sp["weight_blocks"] == blocks
        assert z["dense"]["skipped_weight_blocks"] == 0
        assert z["cycle_ratio"] == pytest.approx(sp["cycles"] / z["dense"]["cycles"])
        assert z["weight_dma_ratio"] == pytest.approx(sp["dram_read_bytes"]["wgt"]
                                                      / z["dense"]["dram_read_bytes"]["wgt"])
        same = z["sparse_with_dense_schedule"]
        assert z["weight_dma_ratio_same_schedule"] == pytest.approx(same["dram_read_bytes"]["wgt"]
                                                                    / z["dense"]["dram_read_bytes"]["wgt"])
        assert same["knobs"] == z["dense"]["knobs"]
        assert sp["fsim"]["exact"] is True
        goal = next(g for g in report["targets"] if g["target"].startswith(name + " "))
        assert goal["measured"] == z["cycle_ratio"] and goal["met"] == (z["cycle_ratio"] <= 0.2)


def test_markdown_plot_and_provenance(quick):
    report, md, out_dir = quick
    for name in VTA_RESNET18:
        assert f"| {name} |" in md
    assert "## Zero-block skipping" in md and "skipped: --no-resnet" in md
    assert (out_dir / "bench_vta.png").stat().st_size > 0
    prov = report["provenance"]
    assert prov["git_commit"] and set(prov["hw_hash"]) == {"default", "int8"}
    assert report["resnet_fsim"] is None


def test_unknown_layer_is_a_typed_error_naming_it(tmp_path):
    proc = _run(tmp_path, "--only", "C2", "C99", "--no-resnet")
    assert proc.returncode != 0
    assert "BenchmarkError" in proc.stderr and "'C99'" in proc.stderr
    assert not (tmp_path / "bench_vta.json").exists()


@pytest.mark.slow
def test_resnet_style_model_is_timed_and_exact(tmp_path):
    proc = _run(tmp_path, "--only", "C11")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report, md = _load(tmp_path)
    rn = report["resnet_fsim"]
    assert rn["exact_vs_reference"] is True
    assert 0 < rn["run_seconds_min"] <= rn["run_seconds_median"]
    assert rn["accelerator_layers"] > 0 and 0 < rn["gemm_utilization"] <= 1
    goal = next(g for g in report["targets"] if "32x32" in g["target"])
    assert goal["met"] == (rn["run_seconds_median"] < 30)
    assert "ResNet-18-style 32x32" in md


def test_padding_and_the_unoverlapped_ends_bound_utilization(quick):
    """One GEMM iteration per cycle at most: utilization <= useful MACs / issued slots (C1:
    3 input channels in a 16-channel block, hand-worked 3/16), and the MACs fit between the
    lead-in and the tail."""
    report, _, _ = quick
    rows = {r["layer"]: r for r in report["layers"]}
    c1 = rows["C1"]["configs"]["default"]
    assert c1["useful_macs"] / c1["mac_slots"] == pytest.approx(3 / 16)
    for r in report["layers"]:
        for c in r["configs"].values():
            assert c["gemm_utilization"] <= c["useful_macs"] / c["mac_slots"] + 1e-12
            assert c["lead_in_cycles"] > 0 and c["tail_cycles"] > 0
            assert c["lead_in_cycles"] + c["tail_cycles"] + c["mac_slots"] // PEAK_MACS_PER_CYCLE <= c["cycles"]
