"""The TIR route's instruction stream: the walked tiles (``tir_walk``) in the TIR's order,
each turned into instructions by the emitter's per-tile builder.

What comes from the scheduled TIR: the order of the tiles and of their reduction steps, the
output, input-channel and pixel region of each (clipped to the real extents), and the block
products of each step in the tensorized GEMM nest's order (hence the order of the weight
blocks in DRAM). What the shared instruction builders of ``emit.LayerEmitter`` decide, so
that both routes encode an instruction one way: the shape of each LOAD / STORE (one merged
DMA where the fields allow), which buffer slot an operand lands in and whether it is still
resident (double buffering with reuse across tiles), the micro-op cache, the ALU overlap and
the dependency tokens (``tokens.Tokens``). With virtual threads the unit is a group of
tiles, one per thread, issued interleaved by ``tir_vthread.ThreadedEmitter``.
"""

from __future__ import annotations

import numpy as np

from .emit import LayerEmitter, Regions, WeightPlan
from .geometry import ConvProblem
from .layer import LayerSpec
from .schedule import Schedule
from .tir_layer import ACCUMULATE, ALU, RESIDUAL
from .tir_walk import TileWork, walk_layer


def tir_epilogue(spec: LayerSpec) -> str:
    """The layer PrimFunc's epilogue variant for ``spec`` (``tir_layer``)."""
    if spec.stores_accumulators:
        return ACCUMULATE
    return RESIDUAL if spec.has_residual else ALU


class TirRoute:
    """The tiles of one (problem, schedule) as the scheduled TIR runs them."""

    def __init__(self, p: ConvProblem, s: Schedule, epilogue: str):
        self.work = walk_layer(p, s, epilogue)

    def plan_weights(self, wblocks: np.ndarray, skip_zero: bool) -> WeightPlan:
        """The weight blocks in DRAM, in the order the TIR's steps first use them."""
        plan = WeightPlan()
        for group in self.groups():  # a group's threads interleave their steps
            for k in range(len(group[0].tile.in_steps)):
                for tw in group:
                    step = tw.tile.in_steps[k]
                    plan.add(tw.tile.weight_key(step), wblocks, tw.tile, step, skip_zero,
                             tw.products[k])
        return plan

    def groups(self) -> list[list[TileWork]]:
        """The walked tiles by virtual-thread group (a new group starts at thread 0)."""
        out: list[list[TileWork]] = []
        for tw in self.work:
            if tw.thread == 0 or not out:
                out.append([])
            out[-1].append(tw)
        return out

    def emit(self, emitter: LayerEmitter, regions: Regions, weights: WeightPlan) -> list:
        """The instruction stream: the emitter run over the walked tiles, a group per
        virtual-thread group (one tile each without virtual threads)."""
        return emitter.run(regions, weights, [[tw.tile for tw in group]
                                              for group in self.groups()])
