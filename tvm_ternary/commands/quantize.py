"""``tternary quantize``: the digits demo of the quantization library."""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from tvm_ternary import models
from tvm_ternary.data import load_digits_split
from tvm_ternary.quant import calibrate, freeze, run_reference
from tvm_ternary.quant.recipes import float_activation, recipe_epochs, run_recipe
from tvm_ternary.quant.train import TrainConfig, accuracy, fit, model_bits, weight_sparsity
from tvm_ternary.report import markdown_table, write_report


@torch.no_grad()
def _reference_accuracy(frozen, x, y) -> float:
    return float((run_reference(frozen, x).argmax(dim=1) == y).float().mean())


def run_quantize(args) -> int:
    torch.manual_seed(args.seed)
    data = {k: torch.from_numpy(v) for k, v in load_digits_split().items()}
    x_tr, y_tr, x_te, y_te = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    opts = {} if args.act == "default" else {"act": None if args.act == "none" else args.act}
    fp = getattr(models, args.model)(act=float_activation(args.method))
    q_cfg = TrainConfig(epochs=args.qat_epochs, lr=1e-3, seed=args.seed)
    n_layers = sum(1 for m in fp.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    start = time.time()
    bar = tqdm(total=args.epochs + recipe_epochs(args.method, q_cfg, n_layers),
               desc=f"{args.model}/{args.method}", unit="epoch", disable=args.quiet)
    fit(fp, x_tr, y_tr, TrainConfig(epochs=args.epochs, lr=3e-3, seed=args.seed), progress=bar)
    qm, info = run_recipe(args.method, fp, x_tr, y_tr, q_cfg, progress=bar, **opts)
    bar.close()
    calibrate(qm, [x_tr])
    frozen = freeze(qm)

    row = {
        "model": args.model, "method": args.method,
        "float_acc": accuracy(fp, x_te, y_te),
        "ternary_acc": accuracy(qm, x_te, y_te),
        "integer_acc": _reference_accuracy(frozen, x_te, y_te),
        "integer_matches_torch_ops": bool(torch.equal(frozen(x_te), run_reference(frozen, x_te))),
        "weight_sparsity": weight_sparsity(qm),
        "model_kbit": model_bits(qm) / 1000, "float_kbit": model_bits(fp) / 1000,
        "host_layers": frozen.host_layers, "seconds": round(time.time() - start, 1), **info,
    }
    cols = ["model", "method", "float_acc", "ternary_acc", "integer_acc", "weight_sparsity",
            "model_kbit", "float_kbit"]
    md = f"# tternary quantize\n\n{markdown_table([row], cols)}\n"
    out = write_report(args.out, {"results": [row]}, md)
    # The frozen model, exported for one image at a time: `tternary compile` reads it.
    torch.export.save(torch.export.export(frozen, (x_te[:1],)), out / "frozen.pt2")
    if not args.quiet:
        print(markdown_table([row], cols))
    print(f"report: {out / 'report.md'}; frozen model: {out / 'frozen.pt2'}")
    return 0
