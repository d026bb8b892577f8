"""The ``fsim`` backend: each layer lowered by ``compile_layer`` and run on the functional
simulator (bit-exact with the integer reference); its cost from the cycle and energy
models (``vta_ext.sim.perf``), which read the same program."""

from __future__ import annotations

import numpy as np

from .compiler.layer import LayerSpec
from .compiler.lower import CompiledLayer, compile_layer
from .config import HwConfig
from .runtime import Backend, LayerCost
from .sim.fsim import simulate
from .sim.perf import estimate


def program_cost(compiled: CompiledLayer, hw: HwConfig) -> LayerCost:
    """Cycles, utilization, DRAM bytes and energy of the layer's program.

    Utilization counts the unpadded MACs of the weight blocks the program issues
    (``issued_useful_macs``): skipped all-zero blocks cost nothing and are not core work.
    """
    useful = compiled.stats.issued_useful_macs
    report = estimate(compiled.program, hw, useful_macs=useful).stats()
    return LayerCost(cycles=report["cycles"], useful_macs=report["useful_macs"],
                     gemm_utilization=report["gemm_utilization"],
                     dram_bytes=report["dram_bytes"], energy_pj=report["energy_pj"])


class FsimBackend(Backend):
    name = "fsim"

    def prepare(self, spec: LayerSpec, hw: HwConfig) -> CompiledLayer:
        return compile_layer(spec, hw)

    def run(self, compiled: CompiledLayer, x: np.ndarray, residual=None) -> np.ndarray:
        result = simulate(compiled.bind(x, residual), compiled.hw)
        return compiled.read_output(result.dram)

    def cost(self, compiled: CompiledLayer, hw: HwConfig) -> LayerCost:
        return program_cost(compiled, hw)
