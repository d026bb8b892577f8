"""The tiled GEMM's schedule: ``gemm_compute``'s blocks tiled, parallelized and tensorized.

Loop nest (``R`` = ``spec.tile_rows`` channel vectors, ``B`` = ``spec.tile_pixels``):

    parallel task = (group, row tile, pixel split)
      decode the task's R x KS weight vectors once (``decode`` at the task: the cached tile)
      for each pixel tile of the split:
        acc[B, R] = 0                                  (registers: local scope)
        AVX2: for each chunk: acc16 = 0; for s in chunk: for b, r: pmaddubsw; then pmaddwd
        VNNI: for s: for b, r: vpdpbusd
        store: M acc + corr + bias for the real pixels and channels (fused into the tile)

The reduction step is the outer loop of the register tile so that one broadcast activation
word meets ``R`` weight vectors and one weight vector ``B`` pixels.
"""

from __future__ import annotations

from tvm import s_tir

from . import gemm_intrin
from .gemm_compute import make_compute


def schedule_gemm(spec):
    """``make_compute(spec)`` scheduled: returns the PrimFunc (with its global symbol)."""
    sch = s_tir.Schedule(make_compute(spec))
    avx2 = spec.isa == "avx2"
    dot = sch.get_sblock("dot16" if avx2 else "dot")
    top = sch.get_sblock("widen") if avx2 else dot   # the block that owns acc
    sch.set_scope(top, 0, "local")                   # accumulators live in registers
    if avx2:
        sch.set_scope(dot, 0, "local")
    g, p, c, l, red_outer, red_inner = sch.get_loops(top)
    split, mb, b = sch.split(p, [spec.splits, spec.pixel_tiles_per_split, spec.tile_pixels])
    nt, r = sch.split(c, [spec.row_tiles, spec.tile_rows])
    sch.reorder(g, nt, split, mb, red_outer, b, r, l, red_inner)
    task = sch.fuse(g, nt, split)
    sch.parallel(task)
    per_tap = spec.window_tap_steps
    if not avx2 and per_tap:
        # steps as (tap, channel word): the window offset is then computed once per tap,
        # not by a division per step
        red_outer, steps = sch.split(red_outer, [None, per_tap])
        _unroll_steps(sch, steps, per_tap, spec.unroll_steps)
    elif not avx2:
        red_outer = _unroll_steps(sch, red_outer, spec.k_padded // 4, spec.unroll_steps)

    store = sch.get_sblock("store")
    sch.reverse_compute_at(store, mb)
    # its tile loops (pixels, channel vectors, lanes); reverse_compute_at leaves out unit ones
    tile_loops = 1 + (spec.tile_pixels > 1) + (spec.tile_rows // spec.vectors_per_channel_vector > 1)
    for loop in sch.get_loops(store)[-tile_loops:]:
        sch.unroll(loop)
    sch.unroll(b)
    sch.unroll(r)
    if avx2:
        sch.compute_at(dot, red_outer)
    decode = sch.get_sblock("decode")
    sch.compute_at(decode, task)
    dc, _, dl, dt = sch.get_loops(decode)[-4:]
    sch.vectorize(sch.fuse(dl, dt))
    sch.unroll(dc)
    _vectorize_init(sch, sch.decompose_reduction(top, red_outer))
    if avx2:
        # dot16's loops below the chunk, (b, r, l, h, si, tt) without the unit-extent ones
        # compute_at leaves out, reordered to (si, b, r, l, h, tt)
        tile = [n for n, extent in (("b", spec.tile_pixels), ("r", spec.tile_rows)) if extent > 1]
        loops = dict(zip(tile + ["l", "h", "si", "tt"], sch.get_loops(dot)[-(len(tile) + 4):]))
        sch.reorder(loops["si"], *(loops[n] for n in tile), loops["l"], loops["h"], loops["tt"])
        for n in tile:
            sch.unroll(loops[n])
        dl16 = loops["l"]
        _vectorize_init(sch, sch.decompose_reduction(dot, loops["si"]))
        steps, extent = loops["si"], spec.chunk
        if per_tap and spec.chunk % per_tap == 0:       # (tap, channel word), as for VNNI
            _, steps = sch.split(loops["si"], [None, per_tap])
            extent = per_tap
        _unroll_steps(sch, steps, extent, spec.unroll_steps)
        sch.tensorize(dl16, gemm_intrin.AVX2_DOT16)
        sch.tensorize(l, gemm_intrin.AVX2_WIDEN)
    else:
        sch.tensorize(l, gemm_intrin.DOT[spec.isa])
    return sch.mod["main"].with_attr("global_symbol", spec.symbol())


def _unroll_steps(sch, loop, extent: int, factor: int):
    """Unroll the innermost reduction-step loop by ``factor`` (the ``unroll_steps`` knob)
    where it divides the loop's extent; returns the loop that now holds the others."""
    if factor > 1 and extent % factor == 0:
        loop, inner = sch.split(loop, [None, factor])
        sch.unroll(inner)
    return loop


def _vectorize_init(sch, init) -> None:
    """Zero the accumulators one vector at a time: the lane loops (lanes, and the two int16
    halves on AVX2) fused and vectorized."""
    loops = sch.get_loops(init)
    lanes = sch.fuse(*loops[-2:]) if len(sch.get(init).iter_vars) == 6 else loops[-1]
    sch.vectorize(lanes)
