"""ResNet-18's ImageNet convolutions as accelerator layers, measured by the cycle and energy
models with the best schedule a seeded search finds (the measuring half of bench_vta.py).

The layer table is the old VTA benchmark's (``tvm_ternary.models.RESNET18_IMAGENET_CONVS``,
which cites it): C1 to C11, batch 1. The multiplicity of each shape in ResNet-18 weights the per-inference sums.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from tvm_ternary.errors import BenchmarkError
from tvm_ternary.models import RESNET18_IMAGENET_CONVS, ConvShape
from vta_ext import HwConfig
from vta_ext.compiler.geometry import ConvProblem, problem_of
from vta_ext.compiler.layer import LayerSpec
from vta_ext.compiler.lower import compile_layer
from vta_ext.compiler.schedule import Schedule, estimated_cost, schedule_space
from vta_ext.sim.cycles import cycle_report
from vta_ext.sim.energy import energy_report
from vta_ext.sim.fsim import simulate
from vta_ext.sim.work import program_work

ENERGY_PARTS = ("gemm_pj", "alu_pj", "sram_pj", "dram_pj")  # they sum to the total
CYCLE_TOLERANCE = 0.01  # schedules this close to the fewest cycles compete on energy


# DESIGN: C1 cannot fill the core (3 input channels); the old benchmark left it out of means.
EXCLUDED_FROM_MEAN = ("C1",)
ZERO_BLOCK_LAYERS = ("C8", "C11")  # compute-heavy: the skipped blocks save weight DMA too


def conv_by_name(name: str) -> ConvShape:
    for c in RESNET18_IMAGENET_CONVS:
        if c.name == name:
            return c
    raise BenchmarkError(f"unknown ResNet-18 layer {name!r}; known: "
                         f"{[c.name for c in RESNET18_IMAGENET_CONVS]}")


def ternary_weights(conv: ConvShape, rng, p_zero: float = 0.4) -> np.ndarray:
    """Random trits [O, C, k, k]; at this density no 16 x 16 block is all zero by chance."""
    p = (1 - p_zero) / 2
    return rng.choice(np.array([-1, 0, 1], dtype=np.int8), p=[p, p_zero, p],
                      size=(conv.cout, conv.cin, conv.kernel, conv.kernel))


def zero_blocks(w: np.ndarray, block_out: int, block_in: int, fraction: float, rng) -> np.ndarray:
    """``w`` with exactly round(fraction x n) of its n lowering blocks (block_out output x
    block_in input channels at one tap, the unit the accelerator skips) set to zero."""
    o, c, kh, kw = w.shape
    nob, ncb = -(-o // block_out), -(-c // block_in)
    n = nob * ncb * kh * kw
    out = w.copy()
    for flat in rng.choice(n, size=int(round(fraction * n)), replace=False):
        ob, cb, i, j = np.unravel_index(flat, (nob, ncb, kh, kw))
        out[ob * block_out:(ob + 1) * block_out, cb * block_in:(cb + 1) * block_in, i, j] = 0
    return out


def layer_spec(conv: ConvShape, weight: np.ndarray, rng) -> LayerSpec:
    """A requantize + ReLU layer with symmetric per-channel scales (TWN-style): single
    accumulators, the form both the ternary and the int8 config run."""
    mult = rng.integers(2**14, 2**15, conv.cout)
    return LayerSpec(name=conv.name, kind="conv2d", input_shape=(1, conv.cin, conv.size, conv.size),
                     weight=weight, bias=rng.integers(-2**24, 2**24, conv.cout), mult_p=mult,
                     mult_n=mult.copy(), epilogue="requantize",
                     shift=np.full(conv.cout, 24, dtype=np.int64), lo=0, hi=127,
                     stride=(conv.stride,) * 2, padding=(conv.pad,) * 2)


def knobs(s: Schedule) -> str:
    return (f"o{s.tile_out_blocks} i{s.tile_in_blocks} {s.tile_rows}x{s.tile_cols} "
            f"{'db' if s.double_buffer else 'sb'} {s.reuse}")


def measure(spec: LayerSpec, hw: HwConfig, schedule: Schedule | None) -> dict:
    """Cycles, utilization, DRAM traffic and energy of ``spec`` lowered with ``schedule``.

    Useful MACs are the layer's unpadded MACs; with skipped zero blocks they can exceed the
    MAC slots issued, and then the issued slots count (skipped work is not core work)."""
    cl = compile_layer(spec, hw, schedule)
    work = program_work(cl.program, hw)
    slots = sum(w.mac_slots for w in work)
    useful = min(cl.stats.useful_macs, slots)
    cyc = cycle_report(cl.program, hw, useful_macs=useful, work=work)
    energy = energy_report(work, hw)
    gemms = [i for i, w in enumerate(work) if w.mac_slots]
    return {
        "schedule": dataclasses.asdict(cl.schedule), "knobs": knobs(cl.schedule),
        "cycles": cyc.total_cycles, "busy_cycles": dict(cyc.busy_cycles),
        "useful_macs": useful, "layer_macs": cl.stats.useful_macs, "mac_slots": slots,
        "gemm_utilization": cyc.gemm_utilization,
        "dram_read_bytes": dict(cyc.dram_read_bytes), "dram_write_bytes": dict(cyc.dram_write_bytes),
        "dram_bytes": cyc.dram_bytes, "dram_bound_cycles": cyc.dram_bound_cycles,
        # cycles before the first MAC and after the last: the start and end nothing overlaps
        "lead_in_cycles": cyc.start[gemms[0]] if gemms else cyc.total_cycles,
        "tail_cycles": cyc.total_cycles - cyc.finish[gemms[-1]] if gemms else 0,
        "energy_pj": energy["total_pj"], "energy_breakdown_pj": {k: energy[k] for k in ENERGY_PARTS},
        "sram_pj_by_buffer": dict(energy["sram_pj_by_buffer"]),
        "instructions": cl.stats.instructions, "weight_blocks": cl.stats.weight_blocks,
        "skipped_weight_blocks": cl.stats.skipped_weight_blocks,
        "seconds": cyc.total_cycles / (hw.clock_mhz * 1e6),
    }


def candidates(p: ConvProblem, hw: HwConfig, top: int, sample: int, rng) -> tuple[list, int]:
    """(schedules to measure, size of the space): the ``top`` best by the lowering's own
    rough estimate (the first is its default schedule) and ``sample`` drawn at random from
    the rest, so the search is not blind to what the estimate ranks badly."""
    space = schedule_space(p, hw)
    ranked = sorted(space, key=lambda s: (estimated_cost(p, s, hw), -s.double_buffer))
    rest = ranked[top:]
    picks = rng.choice(len(rest), size=min(sample, len(rest)), replace=False) if rest else []
    return ranked[:top] + [rest[i] for i in sorted(picks)], len(space)


def best_of(tried: list[dict]) -> dict:
    """The least-energy schedule among those within CYCLE_TOLERANCE of the fewest cycles: a
    0.1% cycle gain bought with many more DRAM bytes is not the schedule anyone would ship."""
    fewest = min(r["cycles"] for r in tried)
    near = [r for r in tried if r["cycles"] <= fewest * (1 + CYCLE_TOLERANCE)]
    return min(near, key=lambda r: (r["energy_pj"], r["cycles"]))


def search(spec: LayerSpec, hw: HwConfig, top: int, sample: int, rng, progress=None) -> dict:
    """The best measured schedule (``best_of``) and the search record."""
    scheds, space = candidates(problem_of(spec, hw), hw, top, sample, rng)
    tried = []
    for s in scheds:
        tried.append(measure(spec, hw, s))
        if progress is not None:
            progress.update(1)
    best = best_of(tried)
    return {**best, "search": {"space": space, "evaluated": len(tried),
                               "default_knobs": tried[0]["knobs"],
                               "default_cycles": tried[0]["cycles"],
                               "fewest_cycles": min(r["cycles"] for r in tried),
                               "cycle_tolerance": CYCLE_TOLERANCE,
                               "tried": [[r["knobs"], r["cycles"], r["energy_pj"]] for r in tried]}}


def fsim_check(spec: LayerSpec, hw: HwConfig, schedule: dict, rng) -> dict:
    """Run the best program on the functional simulator with a random input: == reference?"""
    cl = compile_layer(spec, hw, Schedule(**schedule))
    x = rng.integers(-128, 128, spec.input_shape).astype(np.int8)
    start = time.perf_counter()
    result = simulate(cl.bind(x), hw)
    seconds = time.perf_counter() - start
    exact = bool(np.array_equal(cl.read_output(result.dram), spec.reference(x)))
    return {"exact": exact, "seconds": seconds}
