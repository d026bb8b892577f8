"""Timing with a hot or a cold cache.

Hot: the call repeated back to back, so the weights stay wherever the last call left them
(the 2-bit weights of a 4096 x 4096 layer, 4 MiB, stay cache-resident). Cold: before every
timed call, a buffer larger than the last-level cache is read on every thread (untimed),
which pushes the weights out of L1, L2 and L3, so each call fetches them from DRAM again.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

MODES = ("hot", "cold")


def last_level_cache_bytes(sysfs: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """Size of the largest cache level this CPU reports (None when sysfs does not say)."""
    sizes = []
    for index in Path(sysfs).glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes) if sizes else None


class CacheEvictor:
    """``evict()`` reads ``factor`` x the last-level cache (at least ``floor_bytes``) on
    ``threads`` threads, with the compiled read kernel of ``bandwidth``."""

    def __init__(self, threads: int, factor: float = 1.25, floor_bytes: int = 64 << 20,
                 llc_bytes: int | None = None):
        import tvm

        from .bandwidth import LANES, build_read, words_for

        llc = llc_bytes if llc_bytes is not None else (last_level_cache_bytes() or 32 << 20)
        n = words_for(max(int(factor * llc), floor_bytes), threads)
        self.bytes = 4 * n
        self._src = tvm.runtime.tensor(np.ones(n, np.int32))
        self._out = tvm.runtime.tensor(np.zeros((threads, LANES), np.int32))
        self._read = build_read(n, threads)

    def evict(self) -> None:
        self._read(self._src, self._out)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2,
          before: Callable[[], None] | None = None) -> dict:
    """min / median (ms) of ``repeats`` calls of ``fn``; ``before`` runs untimed before each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"min_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times), "repeats": repeats}


def timed_modes(fn: Callable[[], object], repeats: int, evictor: CacheEvictor | None) -> dict:
    """{"hot": timed(...), "cold": timed(..., before=evict)} (cold only with an evictor)."""
    out = {"hot": timed(fn, repeats)}
    if evictor is not None:
        out["cold"] = timed(fn, repeats, warmup=1, before=evictor.evict)
    return out
