"""CPU benchmark: our compiled ternary models against peers measured in the same run.

    python scripts/bench_cpu.py --out docs/results/bench_cpu   # all workloads (minutes)
    python scripts/bench_cpu.py --quick --out out/bench_quick  # small shapes, few repeats

Ours is whatever ``tt.compile(..., target="cpu")`` produces (the kernels it chose are in
each row's ``kernels``). Peers: torch fp32, torch int8 dynamic quantization
(``quantize_dynamic``, Linear layers only, so none for CNNs), llama.cpp's ternary types
TQ2_0 / TQ1_0 through ggml-python (optional: ``pip install .[bench]``; "not installed"
otherwise), and this machine's roofline from microbenchmarks in the same run (memory
bandwidth, int8 multiply-add peak; ``tvm_ternary.bench.roofline``). Every time is the min
and median of repeats taken in rounds across ours and the peers (``timing.timed_rounds``),
hot cache (one untimed call first) and cold cache (a buffer larger than the last-level
cache read before the call); ratios compare medians. Whole models also
get a per-kernel time breakdown. Writes report.json, report.md and speedup.png. The
machine is shared and noisy: read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

# Thread pools sleep when idle unless --spin: torch's OpenMP and TVM's pool spin-wait by
# default, and on a shared 2-core machine a spinning pool left over from one runtime (or
# from other users' processes) stalled the next runtime's calls by 10-20 ms (measured: a
# 512x512 GEMV in torch took 12-24 ms instead of 0.03 ms). Sleeping pools pay a wake-up per
# call instead, under the same rule for every runtime. Read by the libraries at load: set
# before importing them.
IDLE_POLICY = {"OMP_WAIT_POLICY": "PASSIVE", "TVM_THREAD_POOL_SPIN_COUNT": "0"}
if __name__ == "__main__" and "--spin" not in sys.argv:
    os.environ.update(IDLE_POLICY)

import torch  # noqa: E402

import tvm_ternary as tt  # noqa: E402
from tvm_ternary.bench import bandwidth, ggml_peer, layer_profile, peers, roofline  # noqa: E402
from tvm_ternary.bench.timing import CacheEvictor, timed_rounds  # noqa: E402
from tvm_ternary.bench.workloads import FULL, QUICK, Workload, count  # noqa: E402
from tvm_ternary.report import markdown_table, write_report  # noqa: E402

# Read of a buffer the size of the kernel's bytes, timed among the runners: the memory roof.
FOOTPRINT_READ = "footprint_read"
PEERS = ("torch_fp32", "torch_int8_dynamic", "ggml_TQ2_0", "ggml_TQ1_0")
# The targets: (workload kind predicate, peer, minimum speedup of our median).
TARGETS = [("gemv", "torch_fp32", 8.0), ("gemv", "torch_int8_dynamic", 2.5), ("model", "torch_fp32", 3.0)]


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _runners(w: Workload, module, x, counts: dict, threads: int):
    """(compiled model, {name: callable}, {absent peer: why}) for one workload."""
    qm, frozen = peers.ternarize_frozen(module, x)
    cm, ours = peers.ours(frozen, x)
    run = {"ours": ours, "torch_fp32": peers.torch_fp32(module, x)}
    absent = {}
    int8 = peers.torch_int8_dynamic(module, x, counts["linear_mac_share"])
    if int8 is None:
        absent["torch_int8_dynamic"] = "quantize_dynamic covers Linear only (CNN)"
    else:
        run["torch_int8_dynamic"] = int8
    weight = peers.ternary_linear_weight(qm) if w.kind == "linear" else None
    for type_name in ggml_peer.TYPES:
        name = f"ggml_{type_name}"
        if not ggml_peer.available():
            absent[name] = "not installed (pip install .[bench])"
        elif weight is None:
            absent[name] = "single Linear workloads only"
        elif not ggml_peer.supports(weight.shape[1]):
            absent[name] = f"in_features not a multiple of {ggml_peer.SUPER_BLOCK}"
        else:
            run[name] = peers.ggml_linear(weight, x, type_name, threads)
    return cm, run, absent


def _roofline(counts: dict, times: dict, n_read: int, roof: dict) -> dict:
    """Bound and % of roofline of our median, per cache mode. Memory: the median time of
    reading a buffer of the kernel's footprint, timed in the same rounds as ours (so after
    the same peers, in the same cache state); compute: the best int8 peak."""
    peak = roofline.peak_gmacs(roof)
    out = {}
    for mode, t in times["ours"].items():
        gbs = n_read / (times[FOOTPRINT_READ][mode]["median_ms"] * 1e6)
        b = roofline.bound(counts["bytes"], counts["macs"], gbs, peak)
        out[mode] = {**b, "read_gbs": gbs, "read_bytes": n_read, "peak_gmacs": peak,
                     "pct_of_roofline": roofline.pct(b["roofline_ms"], t["median_ms"])}
    return out


def bench(w: Workload, repeats: int, threads: int, roof: dict, evictor) -> dict:
    module, x = w.build()
    counts = count(module, x)
    cm, run, absent = _runners(w, module, x, counts, threads)
    run[FOOTPRINT_READ], n_read = bandwidth.reader(int(counts["bytes"]), threads)
    times = timed_rounds(run, repeats, evictor)
    speedup, speedup_of_mins = ({mode: {p: times[p][mode][stat] / times["ours"][mode][stat]
                                        for p in PEERS if p in times and mode in times[p]}
                                 for mode in times["ours"]} for stat in ("median_ms", "min_ms"))
    row = {"workload": w.name, "kind": w.kind, "shape": list(w.shape), **counts,
           "kernels": cm.stats.get("kernels", []), "times": times, "speedup": speedup,
           "speedup_of_mins": speedup_of_mins,
           "absent": absent, "roofline": _roofline(counts, times, n_read, roof)}
    if w.kind in ("model", "ffn"):
        row["layers"] = layer_profile.profile(cm, [x], repeats)
    print(f"{w.name}: ours {times['ours']['hot']['median_ms']:.3f} ms hot, "
          + ", ".join(f"x{v:.2f} vs {p}" for p, v in speedup["hot"].items()), flush=True)
    return row


def targets(rows: list[dict]) -> list[dict]:
    out = []
    for kind, peer, minimum in TARGETS:
        for r in rows:
            applies = (kind == "gemv" and r["kind"] == "linear" and r["shape"][0] == 1) or r["kind"] == kind
            if applies and peer in r["speedup"]["hot"]:
                got = r["speedup"]["hot"][peer]
                out.append({"workload": r["workload"], "vs": peer, "target_x": minimum,
                            "measured_x": got, "met": got >= minimum,
                            "measured_x_of_mins": r["speedup_of_mins"]["hot"][peer]})
    return out


def _cell(row: dict, peer: str, mode: str) -> str:
    """ "median (min)" in ms, or why the peer is absent."""
    t = row["times"].get(peer, {}).get(mode)
    if t:
        return f"{t['median_ms']:.4g} ({t['min_ms']:.4g})"
    return "n/a" if peer in row["absent"] else ""


def _ratio(row: dict, peer: str, mode: str) -> str:
    if peer not in row["speedup"][mode]:
        return "n/a"
    return f"{row['speedup'][mode][peer]:.3g} ({row['speedup_of_mins'][mode][peer]:.3g})"


def timing_table(rows: list[dict], mode: str) -> str:
    flat = []
    for r in rows:
        if mode not in r["times"]["ours"]:
            continue
        roof = r["roofline"][mode]
        flat.append({"workload": r["workload"], "ours_ms": _cell(r, "ours", mode),
                     **{f"{p}_ms": _cell(r, p, mode) for p in PEERS},
                     **{f"x_{p}": _ratio(r, p, mode) for p in PEERS},
                     "bound": roof["bound"], "roofline_ms": roof["roofline_ms"],
                     "pct_roofline": f"{roof['pct_of_roofline']:.3g} "
                                     f"({roofline.pct(roof['roofline_ms'], r['times']['ours'][mode]['min_ms']):.3g})"})
    return markdown_table(flat, list(flat[0])) if flat else "(none)"


def roofline_table(roof: dict) -> str:
    rows = [{"measure": k, "best": v["best_gbs"], "median": v["median_gbs"], "unit": "GB/s"}
            for k, v in roof["bandwidth"].items()]
    rows += [{"measure": k, "best": v["best_gmacs"], "median": v["median_gmacs"], "unit": "GMAC/s"}
             for k, v in roof["int8_peak"].items()]
    return markdown_table(rows, ["measure", "best", "median", "unit"])


def layers_section(rows: list[dict], top: int = 12) -> str:
    parts = []
    for r in rows:
        if "layers" not in r:
            continue
        prof = r["layers"]
        calls_ms = sum(prof["by_symbol"].values())
        table = [{"kernel": k, "ms": v, "share_of_calls_%": 100 * v / calls_ms}
                 for k, v in list(prof["by_symbol"].items())[:top]]
        parts.append(f"### {r['workload']}\n\nOne instrumented call: {prof['instrumented_total_ms']:.3f} ms "
                     f"wall, of which {calls_ms:.3f} ms inside the {len(prof['calls'])} VM calls (kernels "
                     f"{prof['kernels_ms']:.3f} ms); the rest is the VM's interpreter, the instrument's "
                     "Python callbacks and, on a loaded machine, time the process was not running. "
                     f"Top {top} by time:\n\n" + markdown_table(table, ["kernel", "ms", "share_of_calls_%"]))
    return "\n\n".join(parts)


def kernels_section(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        impls = Counter(k.split(": ", 1)[-1] for k in r["kernels"])
        lines.append(f"- {r['workload']}: " + ", ".join(f"{n} x{c}" for n, c in impls.items()))
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = [m for m in ("hot", "cold") if any(m in r["speedup"] for r in rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
    names = [r["workload"] for r in rows]
    xs = np.arange(len(rows))
    for ax, mode in zip(axes[0], modes):
        for i, peer in enumerate(PEERS):
            vals = [r["speedup"].get(mode, {}).get(peer, np.nan) for r in rows]
            ax.bar(xs + (i - 1.5) * 0.2, vals, 0.2, label=f"vs {peer}")
        ax.axhline(1.0, color="gray", linestyle="--")
        ax.set_yscale("log")
        ax.set_xticks(xs, names, rotation=25, ha="right")
        ax.set_ylabel("our speedup (median ratio)")
        ax.set_title(f"{mode} cache")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(report: dict) -> str:
    """report.md from the data of report.json (``--render`` redoes it from a saved file)."""
    rows, roof = report["rows"], report["roofline"]
    cold = f"cold = {report['evict_bytes'] >> 20} MiB read before each call" if report["evict_bytes"] else "no cold runs"
    pools = "spin-waiting (defaults)" if report["thread_pools"] == "spin" else f"sleeping when idle ({report['thread_pools']})"
    met = "\n".join(f"- {g['workload']} vs {g['vs']}: x{g['measured_x']:.2f} (ratio of mins "
                    f"x{g['measured_x_of_mins']:.2f}; target x{g['target_x']}): {'met' if g['met'] else 'NOT met'}"
                    for g in report["targets"])
    failed = "".join(f"\n- {f['workload']}: {f['error'][:300]}" for f in report["failed"])
    return (f"# CPU benchmark\n\nMedian and min of {report['repeats']} runs, {report['threads']} threads, "
            f"{cold}. Thread pools {pools}. Load average before / after: {report['load_before']} / "
            f"{report['load_after']} (shared 2-core machine).\n"
            f"Target: {report['target']}. ggml-python: {'installed' if report['ggml_installed'] else 'not installed'}.\n\n"
            f"## Roofline (measured in this run)\n\n{roofline_table(roof)}\n\n"
            "% of roofline = max(bytes / read bandwidth, MACs / best int8 peak) / our time (median, "
            "and min in parentheses); bytes = 2-bit weights + float32 input and output. Read "
            "bandwidth: the median of reading a buffer of that size on the same threads, timed in "
            "the same rounds as ours (hot: after the same peers; cold: after the same eviction).\n\n"
            "Times: median (min) in ms. Speedups x_peer = peer time / our time: ratio of medians "
            "(ratio of mins); the min is the best estimate of each runner's uncontended speed when "
            "other processes load the machine.\n\n"
            f"## Hot cache\n\n{timing_table(rows, 'hot')}\n\n## Cold cache\n\n{timing_table(rows, 'cold')}\n\n"
            f"## Targets (hot medians)\n\n{met}\n\n## Kernels chosen by tt.compile\n\n{kernels_section(rows)}\n\n"
            f"## Per-kernel breakdown\n\n{layers_section(rows)}\n\n![speedup](speedup.png)\n"
            + (f"\n## Failed workloads\n{failed}\n" if failed else ""))


def render(report_json: Path, out: Path) -> None:
    """Rewrite report.md and speedup.png of ``out`` from a saved report.json."""
    import json

    report = json.loads(report_json.read_text())
    report["targets"] = targets(report["rows"])  # as the run computed them, from its rows
    out.mkdir(parents=True, exist_ok=True)
    plot(report["rows"], out / "speedup.png")
    (out / "report.md").write_text(markdown(report))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", "-o", default="out/bench_cpu")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="small shapes, 5 repeats")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-cold", action="store_true", help="skip the cold-cache runs")
    p.add_argument("--spin", action="store_true",
                   help="keep the runtimes' spin-waiting thread pools (fast when the machine is idle)")
    p.add_argument("--only", nargs="*", help="workload names to run (default: all)")
    p.add_argument("--render", metavar="REPORT_JSON", help="only redo report.md and the plot from a saved report.json")
    args = p.parse_args(argv)
    if args.render:
        render(Path(args.render), Path(args.out))
        return 0
    torch.set_num_threads(args.threads)
    # read when TVM's pool first runs a kernel, which is after this (tvm_ternary's import
    # only set a default)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    workloads, repeats = (QUICK, 5) if args.quick else (FULL, args.repeats)
    if args.only:
        workloads = [w for w in workloads if w.name in args.only]
    load_before = _load()
    roof = roofline.measure(args.threads, quick=args.quick)
    evictor = None if args.no_cold else CacheEvictor(args.threads)
    rows, failed = [], []
    for w in workloads:
        try:
            rows.append(bench(w, repeats, args.threads, roof, evictor))
        except Exception as err:  # noqa: BLE001  (one workload failing must not lose the others)
            print(f"{w.name}: FAILED: {type(err).__name__}: {err}", flush=True)
            failed.append({"workload": w.name, "error": f"{type(err).__name__}: {err}"[:2000]})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / "speedup.png")
    report = {"rows": rows, "failed": failed, "roofline": roof, "targets": targets(rows),
              "threads": args.threads, "repeats": repeats, "evict_bytes": evictor.bytes if evictor else 0,
              "load_before": load_before, "load_after": _load(),
              "thread_pools": "spin" if args.spin else IDLE_POLICY,
              "ggml_installed": ggml_peer.available(), "target": tt.target.host_target()}
    md = markdown(report)
    write_report(out, report, md)
    print(md)
    print(f"report: {out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
