"""Accelerator benchmark: ResNet-18's ImageNet convolutions on the VTA-style accelerator.

    python scripts/bench_vta.py --out docs/results               # full search (minutes)
    python scripts/bench_vta.py --quick --out out/bench_vta      # tiny search (CI smoke test)

Per layer (C1-C11 of the old VTA benchmark, batch 1) on the ``default`` config (2-bit
ternary weights) and on the ``int8`` config (8-bit weights, same buffers and bus): the best
schedule of a seeded search over the lowering's schedule space, its cycles (cycle model),
GEMM-core utilization (useful MACs / (batch x block_in x block_out x cycles)), DRAM bytes
by memory type, energy breakdown (energy model), and the int8 / ternary energy ratio. Every
best program also runs once on the functional simulator against the integer reference.
Then the zero-block experiment (C8, C11 with 90% of their weight blocks zeroed at random)
and two whole models through ``compile_vta`` (fsim): the ResNet-18-style 32x32 model and the
transformer FFN block: exactness, fsim time, share of ternary MACs offloaded, host work left,
accelerator cycles and energy. Writes bench_vta.json (with provenance), bench_vta.md and bench_vta.png
into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import bench_vta_layers as L
from tvm_ternary.errors import BenchmarkError
from tvm_ternary.report import markdown_table, provenance
from vta_ext import HwConfig

CONFIGS = ("default", "int8")  # ternary, and the int8 comparison config
TARGET_MEAN_UTILIZATION = 0.80
OLD_VTA_BEST_UTILIZATION = 0.61  # the figure for the old VTA's best conv
TARGET_ZERO_BLOCK_RATIO = 0.20
TARGET_RESNET_FSIM_SECONDS = 30.0
SEED_CLAIM_ENERGY_X = 3.1  # "up to 3.1x better energy efficiency for ternary hardware"
ZERO_FRACTION = 0.9


def bench_layers(convs, hws: dict, args, rng) -> list[dict]:
    """One row per layer: weights drawn once, the same spec searched on every config."""
    per_layer = args.top + args.sample
    rows = []
    with tqdm(total=len(convs) * len(hws) * per_layer, desc="schedules", disable=args.quiet) as bar:
        for conv in convs:
            spec = L.layer_spec(conv, L.ternary_weights(conv, rng), rng)
            row = {"layer": conv.name, "shape": conv.shape(), "count_in_resnet18": conv.count,
                   "macs": conv.macs, "configs": {}}
            for name, hw in hws.items():
                best = L.search(spec, hw, args.top, args.sample, rng, bar)
                best["fsim"] = L.fsim_check(spec, hw, best["schedule"], rng)
                row["configs"][name] = best
            t, i8 = row["configs"]["default"], row["configs"]["int8"]
            row["energy_ratio_int8_over_ternary"] = i8["energy_pj"] / t["energy_pj"]
            row["cycle_ratio_int8_over_ternary"] = i8["cycles"] / t["cycles"]
            rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Means over the layers (C1 left out of the utilization mean) and per-inference sums
    (each shape once, and weighted by its count in ResNet-18)."""
    out = {"mean_excludes": [r["layer"] for r in rows if r["layer"] in L.EXCLUDED_FROM_MEAN]}
    for cfg in CONFIGS:
        in_mean = [r["configs"][cfg]["gemm_utilization"] for r in rows
                   if r["layer"] not in L.EXCLUDED_FROM_MEAN]
        out[cfg] = {
            "mean_gemm_utilization": statistics.fmean(in_mean) if in_mean else None,
            "best_gemm_utilization": max(in_mean) if in_mean else None,
            "cycles_each_shape_once": sum(r["configs"][cfg]["cycles"] for r in rows),
            "energy_pj_each_shape_once": sum(r["configs"][cfg]["energy_pj"] for r in rows),
            "cycles_per_inference": sum(r["configs"][cfg]["cycles"] * r["count_in_resnet18"] for r in rows),
            "energy_pj_per_inference": sum(r["configs"][cfg]["energy_pj"] * r["count_in_resnet18"]
                                           for r in rows),
        }
    out["energy_ratio_per_inference"] = (out["int8"]["energy_pj_per_inference"]
                                         / out["default"]["energy_pj_per_inference"])
    out["max_layer_energy_ratio"] = max(r["energy_ratio_int8_over_ternary"] for r in rows)
    out["per_inference_covers"] = ("the conv layers of ResNet-18 (ImageNet, batch 1) each at its "
                                   "count; no pooling, residual adds or fc")
    return out


def zero_block_experiment(names, hw: HwConfig, args, rng) -> list[dict]:
    """Each layer dense and with 90% of its weight blocks zero, each with its own best
    schedule (and the sparse layer also with the dense layer's best schedule)."""
    out = []
    for name in tqdm(names, desc="zero blocks", disable=args.quiet):
        conv = L.conv_by_name(name)
        dense_w = L.ternary_weights(conv, rng)
        sparse_w = L.zero_blocks(dense_w, hw.block_out, hw.block_in, ZERO_FRACTION, rng)
        dense_spec, sparse_spec = (L.layer_spec(conv, w, rng) for w in (dense_w, sparse_w))
        dense = L.search(dense_spec, hw, args.top, args.sample, rng)
        sparse = L.search(sparse_spec, hw, args.top, args.sample, rng)
        sparse["fsim"] = L.fsim_check(sparse_spec, hw, sparse["schedule"], rng)
        same = L.measure(sparse_spec, hw, L.Schedule(**dense["schedule"]))
        out.append({
            "layer": name, "shape": conv.shape(), "zero_fraction": ZERO_FRACTION,
            "dense": dense, "sparse": sparse, "sparse_with_dense_schedule": same,
            "cycle_ratio": sparse["cycles"] / dense["cycles"],
            "cycle_ratio_same_schedule": same["cycles"] / dense["cycles"],
            "weight_dma_ratio": sparse["dram_read_bytes"]["wgt"] / dense["dram_read_bytes"]["wgt"],
            "weight_dma_ratio_same_schedule": same["dram_read_bytes"]["wgt"] / dense["dram_read_bytes"]["wgt"],
            "energy_ratio": sparse["energy_pj"] / dense["energy_pj"],
        })
    return out


def resnet_fsim(width: float, repeats: int, seed: int) -> dict:
    """The ResNet-18-style 32x32 model through ``compile_vta`` (fsim backend)."""
    import torch

    from tvm_ternary import models

    torch.manual_seed(seed)
    model = models.resnet18_cifar(width=width).eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return {"model": f"resnet18_cifar(width={width})", **whole_model(model, x, repeats)}


def ffn_fsim(repeats: int, seed: int, d_model: int = 256, d_ff: int = 1024, tokens: int = 16) -> dict:
    """The transformer FFN block (both linears end in float ops: GELU, the block output)."""
    import torch

    from tvm_ternary import models

    torch.manual_seed(seed)
    model = models.transformer_ffn(d_model, d_ff).eval()
    x = torch.randn(1, tokens, d_model, generator=torch.Generator().manual_seed(seed))
    return {"model": f"transformer_ffn({d_model}, {d_ff})", **whole_model(model, x, repeats)}


def whole_model(model, x, repeats: int) -> dict:
    """Freeze ``model`` (twn, int8 activations), compile it for the accelerator (``default``,
    fsim backend) and time whole calls (host parts included): exact against the integer
    reference? Which share of the ternary MACs runs on the accelerator, and what the host
    still does for offloaded layers (float-output epilogues)."""
    import torch

    import tvm_ternary as tt
    from vta_ext.compile import compile_vta

    start = time.perf_counter()
    qm = tt.quant.ternarize(model, "twn", act="int8")
    tt.quant.calibrate(qm, [x])
    frozen = tt.quant.freeze(qm)
    freeze_s = time.perf_counter() - start
    start = time.perf_counter()
    cm = compile_vta(frozen, (x,), hw="default", backend="fsim")
    compile_s = time.perf_counter() - start
    times, y = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        y = cm(x)
        times.append(time.perf_counter() - start)
    s = cm.stats
    acc_rows = [r for r in s["layers"] if r["placement"] == "accelerator"]
    return {"input": list(x.shape), "method": "twn",
            "freeze_seconds": freeze_s, "compile_seconds": compile_s,
            "run_seconds_min": min(times), "run_seconds_median": statistics.median(times),
            "repeats": repeats, "exact_vs_reference": bool(torch.equal(y, tt.quant.run_reference(frozen, x))),
            "accelerator_layers": len(s["accelerator_layers"]), "host_layers": len(s["host_layers"]),
            "host_layer_reasons": sorted(set(s["host_layers"].values())),
            "residual_layers": sum(1 for r in acc_rows if r.get("residual_input")),
            "host_epilogue_layers": len(s["host_epilogues"]),
            "host_epilogue_elements": sum(e["elements"] for e in s["host_epilogues"].values()),
            "host_ops": s["host_ops"],
            "accelerator_mac_fraction": s["accelerator_mac_fraction"], "cycles": s["cycles"],
            "gemm_utilization": s["gemm_utilization"], "dram_bytes": s["dram_bytes"],
            "energy_pj": s["energy_pj"]}


def targets(summary: dict, zero: list[dict], resnet: dict | None) -> list[dict]:
    goals = [{"target": "mean GEMM-core utilization (C2-C11, ternary, best schedule)",
              "want": f">= {TARGET_MEAN_UTILIZATION}", "measured": summary["default"]["mean_gemm_utilization"],
              "met": summary["default"]["mean_gemm_utilization"] >= TARGET_MEAN_UTILIZATION}]
    for z in zero:
        goals.append({"target": f"{z['layer']} with 90% zero blocks: cycles / dense",
                      "want": f"<= {TARGET_ZERO_BLOCK_RATIO}", "measured": z["cycle_ratio"],
                      "met": z["cycle_ratio"] <= TARGET_ZERO_BLOCK_RATIO})
    if resnet is not None:
        t = resnet["run_seconds_median"]
        goals.append({"target": "ResNet-18-style 32x32 functional simulation (median call)",
                      "want": f"< {TARGET_RESNET_FSIM_SECONDS} s", "measured": t,
                      "met": t < TARGET_RESNET_FSIM_SECONDS and resnet["exact_vs_reference"]})
    goals.append({"target": "int8 / ternary energy per inference (seed claim: up to 3.1x)",
                  "want": f"compare with {SEED_CLAIM_ENERGY_X}x", "measured": summary["energy_ratio_per_inference"],
                  "met": None})
    return goals


# ------------------------------------------------------------------ report

def _kb(n: int) -> float:
    return n / 1024


def layer_table(rows: list[dict]) -> str:
    flat = []
    for r in rows:
        t, i8 = r["configs"]["default"], r["configs"]["int8"]
        rd = t["dram_read_bytes"]
        flat.append({"layer": r["layer"], "shape": r["shape"], "x": r["count_in_resnet18"],
                     "best knobs": t["knobs"], "cycles": t["cycles"], "util": t["gemm_utilization"],
                     "lead-in": t["lead_in_cycles"], "tail": t["tail_cycles"],
                     "inp KB": _kb(rd.get("inp", 0)), "wgt KB": _kb(rd.get("wgt", 0)),
                     "out KB": _kb(t["dram_write_bytes"].get("out", 0)),
                     "uop+par KB": _kb(rd.get("uop", 0) + rd.get("par", 0)),
                     "energy uJ": t["energy_pj"] / 1e6, "fsim ==": t["fsim"]["exact"],
                     "int8 cycles": i8["cycles"], "int8 util": i8["gemm_utilization"],
                     "int8 uJ": i8["energy_pj"] / 1e6, "int8/tern energy": r["energy_ratio_int8_over_ternary"]})
    return markdown_table(flat, list(flat[0]))


def energy_table(rows: list[dict]) -> str:
    flat = []
    for r in rows:
        for cfg in CONFIGS:
            b = r["configs"][cfg]["energy_breakdown_pj"]
            flat.append({"layer": r["layer"], "config": cfg,
                         **{k.replace("_pj", " uJ"): v / 1e6 for k, v in b.items()},
                         "total uJ": r["configs"][cfg]["energy_pj"] / 1e6})
    return markdown_table(flat, list(flat[0]))


def search_table(rows: list[dict]) -> str:
    flat = [{"layer": r["layer"], "config": cfg, "space": c["search"]["space"],
             "evaluated": c["search"]["evaluated"], "default knobs": c["search"]["default_knobs"],
             "default cycles": c["search"]["default_cycles"], "best knobs": c["knobs"],
             "best cycles": c["cycles"]}
            for r in rows for cfg, c in r["configs"].items()]
    return markdown_table(flat, list(flat[0]))


def zero_table(zero: list[dict]) -> str:
    flat = [{"layer": z["layer"], "shape": z["shape"], "dense cycles": z["dense"]["cycles"],
             "sparse cycles": z["sparse"]["cycles"], "cycles ratio": z["cycle_ratio"],
             "ratio, dense's schedule": z["cycle_ratio_same_schedule"],
             "weight DMA ratio": z["weight_dma_ratio"],
             "weight DMA ratio, dense's schedule": z["weight_dma_ratio_same_schedule"],
             "energy ratio": z["energy_ratio"],
             "skipped blocks": f"{z['sparse']['skipped_weight_blocks']}/"
                               f"{z['sparse']['skipped_weight_blocks'] + z['sparse']['weight_blocks']}",
             "sparse knobs": z["sparse"]["knobs"], "fsim ==": z["sparse"]["fsim"]["exact"]}
            for z in zero]
    return markdown_table(flat, list(flat[0])) if flat else "(not run)"


def markdown(report: dict) -> str:
    s, args = report["summary"], report["args"]
    goals = "\n".join(f"- {g['target']}: {g['measured']:.4g} (want {g['want']})"
                      + ("" if g["met"] is None else (": met" if g["met"] else ": NOT met"))
                      for g in report["targets"])
    resnet = "\n\n".join("(skipped: --no-resnet)" if m is None else whole_model_text(m)
                         for m in (report["resnet_fsim"], report.get("ffn_fsim")))
    d, i8 = s["default"], s["int8"]
    return f"""# Accelerator benchmark: ResNet-18 convolutions (ImageNet shapes, batch 1)

Layers C1-C11 as in the old VTA benchmark (apache/tvm
`vta/tests/python/integration/test_benchmark_topi_conv2d.py`, `resnet_wkls`, commit 3acde3e;
C1 is commented out there). Random ternary weights (40% zeros), requantize + ReLU epilogue,
symmetric scales. Configs: `default` (2-bit weights, {report['hw']['default']['hash'][:12]}) and
`int8` (8-bit weights, same buffers and bus, {report['hw']['int8']['hash'][:12]}). Cycles by the
cycle model, energy by the energy model (docs/cycle_energy.md: not calibrated against the RTL;
45 nm per-operation energies). Schedule search per layer and config: the {args['top']} best by
the lowering's estimate (the first is its default) + {args['sample']} drawn at random from the
rest of the space (seed {args['seed']}); best = least energy among the schedules within
{100 * L.CYCLE_TOLERANCE:g}% of the fewest cycles measured. Every best program was run once on
the functional simulator with a random input: "fsim ==" is equality with the integer reference.

## Targets

{goals}

## Per layer (ternary `default`; int8 columns with the int8 config's own best schedule)

Utilization = useful MACs / (1 x 16 x 16 x cycles). DRAM: inp/wgt/uop/par read, out written.

{layer_table(report['layers'])}

Mean utilization over {', '.join(r['layer'] for r in report['layers'] if r['layer'] not in s['mean_excludes'])}:
ternary {d['mean_gemm_utilization']:.3f} (best layer {d['best_gemm_utilization']:.3f}), int8
{i8['mean_gemm_utilization']:.3f}; old VTA: about {OLD_VTA_BEST_UTILIZATION} on its best conv.

Per inference (every conv layer of ResNet-18 at its count): ternary {d['cycles_per_inference']} cycles,
{d['energy_pj_per_inference'] / 1e6:.1f} uJ; int8 {i8['cycles_per_inference']} cycles,
{i8['energy_pj_per_inference'] / 1e6:.1f} uJ: int8 / ternary energy **{s['energy_ratio_per_inference']:.2f}x**
(largest per layer {s['max_layer_energy_ratio']:.2f}x; seed claim: up to {SEED_CLAIM_ENERGY_X}x).

"lead-in" / "tail": cycles before the first GEMM starts (first input, weight, micro-op and
parameter loads) and after the last GEMM ends (last epilogue and store): nothing overlaps
them, and they are most of the gap of the short 1x1 stride-2 layers (C4, C7, C10: 25 088
GEMM iterations each). C1 issues 16 input channels per block for its 3 (at most 3/16).

## Energy breakdown (uJ)

{energy_table(report['layers'])}

## Zero-block skipping (`default`, {int(100 * ZERO_FRACTION)}% of the 16x16 per-tap weight blocks zeroed at random)

{zero_table(report['zero_blocks'])}

## Whole models on the functional simulator (`compile_vta`, backend fsim): ResNet-18-style 32x32, transformer FFN

{resnet}

## Schedule search

{search_table(report['layers'])}

![utilization and energy](bench_vta.png)
"""


def whole_model_text(m: dict) -> str:
    reasons = "; ".join(m["host_layer_reasons"]) or "none"
    return (f"{m['model']}, input {m['input']}: median call {m['run_seconds_median']:.2f} s "
            f"(min {m['run_seconds_min']:.2f} s over {m['repeats']}), exact vs the integer "
            f"reference: {m['exact_vs_reference']}; compile {m['compile_seconds']:.1f} s, "
            f"freeze {m['freeze_seconds']:.1f} s. {m['accelerator_layers']} layers on the "
            f"accelerator (**{100 * m['accelerator_mac_fraction']:.0f}% of the ternary MACs**; "
            f"{m['residual_layers']} with the fused residual add), {m['host_layers']} on the host "
            f"(reasons: {reasons}). Host work left: the dequantize epilogue of "
            f"{m['host_epilogue_layers']} float-output layers ({m['host_epilogue_elements']} "
            f"elements, from their stored int32 accumulators), and the Relax ops "
            f"{', '.join(f'{k} x{v}' for k, v in sorted(m['host_ops'].items()))}. "
            f"Accelerator cost: {m['cycles']} cycles, utilization {m['gemm_utilization']:.3f}, "
            f"DRAM {m['dram_bytes'] / 1e6:.2f} MB, {m['energy_pj'] / 1e6:.1f} uJ.")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["layer"] for r in rows]
    xs = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for i, cfg in enumerate(CONFIGS):
        ax1.bar(xs + (i - 0.5) * 0.4, [r["configs"][cfg]["gemm_utilization"] for r in rows], 0.4,
                label=f"{cfg} ({'ternary' if cfg == 'default' else '8-bit'} weights)")
        ax2.bar(xs + (i - 0.5) * 0.4, [r["configs"][cfg]["energy_pj"] / 1e6 for r in rows], 0.4,
                label=cfg)
    ax1.axhline(TARGET_MEAN_UTILIZATION, color="green", linestyle="--", label="target mean 0.80")
    ax1.axhline(OLD_VTA_BEST_UTILIZATION, color="gray", linestyle=":", label="old VTA best 0.61")
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("GEMM-core utilization")
    ax1.set_title("utilization per layer (best schedule)")
    ax2.set_yscale("log")
    ax2.set_ylabel("energy per layer (uJ, log)")
    ax2.set_title("energy: ternary vs int8 config")
    for ax in (ax1, ax2):
        ax.set_xticks(xs, names)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", "-o", default="out/bench_vta", help="folder for bench_vta.{json,md,png}")
    p.add_argument("--quick", action="store_true",
                   help="tiny search (default schedule + 1 random), small ResNet for the fsim timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=24, help="schedules ranked best by the estimate")
    p.add_argument("--sample", type=int, default=40, help="schedules drawn at random from the rest")
    p.add_argument("--only", nargs="*", help="layer names (default: C1-C11)")
    p.add_argument("--no-resnet", action="store_true",
                   help="skip the whole models (32x32 ResNet, FFN block) on fsim")
    p.add_argument("--resnet-width", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3, help="timed calls of the ResNet model")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    try:
        return run(args)
    except BenchmarkError as err:
        print(f"bench_vta: {type(err).__name__}: {err}", file=sys.stderr)
        return 2


def run(args) -> int:
    if args.top < 1 or args.sample < 0:
        raise BenchmarkError(f"--top must be >= 1 and --sample >= 0, got {args.top} and {args.sample}")
    if args.quick:
        args.top, args.sample, args.repeats = 1, 1, 1
        args.resnet_width = min(args.resnet_width, 0.125)
    start = time.perf_counter()
    convs = [L.conv_by_name(n) for n in args.only] if args.only else list(L.RESNET18_IMAGENET_CONVS)
    hws = {name: HwConfig.load(name) for name in CONFIGS}
    rng = np.random.default_rng(args.seed)
    rows = bench_layers(convs, hws, args, rng)
    summary = summarize(rows)
    zero_names = [n for n in L.ZERO_BLOCK_LAYERS if any(c.name == n for c in convs)]
    zero = zero_block_experiment(zero_names, hws["default"], args, rng)
    resnet = None if args.no_resnet else resnet_fsim(args.resnet_width, args.repeats, args.seed)
    ffn = None if args.no_resnet else ffn_fsim(args.repeats, args.seed)
    report = {"layers": rows, "summary": summary, "zero_blocks": zero, "resnet_fsim": resnet,
              "ffn_fsim": ffn,
              "targets": targets(summary, zero, resnet), "args": vars(args),
              "hw": {n: {"hash": hw.hash, **hw.to_dict()} for n, hw in hws.items()},
              "layer_source": "apache/tvm vta/tests/python/integration/test_benchmark_topi_conv2d.py "
                              "resnet_wkls (commit 3acde3efd902125ebaa2b9fb37aced668106686e)",
              "seconds": time.perf_counter() - start}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / "bench_vta.png")
    md = markdown(report)
    (out / "bench_vta.json").write_text(
        json.dumps({**report, "provenance": provenance(hw_hash={n: hw.hash for n, hw in hws.items()})},
                   indent=2) + "\n")
    (out / "bench_vta.md").write_text(md.rstrip() + "\n")
    print(md)
    print(f"report: {out / 'bench_vta.md'} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
