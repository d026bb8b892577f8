"""This machine's roofline, measured: memory bandwidth (``bandwidth``) and the int8
multiply-add peak (``mac_peak``), and a kernel's place under it.

A kernel moving ``bytes`` and doing ``macs`` multiply-adds cannot take less than
``max(bytes / bandwidth, macs / peak)``; % of roofline = that bound / the measured time.
Which bandwidth applies depends on where the weights live: cold-cache calls read them from
DRAM (the read bandwidth of a buffer larger than the last-level cache); hot-cache calls
read them from cache (the read bandwidth of a buffer of the kernel's own footprint, hot).
"""

from __future__ import annotations

from . import bandwidth, mac_peak

DRAM_BYTES = 1 << 30   # larger than any cache here (sysfs reports a 480 MiB L3 on this VM)


def measure(threads: int, quick: bool = False, flags: set | None = None) -> dict:
    """Bandwidth on 1 and ``threads`` threads (read-only and copy, TIR; numpy copy) and the
    int8 peak of every instruction form the CPU has, on 1 and ``threads`` threads."""
    from tvm_ternary.target import cpu_info

    flags = cpu_info()["flags"] if flags is None else flags
    n_bytes = (64 << 20) if quick else DRAM_BYTES
    repeats = 3 if quick else 5
    thread_counts = sorted({1, threads})
    bw = {f"read_t{t}": bandwidth.read_gbs(n_bytes, t, repeats) for t in thread_counts}
    bw.update({f"copy_t{t}": bandwidth.copy_gbs(n_bytes, t, repeats) for t in thread_counts})
    bw["numpy_copy_t1"] = bandwidth.numpy_copy_gbs(n_bytes, repeats)
    seconds, peak_repeats = (0.01, 3) if quick else (0.03, 15)
    peaks = {f"{form}_t{t}": mac_peak.measure_gmacs(form, t, seconds, peak_repeats)
             for form in mac_peak.available_forms(flags) for t in thread_counts}
    return {"threads": threads, "buffer_bytes": n_bytes, "bandwidth": bw, "int8_peak": peaks}


def dram_read_gbs(roof: dict) -> float:
    """Best read bandwidth over the thread counts measured (GB/s)."""
    return max(v["best_gbs"] for k, v in roof["bandwidth"].items() if k.startswith("read_"))


def peak_gmacs(roof: dict, form: str | None = None) -> float:
    """Best int8 peak on the benchmark's thread count: of ``form``, or of any form."""
    t = roof["threads"]
    rates = [v["best_gmacs"] for k, v in roof["int8_peak"].items()
             if k.endswith(f"_t{t}") and (form is None or k.startswith(form))]
    return max(rates)


def bound(n_bytes: float, macs: float, gbs: float, gmacs: float) -> dict:
    """The roofline time of a kernel and which resource sets it."""
    memory_ms = 1e3 * n_bytes / (gbs * 1e9)
    compute_ms = 1e3 * macs / (gmacs * 1e9)
    return {"roofline_ms": max(memory_ms, compute_ms), "memory_ms": memory_ms,
            "compute_ms": compute_ms, "bound": "memory" if memory_ms >= compute_ms else "compute"}


def pct(bound_ms: float, measured_ms: float) -> float:
    return 100.0 * bound_ms / measured_ms
