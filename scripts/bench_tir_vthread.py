"""Cycles of virtual threads (``Schedule.virtual_threads`` = 2) against one thread, by the
cycle model, on ResNet-18's ImageNet convolutions C2-C11 (tvm_ternary.models).

    python scripts/bench_tir_vthread.py [--hw default]

For each layer's default schedule, the same tiles with double buffering on and off, each with
1 and 2 virtual threads (the TIR route; programs checked bit-exact on fsim elsewhere, in
tests/vta/compiler/test_tir_vthread.py). A combination whose buffers cannot hold it is
reported with the knob at fault. Prints a markdown table; the cycle model is deterministic.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from tvm_ternary.models import RESNET18_IMAGENET_CONVS
from vta_ext import HwConfig
from vta_ext.compiler.geometry import problem_of
from vta_ext.compiler.lower import compile_layer
from vta_ext.compiler.schedule import misfit
from vta_ext.sim.perf import estimate

try:  # run as a script from the repository root
    from bench_tir_lowering import conv_spec
except ImportError:  # imported as scripts.bench_tir_vthread
    from scripts.bench_tir_lowering import conv_spec


def layer_cycles(spec, hw: HwConfig) -> dict:
    """{(double_buffer, virtual_threads): cycles or the misfit} for the default tiles."""
    base = compile_layer(spec, hw).schedule
    p = problem_of(spec, hw)
    out = {"schedule": base}
    for db in (True, False):
        for vt in (1, 2):
            s = dataclasses.replace(base, double_buffer=db, virtual_threads=vt)
            why = misfit(p, s, hw)
            if why:
                out[db, vt] = why
                continue
            cl = compile_layer(spec, hw, s)
            out[db, vt] = estimate(cl.program, hw, p.useful_macs).cycles.total_cycles
    return out


def _cell(r: dict, db: bool) -> str:
    one, two = r[db, 1], r[db, 2]
    if isinstance(one, str):
        return "n/a | n/a | n/a"
    if isinstance(two, str):
        return f"{one} | n/a ({two}) | -"
    return f"{one} | {two} | {two / one:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="default")
    args = ap.parse_args()
    hw = HwConfig.load(args.hw)
    rng = np.random.default_rng(0)
    print("| layer | default tiles (to, tc, th, tw, reuse) | db: 1 thread | db: 2 threads | "
          "ratio | no db: 1 thread | no db: 2 threads | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for conv in RESNET18_IMAGENET_CONVS[1:]:
        r = layer_cycles(conv_spec(conv, rng), hw)
        s = r["schedule"]
        tiles = (s.tile_out_blocks, s.tile_in_blocks, s.tile_rows, s.tile_cols, s.reuse)
        print(f"| {conv.name} | {tiles} | {_cell(r, True)} | {_cell(r, False)} |")


if __name__ == "__main__":
    main()
