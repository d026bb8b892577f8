"""GEMV vs tiled GEMM over the batch: where should the strategy switch?

    python scripts/bench_gemm_crossover.py --sizes 4096 1024 --batches 1 2 4 8 16 32 64

For each square ternary Linear and batch, compiles the frozen layer twice with
``tt.compile``, once with the GEMM forced (``gemm_linear.GEMM_MIN_BATCH = 1``) and once
with it disabled (the GEMV kernels), for each target (the host, and ``znver3``: AVX2 only,
the CI and reference machine), and times the whole layer call ``cm(x)`` in rounds that
alternate the two (min and median of repeats, hot cache). Prints a Markdown table of
``GEMV / GEMM`` (> 1: the GEMM wins). The machine is shared: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import tvm_ternary as tt  # noqa: E402
from tvm_ternary.cpu import gemm_linear  # noqa: E402
from tvm_ternary.target import emulated_target  # noqa: E402

TARGETS = {"host": "cpu", "znver3": emulated_target("znver3")}


def compiled(frozen, x, target, gemm: bool):
    """``tt.compile`` with the GEMM forced on (any batch) or off."""
    saved = gemm_linear.GEMM_MIN_BATCH
    gemm_linear.GEMM_MIN_BATCH = 1 if gemm else 1 << 30
    try:
        cm = tt.compile(frozen, (x,), target=target)
    finally:
        gemm_linear.GEMM_MIN_BATCH = saved
    kernels = [s for s in cm.stats["kernels"] if s.startswith("tlinear")]
    assert all(s.endswith(": gemm_tiled") == gemm for s in kernels), kernels
    return cm


def rounds(calls: dict, repeats: int, per_round: int) -> dict:
    """{name: (min, median) ms per call}, the callables alternating in every round."""
    times = {name: [] for name in calls}
    for f in calls.values():
        f()
    for _ in range(repeats):
        for name, f in calls.items():
            t = time.perf_counter()
            for _ in range(per_round):
                f()
            times[name].append((time.perf_counter() - t) / per_round * 1e3)
    return {name: (min(v), float(np.median(v))) for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16, 24, 32, 48, 64])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(f"load {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print("| target | N = K | batch | GEMV min / med ms | GEMM min / med ms | GEMV / GEMM (min) | GEMV kernel |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        torch.manual_seed(size)
        layer = nn.Sequential(nn.Linear(size, size))
        qm = tt.quant.ternarize(layer, "twn")
        tt.quant.calibrate(qm, [torch.randn(64, size)])
        frozen = tt.quant.freeze(qm)
        for tname in args.targets:
            for batch in args.batches:
                x = torch.randn(batch, size)
                try:
                    gemv, gemm = (compiled(frozen, x, TARGETS[tname], g) for g in (False, True))
                except Exception as err:  # a failed compile is a row of the table, not the end of it
                    print(f"| {tname} | {size} | {batch} | failed: {type(err).__name__}: {str(err)[:80]} | | |")
                    continue
                assert torch.equal(gemv(x), gemm(x))
                gemv_kernel = next(s for s in gemv.stats["kernels"] if s.startswith("tlinear")).split(": ")[1]
                per_round = max(1, int(20 * 1024 * 1024 / (size * size * max(batch, 4))))
                t = rounds({"gemv": lambda: gemv(x), "gemm": lambda: gemm(x)}, args.repeats, per_round)
                print(f"| {tname} | {size} | {batch} | {t['gemv'][0]:.3f} / {t['gemv'][1]:.3f} | "
                      f"{t['gemm'][0]:.3f} / {t['gemm'][1]:.3f} | {t['gemv'][0] / t['gemm'][0]:.2f} | {gemv_kernel} |",
                      flush=True)


if __name__ == "__main__":
    main()
