"""Memory bandwidth of this CPU: compiled TIR read-only and copy kernels on 1..n threads,
and numpy's single-thread copy as a cross-check.

Bytes counted: read-only = the buffer once; copy = read + write (2x the buffer; write-
allocate traffic is not counted, as STREAM does not). A buffer larger than the last-level
cache gives DRAM bandwidth; one the size of a kernel's weights, read twice in a row, gives
the cache bandwidth a hot-cache kernel sees.
"""

from __future__ import annotations

import time

import numpy as np
from tvm.script import tirx as T

LANES = 16        # int32 lanes per load: 64 bytes, one cache line
ACCUMULATORS = 4  # independent OR chains so the loads, not the ORs, set the pace
_STEP = LANES * ACCUMULATORS


def _read_kernel(n_words: int, threads: int):
    per_thread = n_words // threads // _STEP

    @T.prim_func
    def read(src: T.Buffer((n_words,), "int32"), out: T.Buffer((threads, LANES), "int32")):
        T.func_attr({"tirx.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((_STEP,), "int32", scope="local")
            for a in T.unroll(ACCUMULATORS):
                acc[T.ramp(a * LANES, 1, LANES)] = T.broadcast(0, LANES)
            for i in range(per_thread):
                for a in T.unroll(ACCUMULATORS):
                    acc[T.ramp(a * LANES, 1, LANES)] = T.bitwise_or(
                        acc[T.ramp(a * LANES, 1, LANES)],
                        src[T.ramp((t * per_thread + i) * _STEP + a * LANES, 1, LANES)])
            out[t, T.ramp(0, 1, LANES)] = T.bitwise_or(
                T.bitwise_or(acc[T.ramp(0, 1, LANES)], acc[T.ramp(LANES, 1, LANES)]),
                T.bitwise_or(acc[T.ramp(2 * LANES, 1, LANES)], acc[T.ramp(3 * LANES, 1, LANES)]))

    return read


def _copy_kernel(n_words: int, threads: int):
    per_thread = n_words // threads // _STEP

    @T.prim_func
    def copy(src: T.Buffer((n_words,), "int32"), dst: T.Buffer((n_words,), "int32")):
        T.func_attr({"tirx.noalias": True})
        for t in T.parallel(threads):
            for i in range(per_thread):
                for a in T.unroll(ACCUMULATORS):
                    dst[T.ramp((t * per_thread + i) * _STEP + a * LANES, 1, LANES)] = \
                        src[T.ramp((t * per_thread + i) * _STEP + a * LANES, 1, LANES)]

    return copy


def words_for(n_bytes: int, threads: int) -> int:
    """int32 words covering ``n_bytes``, rounded down to whole per-thread steps (>= 1)."""
    unit = threads * _STEP
    return max(unit, (n_bytes // 4) // unit * unit)


def _compile(func, name: str, threads: int):
    import tvm

    from tvm_ternary.target import host_target

    func = func.with_attr("global_symbol", name)
    return tvm.compile(func, target=tvm.target.Target(host_target(threads)))[name]


def build_read(n_words: int, threads: int):
    return _compile(_read_kernel(n_words, threads), f"bw_read_{n_words}_t{threads}", threads)


def build_copy(n_words: int, threads: int):
    return _compile(_copy_kernel(n_words, threads), f"bw_copy_{n_words}_t{threads}", threads)


def _best_seconds(fn, repeats: int) -> list[float]:
    fn()  # first touch: page faults are not bandwidth
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _summary(n_bytes: int, times: list[float]) -> dict:
    return {"best_gbs": n_bytes / min(times) / 1e9, "median_gbs": n_bytes / float(np.median(times)) / 1e9,
            "bytes": n_bytes}


def reader(n_bytes: int, threads: int):
    """``(read, bytes)``: a call that reads a buffer of about ``n_bytes`` on ``threads``
    threads, and the bytes it reads. A benchmark times it among its runners so the read
    sees the same cache state as the kernel it bounds."""
    import tvm

    n = words_for(n_bytes, threads)
    src = tvm.runtime.tensor(np.ones(n, np.int32))
    out = tvm.runtime.tensor(np.zeros((threads, LANES), np.int32))
    fn = build_read(n, threads)
    return (lambda: fn(src, out)), 4 * n


def read_gbs(n_bytes: int, threads: int, repeats: int = 5) -> dict:
    """Read-only bandwidth over a buffer of about ``n_bytes`` (GB/s, best and median)."""
    read, n_read = reader(n_bytes, threads)
    return _summary(n_read, _best_seconds(read, repeats))


def copy_gbs(n_bytes: int, threads: int, repeats: int = 5) -> dict:
    """Copy bandwidth (read + write counted) over a buffer of about ``n_bytes``."""
    import tvm

    n = words_for(n_bytes, threads)
    src = tvm.runtime.tensor(np.ones(n, np.int32))
    dst = tvm.runtime.tensor(np.zeros(n, np.int32))
    fn = build_copy(n, threads)
    return _summary(8 * n, _best_seconds(lambda: fn(src, dst), repeats))


def numpy_copy_gbs(n_bytes: int, repeats: int = 5) -> dict:
    """Single-thread ``np.copyto`` bandwidth (read + write counted)."""
    src = np.ones(n_bytes, np.uint8)
    dst = np.empty_like(src)
    return _summary(2 * n_bytes, _best_seconds(lambda: np.copyto(dst, src), repeats))
