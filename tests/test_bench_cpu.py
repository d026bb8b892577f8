"""bench_cpu --quick runs and reports every peer (no timing is asserted: benchmarks measure,
tests check behaviour)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_cpu_quick_reports_peers(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_cpu.py"), "--quick",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["copy_bandwidth_gbs"] > 0
    for row in report["rows"]:
        for peer in ("ours", "torch_fp32"):
            assert 0 < row[peer]["min_ms"] <= row[peer]["median_ms"]
    assert any("torch_int8_dynamic" in row for row in report["rows"])
    assert (tmp_path / "speedup.png").stat().st_size > 0
