"""Run the tiled GEMM kernel on numpy arrays (shared by the GEMM and conv kernel tests)."""

import numpy as np
import tvm

from tvm_ternary.cpu.gemm_epilogue import OPERANDS, out_dtype
from tvm_ternary.cpu.gemm_kernel import CONST_OPERANDS, make_gemm
from tvm_ternary.target import cpu_info, emulated_target


MCPU = {"avx2": "haswell", "vnni256": "cascadelake", "vnni512": "cascadelake"}


def host_isas() -> list[str]:
    flags = cpu_info()["flags"]
    isas = ["avx2"] if "avx2" in flags else []
    if {"avx512_vnni", "avx512vl", "avx512bw"} <= flags:
        isas += ["vnni256", "vnni512"]
    return isas


_cache: dict = {}


def run_kernel(spec, xu, consts, bias, epilogue=()):
    """Compile (cached per spec) and run; returns the output array (int64, or int8 after a
    fused epilogue, whose operands ``epilogue`` gives: flat, up to three)."""
    if spec not in _cache:
        target = tvm.target.Target(emulated_target(MCPU[spec.isa]))
        _cache[spec] = tvm.compile(make_gemm(spec), target=target)
    out = np.zeros(int(np.prod(spec.out_shape)), out_dtype(spec.epilogue))   # input and output are flat
    extra = [np.asarray(e).reshape(-1) for e in epilogue]
    extra += [np.zeros(1, np.int64)] * (OPERANDS - len(extra))
    args = [xu.reshape(-1)] + [consts[n] for n in CONST_OPERANDS] + [np.asarray(bias, np.int64), *extra, out]
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]
    _cache[spec](*args)
    return args[-1].numpy().reshape(spec.out_shape)
