"""bench_cpu --quick runs every workload against every peer and writes a consistent report
(no timing is asserted: benchmarks measure, tests check behaviour)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tvm_ternary.bench import ggml_peer
from tvm_ternary.bench.workloads import QUICK

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bench_quick")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_cpu.py"), "--quick",
                          "--out", str(out_dir)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((out_dir / "report.json").read_text()), (out_dir / "report.md").read_text(), out_dir


def test_every_workload_has_positive_times_for_every_present_peer(quick_report):
    report, _, _ = quick_report
    assert [r["workload"] for r in report["rows"]] == [w.name for w in QUICK]
    for row in report["rows"]:
        assert row["kernels"], row["workload"]           # tt.compile says what ran
        for peer, modes in row["times"].items():
            assert set(modes) == {"hot", "cold"}, (row["workload"], peer)
            for t in modes.values():
                assert 0 < t["min_ms"] <= t["median_ms"]
        assert "torch_fp32" in row["times"] and "ours" in row["times"]


def test_ratios_are_the_recorded_medians(quick_report):
    report, _, _ = quick_report
    for row in report["rows"]:
        for mode, ratios in row["speedup"].items():
            ours = row["times"]["ours"][mode]["median_ms"]
            assert set(ratios) == set(row["times"]) - {"ours", "footprint_read"}
            for peer, x in ratios.items():
                assert x == pytest.approx(row["times"][peer][mode]["median_ms"] / ours, rel=1e-12)
                best = row["times"][peer][mode]["min_ms"] / row["times"]["ours"][mode]["min_ms"]
                assert row["speedup_of_mins"][mode][peer] == pytest.approx(best, rel=1e-12)


def test_absent_peers_say_why(quick_report):
    report, _, _ = quick_report
    for row in report["rows"]:
        assert set(row["times"]) | set(row["absent"]) == {"ours", "footprint_read", "torch_fp32",
                                                          "torch_int8_dynamic", "ggml_TQ2_0", "ggml_TQ1_0"}
        if row["kind"] in ("conv", "model"):
            assert "torch_int8_dynamic" in row["absent"]     # quantize_dynamic: Linear only
        if not ggml_peer.available():
            assert "not installed" in row["absent"]["ggml_TQ2_0"]
        elif row["kind"] == "linear":
            assert "ggml_TQ2_0" in row["times"]


def test_roofline_is_measured_and_applied(quick_report):
    report, _, _ = quick_report
    roof = report["roofline"]
    for v in roof["bandwidth"].values():
        assert 0.5 < v["median_gbs"] <= v["best_gbs"] < 2000
    assert roof["int8_peak"] and all(1 < v["best_gmacs"] < 100_000 for v in roof["int8_peak"].values())
    for row in report["rows"]:
        for mode, r in row["roofline"].items():
            assert r["bound"] in ("memory", "compute")
            assert r["roofline_ms"] == max(r["memory_ms"], r["compute_ms"])
            want = 100 * r["roofline_ms"] / row["times"]["ours"][mode]["median_ms"]
            assert r["pct_of_roofline"] == pytest.approx(want)
            # the memory roof is the footprint read timed in the same rounds as ours
            read_ms = row["times"]["footprint_read"][mode]["median_ms"]
            assert r["read_gbs"] == pytest.approx(r["read_bytes"] / (read_ms * 1e6))
            assert 0.5 * row["bytes"] <= r["read_bytes"] <= row["bytes"]
        # the bound's inputs are the row's own counts
        hot = row["roofline"]["hot"]
        assert hot["memory_ms"] == pytest.approx(1e3 * row["bytes"] / (hot["read_gbs"] * 1e9))
        assert hot["compute_ms"] == pytest.approx(1e3 * row["macs"] / (hot["peak_gmacs"] * 1e9))


def test_markdown_has_every_row_and_the_breakdown(quick_report):
    report, md, out_dir = quick_report
    for row in report["rows"]:
        assert md.count(f"| {row['workload']} |") == 2      # hot and cold tables
    for row in report["rows"]:
        if row["kind"] in ("model", "ffn"):
            assert f"### {row['workload']}" in md
            assert row["layers"]["calls"]
    assert "## Roofline" in md and "GMAC/s" in md
    assert (out_dir / "speedup.png").stat().st_size > 0


def test_targets_are_checked_against_hot_medians(quick_report):
    report, _, _ = quick_report
    gemv = [r for r in report["rows"] if r["kind"] == "linear" and r["shape"][0] == 1]
    model = [r for r in report["rows"] if r["kind"] == "model"]
    assert len(report["targets"]) == 2 * len(gemv) + len(model)
    for goal in report["targets"]:
        row = next(r for r in report["rows"] if r["workload"] == goal["workload"])
        assert goal["measured_x"] == row["speedup"]["hot"][goal["vs"]]
        assert goal["met"] == (goal["measured_x"] >= goal["target_x"])
        assert goal["measured_x_of_mins"] == row["speedup_of_mins"]["hot"][goal["vs"]]


def test_render_redoes_the_same_markdown_from_report_json(quick_report, tmp_path):
    _, md, out_dir = quick_report
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_cpu.py"), "--render",
                          str(out_dir / "report.json"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "report.md").read_text() == md
    assert (tmp_path / "speedup.png").stat().st_size > 0
