"""CPU benchmark: our compiled ternary layers against peers measured in the same run.

    python scripts/bench_cpu.py --out out/bench_cpu            # all workloads
    python scripts/bench_cpu.py --quick --out out/bench_quick  # small shapes, few repeats

Peers: torch fp32 (``nn.Linear`` / ``nn.Conv2d``), torch int8 dynamic quantization
(``torch.ao.quantization.quantize_dynamic``, Linear only), and this machine's memory
roofline for GEMV (a measured copy bandwidth; the time to read the layer's packed 2-bit
weights once; compute-bound workloads report none until the int8 peak microbenchmark exists). Times are min / median over repeats; ratios compare medians. Writes report.json,
report.md and speedup.png. The machines are shared and noisy: read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import tvm_ternary as tt
from tvm_ternary.report import markdown_table, write_report

# name -> (kind, shape): linear (batch, in, out); conv (batch, cin, cout, hw, k, stride)
WORKLOADS = {
    "gemv_4096": ("linear", (1, 4096, 4096)),
    "gemm_4096x32": ("linear", (32, 4096, 4096)),
    "gemv_11008x4096": ("linear", (1, 4096, 11008)),
    "resnet_conv_56_64": ("conv", (1, 64, 64, 56, 3, 1)),
    "resnet_conv_28_128": ("conv", (1, 128, 128, 28, 3, 1)),
}
QUICK = {
    "gemv_512": ("linear", (1, 512, 512)),
    "conv_14_16": ("conv", (1, 16, 16, 14, 3, 1)),
}


def timed(fn, repeats: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"min_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times)}


def copy_bandwidth_gbs(n_bytes: int = 256 << 20, repeats: int = 5) -> float:
    """Single-thread memory copy bandwidth (read + write), GB/s."""
    src = np.ones(n_bytes, dtype=np.uint8)
    dst = np.empty_like(src)
    best = min(timed(lambda: np.copyto(dst, src), repeats, warmup=1)["min_ms"] for _ in range(1))
    return 2 * n_bytes / (best * 1e-3) / 1e9


def _float_layer(kind: str, shape) -> tuple[nn.Module, torch.Tensor]:
    if kind == "linear":
        batch, k, n = shape
        return nn.Linear(k, n, bias=False), torch.randn(batch, k)
    batch, cin, cout, hw, k, stride = shape
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), torch.randn(batch, cin, hw, hw)


def _ternary_compiled(layer: nn.Module, x: torch.Tensor):
    """Our path: a one-layer ternary model, frozen and compiled for this CPU."""
    model = nn.Sequential(layer)
    qm = tt.quant.ternarize(model, "twn")
    tt.quant.calibrate(qm, [x])
    return tt.compile(tt.quant.freeze(qm), (x,), target="cpu")


def bench(name: str, kind: str, shape, repeats: int, bandwidth: float) -> dict:
    torch.manual_seed(0)
    layer, x = _float_layer(kind, shape)
    layer.eval()
    row = {"workload": name, "kind": kind, "shape": list(shape)}
    with torch.no_grad():
        row["torch_fp32"] = timed(lambda: layer(x), repeats)
        if kind == "linear":
            q = torch.ao.quantization.quantize_dynamic(nn.Sequential(layer), {nn.Linear}, dtype=torch.qint8)
            row["torch_int8_dynamic"] = timed(lambda: q(x), repeats)
    cm = _ternary_compiled(layer, x)
    row["ours"] = timed(lambda: cm(x), repeats)
    ours = row["ours"]["median_ms"]
    row["speedup_vs_fp32"] = row["torch_fp32"]["median_ms"] / ours
    if "torch_int8_dynamic" in row:
        row["speedup_vs_int8"] = row["torch_int8_dynamic"]["median_ms"] / ours
    if kind == "linear" and shape[0] == 1:
        # A GEMV streams its weights once: reading the 2-bit packed weights bounds it.
        weight_bytes = layer.weight.numel() / 4
        row["roofline_ms"] = 1e3 * weight_bytes / (bandwidth / 2 * 1e9)  # read = half a copy
        row["pct_of_roofline"] = 100 * row["roofline_ms"] / ours
    # GEMM and conv are compute-bound: their roofline needs the int8 multiply-add peak
    # microbenchmark, not written yet, so none is reported rather than a wrong one.
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["workload"] for r in rows]
    ax.bar(names, [r["speedup_vs_fp32"] for r in rows], color="tab:blue")
    ax.axhline(1.0, color="gray", linestyle="--", label="torch fp32")
    ax.set_ylabel("speedup vs torch fp32 (median)")
    ax.set_yscale("log")
    ax.set_title("ternary layers compiled by tvm-ternary")
    ax.legend()
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", "-o", default="out/bench_cpu")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="small shapes, 5 repeats")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    workloads, repeats = (QUICK, 5) if args.quick else (WORKLOADS, args.repeats)
    bandwidth = copy_bandwidth_gbs(32 << 20 if args.quick else 256 << 20)
    rows = [bench(name, kind, shape, repeats, bandwidth) for name, (kind, shape) in workloads.items()]
    flat = [{"workload": r["workload"], "ours_ms": r["ours"]["median_ms"],
             "torch_fp32_ms": r["torch_fp32"]["median_ms"],
             "torch_int8_ms": r.get("torch_int8_dynamic", {}).get("median_ms", ""),
             "x_fp32": r["speedup_vs_fp32"], "x_int8": r.get("speedup_vs_int8", ""),
             "roofline_ms": r.get("roofline_ms", "n/a"), "pct_roofline": r.get("pct_of_roofline", "n/a")}
            for r in rows]
    cols = list(flat[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / "speedup.png")
    md = (f"# CPU benchmark\n\nMedians of {repeats} runs, {args.threads} threads; copy bandwidth "
          f"{bandwidth:.1f} GB/s. Ours: TVM with the portable (unscheduled) ternary lowering.\n\n"
          + markdown_table(flat, cols) + "\n\n![speedup](speedup.png)\n")
    write_report(out, {"rows": rows, "copy_bandwidth_gbs": bandwidth, "target": tt.target.host_target()}, md)
    print(markdown_table(flat, cols))
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
