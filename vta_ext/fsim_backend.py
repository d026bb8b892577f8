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
from .sim.work import program_work


def program_cost(compiled: CompiledLayer, hw: HwConfig) -> LayerCost:
    """Cycles, utilization (of the layer's unpadded MACs), DRAM bytes and energy.

    The layer's MACs include those of all-zero weight blocks the program skips; when the
    skipped work outweighs the padding, they exceed the MAC slots the program issues and
    the cycle model refuses them. Then the issued slots are the useful work counted (the
    skipped MACs cost nothing, so they are not reported as core utilization).
    """
    slots = sum(w.mac_slots for w in program_work(compiled.program, hw))
    useful = min(compiled.stats.useful_macs, slots)
    report = estimate(compiled.program, hw, useful_macs=useful).stats()
    return LayerCost(cycles=report["cycles"], useful_macs=report["useful_macs"],
                     gemm_utilization=report["gemm_utilization"],
                     dram_bytes=report["dram_bytes"], energy_pj=report["energy_pj"])


class FsimBackend(Backend):
    name = "fsim"

    def prepare(self, spec: LayerSpec, hw: HwConfig) -> CompiledLayer:
        return compile_layer(spec, hw)

    def run(self, compiled: CompiledLayer, x: np.ndarray) -> np.ndarray:
        result = simulate(compiled.bind(x), compiled.hw)
        return compiled.read_output(result.dram)

    def cost(self, compiled: CompiledLayer, hw: HwConfig) -> LayerCost:
        return program_cost(compiled, hw)
