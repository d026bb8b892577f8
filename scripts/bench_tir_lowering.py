"""Compile time of the accelerator lowering per layer: the TIR route against the loop nest.

    python scripts/bench_tir_lowering.py [--hw default] [--repeats 5]

For ResNet-18's ImageNet convolutions C1-C11 (tvm_ternary.models) with random ternary
weights, on the layer's default schedule: ``compile_layer`` by the loop nest, by the TIR
route cold (its per-shape-class caches cleared: the PrimFunc is built, scheduled, lowered
and walked) and warm (cached), and the TIR-only part of a cold compile (schedule + lower +
plan + run). Min and median over ``--repeats`` in seconds; both routes in the same run so
the ratio holds on a busy machine. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tvm_ternary.models import RESNET18_IMAGENET_CONVS
from vta_ext import HwConfig
from vta_ext.compiler import tir_intrin, tir_walk
from vta_ext.compiler.geometry import problem_of
from vta_ext.compiler.layer import LayerSpec
from vta_ext.compiler.lower import compile_layer


def conv_spec(conv, rng) -> LayerSpec:
    k, c, o = conv.kernel, conv.cin, conv.cout
    n = o
    return LayerSpec(name=conv.name, kind="conv2d", input_shape=(1, c, conv.size, conv.size),
                     weight=rng.choice(np.array([-1, 0, 1], np.int8), size=(o, c, k, k)),
                     bias=np.zeros(n, np.int64), mult_p=np.full(n, 1 << 14, np.int64),
                     mult_n=np.full(n, 1 << 14, np.int64), epilogue="requantize",
                     shift=np.full(n, 20, np.int64), stride=(conv.stride,) * 2,
                     padding=(conv.pad,) * 2)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _clear_caches() -> None:
    tir_walk.compile_plan.cache_clear()


def bench_layer(spec: LayerSpec, hw: HwConfig, repeats: int) -> dict:
    s = compile_layer(spec, hw, lowering="loops").schedule
    p = problem_of(spec, hw)
    loops, cold, warm, tir_only = [], [], [], []
    for _ in range(repeats):
        loops.append(_timed(lambda: compile_layer(spec, hw, s, lowering="loops")))
        _clear_caches()
        cold.append(_timed(lambda: compile_layer(spec, hw, s, lowering="tir")))
        warm.append(_timed(lambda: compile_layer(spec, hw, s, lowering="tir")))
        _clear_caches()
        tir_only.append(_timed(lambda: tir_walk.walk_layer(p, s)))
    return {name: (min(v), statistics.median(v)) for name, v in
            (("loops", loops), ("tir_cold", cold), ("tir_warm", warm), ("tir_only", tir_only))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="default")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    hw = HwConfig.load(args.hw)
    rng = np.random.default_rng(0)
    t_first = _timed(lambda: (tir_intrin.gemm_intrin(hw.batch, hw.block_out, hw.block_in),
                              tir_intrin.alu_intrin(hw.batch, hw.block_out, False)))
    print(f"first use in a process (TVMScript intrinsics parsed and registered): {t_first:.2f} s\n")
    print("| layer | loops | TIR cold | TIR warm | TIR-only part (cold) | cold / loops |")
    print("|---|---|---|---|---|---|")
    for conv in RESNET18_IMAGENET_CONVS:
        r = bench_layer(conv_spec(conv, rng), hw, args.repeats)
        cells = " | ".join(f"{r[k][0]:.3f} / {r[k][1]:.3f}"
                           for k in ("loops", "tir_cold", "tir_warm", "tir_only"))
        print(f"| {conv.name} | {cells} | {r['tir_cold'][1] / r['loops'][1]:.2f} |")
    print("\n(min / median seconds)")


if __name__ == "__main__":
    main()
