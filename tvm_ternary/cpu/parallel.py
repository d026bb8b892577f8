"""When a CPU kernel splits its row loop over threads.

Waking the thread pool costs a few microseconds, more than a small layer's whole work:
measured on GEMV (VNNI, this 2-core host, loaded), one thread took 1.7 / 4.2 / 10.6 us
for 256^2 / 512^2 / 1024^2 weights against 4.0 / 6.6 / 12.9 us for two. Larger layers
keep the parallel loop (they stream their weights from L3 or memory, where two cores
can read more than one; on this shared host the two were within noise at 4096^2).
"""

from __future__ import annotations

from tvm.script import tirx as T

PARALLEL_MIN_WEIGHTS = 1 << 20  # trits (N * K): below this the row loop stays serial


def row_loop(n: int, k: int):
    """``T.parallel`` or ``T.serial``, for the row loop of an ``n x k`` layer."""
    return T.parallel if n * k > PARALLEL_MIN_WEIGHTS else T.serial
