"""Int8 multiply-add peak of this CPU: compiled TIR kernels running independent chains of
int8 dot-product instructions on register-resident data, one task per thread.

Two instruction forms, chosen by the detected features (AVX2 is the floor):

* ``pmaddubsw``: the form our AVX2 kernels use. ``pmaddubsw`` (32 u8 x s8 products summed in
  pairs to int16) accumulated in int16 for ``CHUNK`` steps, then one ``pmaddwd`` widening
  to int32, as the GEMV kernel does. The u8 operand of each step is the chain's own int16
  accumulator reinterpreted: an operand that does not change inside the loop would let
  LLVM hoist the (pure) intrinsic out of the loop and time only the adds.
* ``vpdpbusd``: AVX-512 VNNI (256- and 512-bit), whose int32 accumulator is an operand, so
  the chain is real without that trick.

``CHAINS`` independent chains hide the ~5-cycle latency of the multiply behind its 2 per
cycle throughput. One multiply-add is one u8 x s8 product (``pmaddwd``'s widening is not
counted: it is overhead of the int16 scheme, one per ``CHUNK`` steps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tvm.script import tirx as T

CHAINS = 12
CHUNK = 16


@dataclass(frozen=True)
class PeakForm:
    name: str
    lanes: int            # int32 lanes of one accumulator register
    macs_per_step: int    # u8 x s8 products per chain per step
    needs: tuple          # /proc/cpuinfo flags the instruction needs
    mcpu: str             # LLVM CPU the kernel is compiled for


FORMS = {
    "avx2_pmaddubsw": PeakForm("avx2_pmaddubsw", 8, 32, ("avx2",), "haswell"),
    "avx512vnni_vpdpbusd_256": PeakForm("avx512vnni_vpdpbusd_256", 8, 32,
                                        ("avx512_vnni", "avx512vl"), "cascadelake"),
    "avx512vnni_vpdpbusd_512": PeakForm("avx512vnni_vpdpbusd_512", 16, 64,
                                        ("avx512_vnni", "avx512f"), "cascadelake"),
}


def available_forms(flags: set) -> list[str]:
    return [name for name, form in FORMS.items() if all(f in flags for f in form.needs)]


def _pmaddubsw_kernel(threads: int, iters: int):
    C, G = CHAINS, CHUNK

    @T.prim_func
    def peak(s_in: T.Buffer((32,), "int8"), out: T.Buffer((threads, C * 8), "int32")):
        T.func_attr({"tirx.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((C * 8,), "int32", scope="local")
            a16 = T.alloc_buffer((C * 16,), "int16", scope="local")
            for c in T.unroll(C):
                acc[T.ramp(c * 8, 1, 8)] = T.broadcast(t, 8)
                a16[T.ramp(c * 16, 1, 16)] = T.broadcast(T.Cast("int16", c + 1), 16)
            for _it in range(iters):
                for _g in T.unroll(G):
                    for c in T.unroll(C):
                        a16[T.ramp(c * 16, 1, 16)] = a16[T.ramp(c * 16, 1, 16)] + T.call_llvm_pure_intrin(
                            "int16x16", "llvm.x86.avx2.pmadd.ub.sw",
                            T.reinterpret("uint8x32", a16[T.ramp(c * 16, 1, 16)]), s_in[T.ramp(0, 1, 32)])
                for c in T.unroll(C):
                    acc[T.ramp(c * 8, 1, 8)] = acc[T.ramp(c * 8, 1, 8)] + T.call_llvm_pure_intrin(
                        "int32x8", "llvm.x86.avx2.pmadd.wd", a16[T.ramp(c * 16, 1, 16)],
                        T.broadcast(T.int16(1), 16))
            for c in T.unroll(C):
                out[t, T.ramp(c * 8, 1, 8)] = acc[T.ramp(c * 8, 1, 8)]

    return peak


def _vpdpbusd_kernel(threads: int, iters: int, lanes: int):
    C, G, L, B = CHAINS, CHUNK, lanes, 4 * lanes
    intrin = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"
    vec = f"int32x{lanes}"

    @T.prim_func
    def peak(u_in: T.Buffer((B,), "uint8"), s_in: T.Buffer((B,), "int8"),
             out: T.Buffer((threads, C * L), "int32")):
        T.func_attr({"tirx.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((C * L,), "int32", scope="local")
            for c in T.unroll(C):
                acc[T.ramp(c * L, 1, L)] = T.broadcast(t + c, L)
            for _it in range(iters):
                for _g in T.unroll(G):
                    for c in T.unroll(C):
                        acc[T.ramp(c * L, 1, L)] = T.call_llvm_pure_intrin(
                            vec, intrin, acc[T.ramp(c * L, 1, L)],
                            u_in[T.ramp(0, 1, B)], s_in[T.ramp(0, 1, B)])
            for c in T.unroll(C):
                out[t, T.ramp(c * L, 1, L)] = acc[T.ramp(c * L, 1, L)]

    return peak


def build(form_name: str, threads: int, iters: int):
    """The compiled peak kernel of ``form_name`` (called with TVM tensors, see ``inputs``)."""
    import tvm

    form = FORMS[form_name]
    if form_name == "avx2_pmaddubsw":
        func = _pmaddubsw_kernel(threads, iters)
    else:
        func = _vpdpbusd_kernel(threads, iters, form.lanes)
    func = func.with_attr("global_symbol", f"mac_peak_{form_name}_t{threads}")
    lib = tvm.compile(func, target=tvm.target.Target({"kind": "llvm", "mcpu": form.mcpu,
                                                      "num-cores": threads}))
    return lib[f"mac_peak_{form_name}_t{threads}"]


def inputs(form_name: str, threads: int, seed: int = 0) -> list[np.ndarray]:
    """Operands (random bytes) and the output buffer of a peak kernel."""
    rng = np.random.default_rng(seed)
    form = FORMS[form_name]
    out = np.zeros((threads, CHAINS * form.lanes), np.int32)
    if form_name == "avx2_pmaddubsw":
        return [rng.integers(-128, 128, 32, dtype=np.int8), out]
    width = 4 * form.lanes
    return [rng.integers(0, 256, width, dtype=np.uint8), rng.integers(-128, 128, width, dtype=np.int8), out]


def macs(form_name: str, threads: int, iters: int) -> int:
    return threads * iters * CHUNK * CHAINS * FORMS[form_name].macs_per_step


def measure_gmacs(form_name: str, threads: int, seconds: float = 0.05, repeats: int = 5) -> dict:
    """Multiply-adds per second (GMAC/s) on ``threads`` threads: best and median of repeats,
    with the iteration count sized so one call lasts about ``seconds``."""
    import tvm

    probe_iters = 2000
    args = [tvm.runtime.tensor(a) for a in inputs(form_name, threads)]
    probe = build(form_name, threads, probe_iters)
    probe(*args)
    t0 = time.perf_counter()
    probe(*args)
    per_iter = max(time.perf_counter() - t0, 1e-6) / probe_iters
    iters = max(probe_iters, int(seconds / per_iter))
    fn = build(form_name, threads, iters)
    fn(*args)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        rates.append(macs(form_name, threads, iters) / (time.perf_counter() - t0) / 1e9)
    return {"best_gmacs": max(rates), "median_gmacs": float(np.median(rates)), "iters": iters}
