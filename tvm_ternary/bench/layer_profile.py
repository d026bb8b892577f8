"""Per-layer time breakdown of a compiled model.

TVM 0.27's Relax VM has no profiler (``VirtualMachine(..., profile=True)`` is gone), but it
calls an instrument function before and after every Call instruction
(``VirtualMachine.set_instrument``). Timing between those two calls gives each kernel's
wall time, including a few microseconds of Python callback; VM builtins (allocation,
shape checks) are grouped apart. Kernels are named by their symbol, which the CPU
strategies derive from the op and shape.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

BUILTIN_PREFIX = "vm.builtin."


def _instrumented_vm(executable):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    calls: list = []
    pending: list = []

    def instrument(func, symbol, before_run, ret_value, *args):
        if before_run:
            pending.append(time.perf_counter())
        else:
            calls.append((str(symbol), time.perf_counter() - pending.pop()))
        return 0  # VMInstrumentReturnKind.NO_OP: run the call as usual

    vm.set_instrument(instrument)
    return vm, calls


def profile(cm, inputs: list, repeats: int = 10) -> dict:
    """Median time of every kernel call of one inference (in call order), the per-symbol
    totals, and the whole call timed with and without instrumentation."""
    import tvm

    from tvm_ternary.pipeline import _aligned

    vm, calls = _instrumented_vm(cm.executable)
    args = [tvm.runtime.from_dlpack(_aligned(x)) for x in inputs]
    vm["main"](*args)  # warm-up
    per_run, wall = [], []
    for _ in range(repeats):
        calls.clear()
        t0 = time.perf_counter()
        vm["main"](*args)
        wall.append(time.perf_counter() - t0)
        per_run.append(list(calls))
    n_calls = min(len(r) for r in per_run)
    rows = []
    for i in range(n_calls):
        symbol = per_run[0][i][0]
        rows.append({"index": i, "symbol": symbol, "builtin": symbol.startswith(BUILTIN_PREFIX),
                     "median_ms": 1e3 * statistics.median(r[i][1] for r in per_run)})
    totals: dict = defaultdict(float)
    for row in rows:
        totals["(vm builtins)" if row["builtin"] else row["symbol"]] += row["median_ms"]
    return {"calls": rows,
            "by_symbol": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
            "kernels_ms": sum(r["median_ms"] for r in rows if not r["builtin"]),
            "instrumented_total_ms": 1e3 * statistics.median(wall)}
