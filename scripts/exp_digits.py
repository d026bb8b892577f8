"""Every ternarization method on scikit-learn's digits: accuracy, sparsity, model size.

    python scripts/exp_digits.py --out out/exp_digits            # full table (3 seeds)
    python scripts/exp_digits.py --quick --out out/exp_quick     # few epochs, one seed (CI)

Writes report.json + report.md (median over seeds, integer-model accuracy from the frozen
model, which equals the numpy reference bit for bit) and sparsity_accuracy.png (sparse and
EC2T at several sparsity settings). Fixed stratified split; one test image is 0.22 points.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from tvm_ternary import models
from tvm_ternary.data import load_digits_split
from tvm_ternary.quant import calibrate, freeze
from tvm_ternary.quant.recipes import float_activation, run_recipe
from tvm_ternary.quant.train import TrainConfig, accuracy, entropy_bits, fit, model_bits, weight_sparsity
from tvm_ternary.report import markdown_table, write_report

# (row label, method, recipe options)
RUNS = [
    ("twn", "twn", {}),
    ("ttq", "ttq", {}),
    ("tgauss", "tgauss", {}),
    ("absmean", "absmean", {}),
    ("fatnn (ternary acts)", "fatnn", {}),
    ("sparse 90%", "sparse", {"sparsity": 0.9}),
    ("ec2t", "ec2t", {}),
    ("ec2t x1.5 super-net", "ec2t", {"width": 1.5}),
    ("teacher_student (ternary acts)", "teacher_student", {}),
]
SWEEP = [("sparse", {"sparsity": s}) for s in (0.5, 0.8, 0.9, 0.95, 0.98)] + \
        [("ec2t", {"lambda_divider": d}) for d in (0.1, 0.3, 0.6, 1.0)]


def _float_model(kind: str, act: str, width: float, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "cnn":
        return models.digits_cnn(width=width, act=act)
    return models.digits_mlp(width=width, act=act, dropout=0.2 if act != "relu" else 0.0)


def run_one(kind, label, method, opts, act, data, seed, fp_epochs, q_epochs, float_cache):
    x_tr, y_tr, x_te, y_te = data
    width = opts.get("width", 1.0)
    key = (kind, act, width, seed)
    if key not in float_cache:
        fp = _float_model(kind, act, width, seed)
        fit(fp, x_tr, y_tr, TrainConfig(epochs=fp_epochs, lr=3e-3, seed=seed))
        float_cache[key] = fp
    fp = float_cache[key]
    cfg = TrainConfig(epochs=q_epochs, lr=1e-3, seed=seed)
    qm, info = run_recipe(method, fp, x_tr, y_tr, cfg, **opts)
    calibrate(qm, [x_tr])
    frozen = freeze(qm)
    with torch.no_grad():
        int_acc = float((frozen(x_te).argmax(1) == y_te).float().mean())
    return {"model": kind, "method": label, "seed": seed,
            "float_acc": accuracy(fp, x_te, y_te), "ternary_acc": accuracy(qm, x_te, y_te),
            "integer_acc": int_acc, "weight_sparsity": weight_sparsity(qm),
            "model_kbit": model_bits(qm) / 1000, "entropy_kbit": entropy_bits(qm) / 1000,
            "float_kbit": model_bits(fp) / 1000, "host_layers": frozen.host_layers, **info}


def median_rows(rows: list[dict], keys: tuple) -> list[dict]:
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for group in groups.values():
        med = {k: group[0][k] for k in keys}
        for k in ("float_acc", "ternary_acc", "integer_acc", "weight_sparsity", "model_kbit",
                  "entropy_kbit", "float_kbit"):
            med[k] = statistics.median(r[k] for r in group)
        med["vs_float_points"] = 100 * (med["integer_acc"] - med["float_acc"])
        med["seeds"] = len(group)
        out.append(med)
    return out


def plot_sweep(rows: list[dict], path: Path) -> None:
    """Median over seeds per setting, with min-max bars: sparsity vs integer accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, knob, marker in (("sparse", "target_sparsity", "o"), ("ec2t", "lambda_divider", "s")):
        settings: dict = {}
        for r in rows:
            if r["method"] == method:
                settings.setdefault(r[knob], []).append(r)
        pts = []
        for group in settings.values():
            acc = [100 * r["integer_acc"] for r in group]
            pts.append((statistics.median(r["weight_sparsity"] for r in group),
                        statistics.median(acc), min(acc), max(acc)))
        if pts:
            pts.sort()
            xs, med, lo, hi = zip(*pts)
            err = [[m - a for m, a in zip(med, lo)], [b - m for m, b in zip(med, hi)]]
            ax.errorbar(xs, med, yerr=err, marker=marker, capsize=3, label=f"{method} (median, min-max)")
    fp = [100 * r["float_acc"] for r in rows]
    if fp:
        ax.axhline(statistics.median(fp), color="gray", linestyle="--", label="float")
    ax.set_xlabel("weight sparsity")
    ax.set_ylabel("test accuracy (%), integer model")
    ax.set_title("digits CNN: sparsity vs accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", "-o", default="out/exp_digits")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    p.add_argument("--fp-epochs", type=int, default=40)
    p.add_argument("--q-epochs", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="3+2 epochs, seed 0, CNN only, no sweep")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.models, args.fp_epochs, args.q_epochs = [0], ["cnn"], 3, 2
    torch.set_num_threads(2)
    d = load_digits_split()
    data = tuple(torch.from_numpy(d[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    start = time.time()
    jobs = [(kind, label, method, opts, float_activation(method), seed)
            for kind in args.models for label, method, opts in RUNS for seed in args.seeds]
    sweep = [] if args.quick else [(m, o, s) for m, o in SWEEP for s in args.seeds]
    rows, sweep_rows, cache = [], [], {}
    for kind, label, method, opts, act, seed in tqdm(jobs, desc="methods", disable=args.quiet):
        rows.append(run_one(kind, label, method, opts, act, data, seed, args.fp_epochs, args.q_epochs, cache))
    for method, opts, seed in tqdm(sweep, desc="sparsity sweep", disable=args.quiet):
        sweep_rows.append(run_one("cnn", method, method, opts, float_activation(method), data, seed,
                                  args.fp_epochs, args.q_epochs, cache))
    table = median_rows(rows, ("model", "method"))
    cols = ["model", "method", "float_acc", "ternary_acc", "integer_acc", "vs_float_points",
            "weight_sparsity", "model_kbit", "entropy_kbit", "float_kbit", "seeds"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# Ternarization methods on digits\n\nMedian over seeds {args.seeds}; "
          f"{args.fp_epochs} float + {args.q_epochs} ternary epochs; {time.time() - start:.0f} s.\n",
          markdown_table(table, cols)]
    if sweep_rows:
        plot_sweep(sweep_rows, out / "sparsity_accuracy.png")
        md += ["\n## Sparsity sweep (CNN)\n", markdown_table(
            [{k: r.get(k, "") for k in ("method", "seed", "weight_sparsity", "integer_acc",
                                        "target_sparsity", "lambda_divider")} for r in sweep_rows],
            ["method", "seed", "weight_sparsity", "integer_acc", "target_sparsity", "lambda_divider"]),
            "\n![sparsity vs accuracy](sparsity_accuracy.png)"]
    write_report(out, {"table": table, "runs": rows, "sweep": sweep_rows, "args": vars(args)}, "\n".join(md))
    if not args.quiet:
        print(markdown_table(table, cols))
    print(f"report: {out / 'report.md'} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
