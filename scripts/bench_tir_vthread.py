"""Cycles of virtual threads (``Schedule.virtual_threads`` = 2) against one thread, by the
cycle model, on ResNet-18's ImageNet convolutions C2-C11 (tvm_ternary.models).

    python scripts/bench_tir_vthread.py [--hw default]

Table 1: each layer's default schedule with double buffering on and off, against two threads
each running half of its output blocks (same tiles otherwise). Table 2: the fewest cycles
among the ``--top`` schedules of each thread count ranked by ``estimated_cost``. TIR route;
the programs are checked bit-exact on fsim in tests/vta/compiler/test_tir_vthread.py. A
combination the buffers cannot hold is reported with the knob at fault. Prints markdown; the
cycle model is deterministic.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from tvm_ternary.models import RESNET18_IMAGENET_CONVS
from vta_ext import HwConfig
from vta_ext.compiler.geometry import problem_of
from vta_ext.compiler.lower import compile_layer
from vta_ext.compiler.schedule import estimated_cost, misfit, schedule_space
from vta_ext.sim.perf import estimate

try:  # run as a script from the repository root
    from bench_tir_lowering import conv_spec
except ImportError:  # imported as scripts.bench_tir_vthread
    from scripts.bench_tir_lowering import conv_spec


def _cycles(spec, hw: HwConfig, s) -> int:
    p = problem_of(spec, hw)
    return estimate(compile_layer(spec, hw, s).program, hw, p.useful_macs).cycles.total_cycles


def layer_cycles(spec, hw: HwConfig) -> dict:
    """{(double_buffer, virtual_threads): cycles or the misfit}: the default tiles with one
    thread, and two threads each running half the default's output blocks (the same output
    blocks in flight, as the old VTA split its output-channel tile over ``cthread``)."""
    base = compile_layer(spec, hw).schedule
    p = problem_of(spec, hw)
    out = {"schedule": base}
    for db in (True, False):
        for vt in (1, 2):
            to = base.tile_out_blocks if vt == 1 else max(1, base.tile_out_blocks // 2)
            s = dataclasses.replace(base, double_buffer=db, virtual_threads=vt,
                                    tile_out_blocks=to)
            why = misfit(p, s, hw)
            out[db, vt] = why if why else _cycles(spec, hw, s)
    return out


def best_cycles(spec, hw: HwConfig, top: int) -> dict:
    """{virtual_threads: (cycles, schedule)}: the fewest cycles among the ``top`` schedules
    of each thread count ranked by ``estimated_cost`` (what a tuner measures first)."""
    p = problem_of(spec, hw)
    space = schedule_space(p, hw)
    out = {}
    for vt in (1, 2):
        ranked = sorted((s for s in space if s.virtual_threads == vt),
                        key=lambda s: estimated_cost(p, s, hw))[:top]
        out[vt] = min(((_cycles(spec, hw, s), s) for s in ranked), key=lambda cs: cs[0],
                      default=(None, None))
    return out


def _cell(r: dict, db: bool) -> str:
    one, two = r[db, 1], r[db, 2]
    if isinstance(one, str):
        return "n/a | n/a | -"
    if isinstance(two, str):
        return f"{one} | n/a ({two}) | -"
    return f"{one} | {two} | {two / one:.3f}"


def _knobs(s) -> str:
    return (f"{s.tile_out_blocks},{s.tile_in_blocks},{s.tile_rows},{s.tile_cols},"
            f"{'db' if s.double_buffer else 'sb'},{s.reuse[0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="default")
    ap.add_argument("--top", type=int, default=6)
    args = ap.parse_args()
    hw = HwConfig.load(args.hw)
    rng = np.random.default_rng(0)
    specs = [conv_spec(conv, rng) for conv in RESNET18_IMAGENET_CONVS[1:]]
    print("| layer | default tiles (to,tc,th,tw) | db: 1 thread | db: 2 threads x to/2 | "
          "ratio | no db: 1 thread | no db: 2 threads x to/2 | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in specs:
        r = layer_cycles(spec, hw)
        print(f"| {spec.name} | {_knobs(r['schedule'])} | {_cell(r, True)} | "
              f"{_cell(r, False)} |")
    print(f"\n| layer | best of top {args.top}, 1 thread | best of top {args.top}, 2 threads "
          "| ratio |")
    print("|---|---|---|---|")
    for spec in specs:
        b = best_cycles(spec, hw, args.top)
        (c1, s1), (c2, s2) = b[1], b[2]
        two = f"{c2} ({_knobs(s2)})" if c2 is not None else "none fits"
        ratio = f"{c2 / c1:.3f}" if c2 is not None else "-"
        print(f"| {spec.name} | {c1} ({_knobs(s1)}) | {two} | {ratio} |")


if __name__ == "__main__":
    main()
