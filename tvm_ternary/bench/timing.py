"""Timing with a hot or a cold cache.

Hot: an untimed call right before the timed one, so the weights are wherever that call
left them (the 2-bit weights of a 4096 x 4096 layer, 4 MiB, stay cache-resident). Cold: before every
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


def _stats(seconds: list[float]) -> dict:
    return {"min_ms": 1e3 * min(seconds), "median_ms": 1e3 * statistics.median(seconds), "repeats": len(seconds)}


def timed_rounds(fns: dict[str, Callable[[], object]], repeats: int, evictor: CacheEvictor | None = None,
                 warmup: int = 2) -> dict:
    """Time several runners against each other: ``{name: {"hot": stats, "cold": stats}}``.

    Samples are taken in rounds, one per runner per round, in an order that rotates every
    round, so a burst of load from other processes lands on every runner alike (timing one
    runner's repeats back to back let a burst land on one of them and skew the ratios).
    Hot sample: one untimed call (the runners before it may have evicted its weights), then
    the timed call. Cold sample: ``evictor.evict()``, then the timed call.
    """
    names = list(fns)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    modes = {"hot": None} if evictor is None else {"hot": None, "cold": evictor.evict}
    samples: dict = {n: {m: [] for m in modes} for n in names}
    for mode, before in modes.items():
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn = fns[name]
                if before is None:
                    fn()
                else:
                    before()
                t0 = time.perf_counter()
                fn()
                samples[name][mode].append(time.perf_counter() - t0)
    return {n: {m: _stats(v) for m, v in per_mode.items()} for n, per_mode in samples.items()}
