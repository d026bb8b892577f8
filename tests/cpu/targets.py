"""LLVM targets for the kernel tests: one per instruction-set path, runnable on this host.

The AVX2 path is tested by compiling for ``znver3`` (Zen 3, the design's CI machine). LLVM
may then use AMD's SSE4A (an ``insertq`` appeared in the dual AVX2 GEMV at batch 4), which
an Intel host lacks: the test would die of SIGILL. So on such a host SSE4A is turned off;
the kernels' AVX2 code is the same either way.
"""

from tvm_ternary.target import cpu_info

_FLAGS = cpu_info()["flags"]
AVX2_MCPU = "znver3"


def llvm_target(mcpu: str, num_cores: int = 2) -> dict:
    """The Target dict for ``mcpu`` with ``num_cores`` threads, minus what this host lacks."""
    target = {"kind": "llvm", "mcpu": mcpu, "num-cores": num_cores}
    if mcpu.startswith("znver") and "sse4a" not in _FLAGS:
        target["mattr"] = ["-sse4a"]
    return target


AVX2_TARGET = llvm_target(AVX2_MCPU)
