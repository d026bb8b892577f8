"""``tternary compile`` (exported frozen model -> compiled model) and ``tternary run``."""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from tvm_ternary.errors import DataFileError
from tvm_ternary.report import markdown_table, write_report


@contextlib.contextmanager
def _quiet_torch_export():
    """torch.export.load logs a failed read with a traceback before raising; the error we
    raise from it says the same in one line."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_exported(path: Path) -> torch.export.ExportedProgram:
    import tvm_ternary.quant.ops  # noqa: F401  (registers tternary::*, which the file calls)

    if not path.is_file():
        raise DataFileError(f"{path}: no such file (run 'tternary quantize' to make one)")
    try:
        with _quiet_torch_export():
            return torch.export.load(path)
    except Exception as err:
        raise DataFileError(f"{path}: not a torch.export file ({err})") from err


def run_compile(args) -> int:
    import tvm_ternary as tt

    ep = _load_exported(Path(args.model_file))
    (example,), _ = ep.example_inputs
    start = time.time()
    cm = tt.compile(ep, (example,), target=args.target, hw=args.hw)
    seconds = time.time() - start
    # The compiled model must equal the exported integer model on fresh inputs.
    gen = torch.Generator().manual_seed(args.seed)
    checks = [torch.rand(example.shape, generator=gen) for _ in range(8)]
    bit_exact = all(torch.equal(cm(x), ep.module()(x)) for x in checks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    row = {"model_file": str(args.model_file), "target": args.target, "compile_seconds": round(seconds, 2),
           "bit_exact_vs_exported": bit_exact, "input_shape": list(example.shape)}
    if args.target == "vta":
        row.update(_accelerator_summary(cm.stats))
        path = None  # accelerator regions live in this process's simulator session
    else:
        path = cm.export(out / "model.tar")
    md = "# tternary compile\n\n" + markdown_table([row], list(row))
    write_report(out, {"results": [row], "target": cm.target, "stats": cm.stats}, md)
    print(markdown_table([row], list(row)))
    where = f"compiled model: {path}; " if path else ""
    print(f"{where}report: {out / 'report.md'}")
    return 0 if bit_exact else 1


def _accelerator_summary(stats: dict) -> dict:
    """The headline accelerator numbers of ``cm.stats`` (target="vta")."""
    keys = ("cycles", "gemm_utilization", "dram_bytes", "energy_pj", "accelerator_mac_fraction")
    summary = {k: stats.get(k) for k in keys}
    summary["host_layers"] = len(stats.get("host_layers", {}))
    return summary


def run_run(args) -> int:
    import tvm_ternary as tt
    from tvm_ternary.data import load_digits_split

    cm = tt.load(args.compiled)
    d = load_digits_split()
    x_te, y_te = torch.from_numpy(d["x_test"]), torch.from_numpy(d["y_test"])
    batch = cm.input_shapes[0][0]
    usable = len(x_te) // batch * batch
    correct, times = 0, []
    for i in tqdm(range(0, usable, batch), desc="run", unit="batch", disable=args.quiet):
        xb = x_te[i:i + batch]
        t0 = time.perf_counter()
        pred = cm(xb).argmax(dim=1)
        times.append(time.perf_counter() - t0)
        correct += int((pred == y_te[i:i + batch]).sum())
    row = {"compiled": str(args.compiled), "images": usable, "accuracy": correct / usable,
           "latency_ms_min": 1e3 * min(times), "latency_ms_median": 1e3 * statistics.median(times)}
    md = "# tternary run (digits test split)\n\n" + markdown_table([row], list(row))
    out = write_report(args.out, {"results": [row], "target": cm.target}, md)
    print(markdown_table([row], list(row)))
    print(f"report: {out / 'report.md'}")
    return 0
