"""The accelerator runtime: backends, and the packed functions the Relax VM calls.

A :class:`Backend` prepares a :class:`~vta_ext.compiler.layer.LayerSpec` once (at compile
time) and runs it on an input (at every call):

* ``fsim``: the layer lowering (``vta_ext.compiler.lower.compile_layer``) and the
  functional simulator (``vta_ext.sim.fsim``): the accelerator's results, bit-exact;
* ``rtl``: the Verilog core under Verilator (not built yet: a clear error says so);
* ``reference``: the numpy integer reference of the layer (``LayerSpec.reference``). For
  debugging the partition and the plumbing; its results are never reported as the
  accelerator's (stats say ``backend: reference`` and carry no cycles).

A :class:`Session` belongs to one compiled model: each offloaded layer becomes a
:class:`Region` behind a global packed function ``tternary.vta.<session>.<index>(x, out)``
(destination-passing, as ``relax.call_dps_packed`` calls it; a fused residual layer takes
``(x, r, out)``). A float-output layer's ``out`` is float32: the accelerator computed its
accumulators, the host its dequantize epilogue (``LayerSpec.host_epilogue``).
"""

from __future__ import annotations

import itertools
import time
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import tvm_ffi

from tvm_ternary.errors import BackendError, ShapeMismatchError

from .compiler.layer import LayerSpec
from .config import HwConfig


@dataclass(frozen=True)
class LayerCost:
    """What one layer costs on the accelerator (static: it depends on the program only)."""

    cycles: int
    useful_macs: int
    gemm_utilization: float
    dram_bytes: int
    energy_pj: float | None = None


class Backend(ABC):
    name: str = ""
    runs_accelerator: bool = True  # False: results are not the accelerator's (reference)

    @abstractmethod
    def prepare(self, spec: LayerSpec, hw: HwConfig):
        """Compile one layer (raises a ``TernaryError`` if the accelerator cannot run it)."""

    @abstractmethod
    def run(self, compiled, x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        """The layer's output (int8 values or trits; float32 for a dequantize layer) for
        the integer input ``x`` (and a fused residual layer's second input)."""

    def cost(self, compiled, hw: HwConfig) -> LayerCost | None:
        """The layer's cost by the cycle model, or None if this backend has no program."""
        return None


class ReferenceBackend(Backend):
    """The numpy integer reference per layer: no accelerator involved in the results."""

    name = "reference"
    runs_accelerator = False

    def prepare(self, spec: LayerSpec, hw: HwConfig) -> LayerSpec:
        # The lowering still decides what the HwConfig can run, so the partition (and the
        # host layers reported) is the one the fsim and rtl backends get.
        from .compiler.lower import compile_layer

        compile_layer(spec, hw)
        return spec

    def run(self, compiled: LayerSpec, x: np.ndarray, residual=None) -> np.ndarray:
        return compiled.reference(x, residual)


class RtlBackend(Backend):
    """The Verilog core under Verilator, one program per layer (to come)."""

    name = "rtl"

    def prepare(self, spec: LayerSpec, hw: HwConfig):
        raise BackendError(
            f"backend 'rtl' (layer {spec.name}): running compiled layers on the Verilog core "
            "needs a Verilator harness that loads a Program's DRAM image and instruction "
            "stream into rtl/ and reads the DRAM back; it is not built yet. Use backend='fsim'.")

    def run(self, compiled, x: np.ndarray, residual=None) -> np.ndarray:  # pragma: no cover
        raise BackendError("backend 'rtl' is not available")


def _fsim_backend() -> Backend:
    from .fsim_backend import FsimBackend  # imports the lowering only when asked for

    return FsimBackend()


BACKENDS = {"fsim": _fsim_backend, "rtl": RtlBackend, "reference": ReferenceBackend}


def get_backend(backend) -> Backend:
    """A Backend instance from a name (``fsim``, ``rtl``, ``reference``) or an instance."""
    if isinstance(backend, Backend):
        return backend
    if backend not in BACKENDS:
        raise BackendError(f"unknown accelerator backend {backend!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[backend]()


class Region:
    """One offloaded layer: its compiled form and backend; accumulates its calls and the
    host time its backend spent (simulation time for fsim, not accelerator time)."""

    def __init__(self, spec: LayerSpec, hw: HwConfig, backend: Backend):
        self.spec, self.hw, self.backend = spec, hw, backend
        self.compiled = backend.prepare(spec, hw)
        self.cost = backend.cost(self.compiled, hw)
        self.calls = 0
        self.backend_seconds = 0.0

    def __call__(self, x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        if tuple(x.shape) != tuple(self.spec.input_shape):
            raise ShapeMismatchError(f"layer {self.spec.name}: input shape {tuple(x.shape)}, "
                                     f"compiled for {tuple(self.spec.input_shape)}")
        if self.spec.has_residual != (residual is not None):
            raise ShapeMismatchError(f"layer {self.spec.name}: takes "
                                     f"{2 if self.spec.has_residual else 1} input(s)")
        start = time.perf_counter()
        y = self.backend.run(self.compiled, x, residual)
        self.backend_seconds += time.perf_counter() - start
        self.calls += 1
        return y


_SESSION_IDS = itertools.count()


class Session:
    """The regions of one compiled model and their global packed functions."""

    def __init__(self, hw: HwConfig, backend):
        self.hw = hw
        self.backend = get_backend(backend)
        self.prefix = f"tternary.vta.s{next(_SESSION_IDS)}"
        self.regions: list[Region] = []
        self.func_names: list[str] = []
        self.error: Exception | None = None  # the last error a region raised inside the VM
        # The VM looks the functions up by name; drop them when the session goes away.
        weakref.finalize(self, _unregister, self.func_names)

    def take_error(self) -> Exception | None:
        err, self.error = self.error, None
        return err

    def region(self, func_name: str) -> Region:
        return self.regions[self.func_names.index(func_name)]

    def offload(self, spec: LayerSpec) -> str:
        """Prepare ``spec`` on the backend and register its packed function; returns its name."""
        region = Region(spec, self.hw, self.backend)
        name = f"{self.prefix}.{len(self.regions)}"
        tvm_ffi.register_global_func(name, _packed(region, self), override=True)
        self.regions.append(region)
        self.func_names.append(name)
        return name


def _packed(region: Region, session: Session):
    owner = weakref.ref(session)  # the global registry must not keep the session alive

    def run(*args):
        *inputs, out = args  # (x, out), or (x, r, out) for a fused residual layer
        try:
            y = region(*(a.numpy() for a in inputs))
        except Exception as err:
            # The VM turns it into a RuntimeError; keep the typed original for the caller.
            if owner() is not None:
                owner().error = err
            raise
        out.copyfrom(np.ascontiguousarray(y, dtype=np.dtype(str(out.dtype))))

    return run


def _unregister(names: list[str]) -> None:
    for name in names:
        tvm_ffi.remove_global_func(name)


__all__ = ["BACKENDS", "Backend", "LayerCost", "ReferenceBackend", "Region", "RtlBackend",
           "Session", "get_backend"]
