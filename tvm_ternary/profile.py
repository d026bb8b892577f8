"""Per-function time breakdown of a compiled model (``CompiledModel.profile``).

The Relax VM calls one PrimFunc (or packed function) per fused layer or host op; an
instrument hook around each call times it. Each function's time is the minimum over
``repeat`` runs of its per-run total (several calls per run are summed), so one noisy
run does not move it; ``total_ms`` is the minimum whole-run time, timed the same way.
"""

from __future__ import annotations

import time
from collections import defaultdict

_BUILTINS = "vm.builtin.*"  # allocation and bookkeeping calls, summed into one entry


def profile(vm, args: list, repeat: int = 5) -> dict:
    """``{"total_ms", "per_function": [(symbol, ms), ...] slowest first}``."""
    best: dict[str, float] = {}
    totals = []
    for _ in range(max(1, repeat)):
        run: dict[str, float] = defaultdict(float)
        started: dict[str, float] = {}

        def instrument(func, symbol, before_run, ret_value, *call_args):
            symbol = _BUILTINS if symbol.startswith("vm.builtin.") else symbol
            if before_run:
                started[symbol] = time.perf_counter()
            else:
                run[symbol] += time.perf_counter() - started.pop(symbol)  # calls never nest
            return 0  # VMInstrumentReturnKind.NO_OP: run the call as usual

        vm.set_instrument(instrument)
        t0 = time.perf_counter()
        try:
            vm["main"](*args)
        finally:
            vm.set_instrument(None)  # a no-op Python hook would still cost ~30 us per call
        totals.append(time.perf_counter() - t0)
        for symbol, seconds in run.items():
            best[symbol] = min(best.get(symbol, seconds), seconds)
    per_function = sorted(((s, t * 1e3) for s, t in best.items()), key=lambda p: -p[1])
    return {"total_ms": min(totals) * 1e3, "per_function": per_function}
