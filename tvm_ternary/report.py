"""report.json + report.md writing shared by every command and experiment.

Every report.json records the git commit and tool versions (and, for hardware work, the
HwConfig hash) so a number can be traced back to what produced it.
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_TOOLS = ("torch", "numpy", "apache-tvm", "apache-tvm-ffi", "scikit-learn", "xgboost-cpu")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(**extra) -> dict:
    return {"git_commit": git_commit(), "tools": tool_versions(), "machine": platform.machine(), **extra}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out_dir: str | Path, data: dict, markdown: str) -> Path:
    """Write ``report.json`` (with provenance) and ``report.md``; return the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**data, "provenance": provenance()}, indent=2) + "\n")
    (out / "report.md").write_text(markdown.rstrip() + "\n")
    return out
