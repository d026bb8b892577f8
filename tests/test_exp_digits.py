"""The digits experiment's few-epoch variant runs end to end and writes its table."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_exp_digits_quick(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "exp_digits.py"), "--quick", "-q",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    methods = {row["method"] for row in report["table"]}
    assert {"twn", "ttq", "tgauss", "absmean", "sparse 90%", "ec2t"} <= methods
    for row in report["runs"]:
        assert row["ternary_acc"] > 0.1, row  # trained, better than chance
    assert "| method |" in (tmp_path / "report.md").read_text()
