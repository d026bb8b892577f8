"""tvm-ternary: compile ternary neural networks with TVM for CPUs and a VTA-style accelerator.

``import tvm_ternary as tt`` then ``tt.quant.ternarize(...)``. Submodules load lazily so
that ``tternary --help`` and light users do not pay for importing torch or TVM.
"""

import importlib
import os

# TVM's thread pool assumes every x86 core has two hyperthreads and by default starts
# cpu_count / 2 threads: one on a 2-vCPU machine, which halved every "parallel" kernel
# (4096^2 GEMV: 0.142 vs 0.179 ms per call) and pinned the caller's thread to core 0. The
# pool reads TVM_NUM_THREADS once, when it is first used, so it is set here, before any
# kernel runs; a value the user set is kept.
_usable_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
os.environ.setdefault("TVM_NUM_THREADS", str(_usable_cpus))

__version__ = "0.1.0"

_LAZY = {"quant", "data", "models", "errors", "frontend", "target", "debug"}


def compile(model, example_inputs, target="cpu", hw="default", backend="fsim"):  # noqa: A001
    """Compile a ternary model with TVM; see ``tvm_ternary.pipeline.compile``."""
    from tvm_ternary.pipeline import compile as _compile

    return _compile(model, example_inputs, target, hw=hw, backend=backend)


def load(path):
    """Load a compiled model written by ``CompiledModel.export``."""
    from tvm_ternary.pipeline import load as _load

    return _load(path)


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"tvm_ternary.{name}")
    raise AttributeError(f"module 'tvm_ternary' has no attribute {name!r}")
