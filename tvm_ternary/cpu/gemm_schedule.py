"""The tiled GEMM's schedule: ``gemm_compute``'s blocks tiled, parallelized and tensorized.

Loop nest (``R`` = ``spec.tile_rows`` channel vectors, ``B`` = ``spec.tile_pixels``):

    parallel task = (group, row tile, pixel split)
      decode the task's R x KS weight vectors once (``decode`` at the task: the cached tile)
      for each pixel tile of the split:
        acc[B, R] = 0                                  (registers: local scope)
        AVX2: for each chunk: acc16 = 0; for s in chunk: for b, r: pmaddubsw; then pmaddwd
        VNNI: for s: for b, r: vpdpbusd
        store: M acc + corr + bias for the real pixels and channels (fused into the tile)

VNNI with K blocks (``spec.k_blocks > 1``: the whole decoded tile would not stay in L1):

    parallel task
      acc[split pixels, R] = 0                         (memory, per task)
      for each K block: decode its R x KB weight vectors (L1)
        for each pixel tile: acc_blk[B, R] = 0; for s in block: for b, r: vpdpbusd;
                             acc += acc_blk
      store, for every pixel of the task

The reduction step is the outer loop of the register tile so that one broadcast activation
word meets ``R`` weight vectors and one weight vector ``B`` pixels.
"""

from __future__ import annotations

from tvm import s_tir

from . import gemm_intrin
from .gemm_compute import make_compute
from .gemm_layout import BLOCK_K, STEP_K


def schedule_gemm(spec):
    """``make_compute(spec)`` scheduled: returns the PrimFunc (with its global symbol)."""
    sch = _schedule_avx2(spec) if spec.isa == "avx2" else _schedule_vnni(spec)
    return sch.mod["main"].with_attr("global_symbol", spec.symbol())


def _schedule_vnni(spec):
    """vpdpbusd register tiles; K blocks when ``spec.k_blocks > 1`` (module docstring)."""
    sch = s_tir.Schedule(make_compute(spec))
    dot, combine = sch.get_sblock("dot"), sch.get_sblock("combine")
    blocked = spec.k_blocks > 1
    sch.set_scope(dot, 0, "local")                   # a K block's accumulators: registers
    if not blocked:
        sch.set_scope(combine, 0, "local")           # one block: the sum is the block's
    g, p, c, l, kb = sch.get_loops(combine)
    split, mb, b = sch.split(p, [spec.splits, spec.pixel_tiles_per_split, spec.tile_pixels])
    nt, r = sch.split(c, [spec.row_tiles, spec.tile_rows])
    if blocked:   # each K block's decoded weights meet every pixel tile of the task
        sch.reorder(g, nt, split, kb, mb, b, r, l)
    else:
        sch.reorder(g, nt, split, mb, kb, b, r, l)
    task = sch.fuse(g, nt, split)
    sch.parallel(task)
    sch.compute_at(dot, mb)
    sch.tensorize(_tile_reduction(sch, dot, spec, ["l"], spec.k_block_steps), gemm_intrin.DOT[spec.isa])
    _store_at(sch, spec, task if blocked else mb)
    cb, cr, cl = sch.get_loops(combine)[-3:]
    sch.unroll(cb)
    sch.unroll(cr)
    sch.vectorize(cl)
    _vectorize_init(sch, sch.decompose_reduction(combine, kb))
    _decode_at(sch, kb if blocked else task)
    return sch


def _tile_reduction(sch, dot, spec, lanes: list, steps_extent: int):
    """The dot's loops below the pixel tile, (b, r, *lanes, s, t) without the unit-extent
    ones compute_at leaves out, reordered to (s, b, r, *lanes, t): one broadcast activation
    word meets R weight vectors; the accumulators zeroed before the steps, b and r
    unrolled. Returns the first lane loop (the one to tensorize)."""
    tile = [n for n, extent in (("b", spec.tile_pixels), ("r", spec.tile_rows)) if extent > 1]
    loops = dict(zip(tile + lanes + ["s", "t"], sch.get_loops(dot)[-(len(tile) + len(lanes) + 2):]))
    sch.reorder(loops["s"], *(loops[n] for n in tile + lanes), loops["t"])
    for n in tile:
        sch.unroll(loops[n])
    _vectorize_init(sch, sch.decompose_reduction(dot, loops["s"]))
    steps, extent, per_tap = loops["s"], steps_extent, spec.window_tap_steps
    if per_tap and steps_extent % per_tap == 0:
        # steps as (tap, channel word): the window offset is then computed once per tap,
        # not by a division per step
        _, steps = sch.split(loops["s"], [None, per_tap])
        extent = per_tap
    _unroll_steps(sch, steps, extent, spec.unroll_steps)
    return loops[lanes[0]]


def _store_at(sch, spec, loop):
    """The store (scale, bias, epilogue) fused at ``loop``, its tile loops unrolled."""
    store = sch.get_sblock("store")
    sch.reverse_compute_at(store, loop)
    # its tile loops (pixels, channel vectors, lanes); reverse_compute_at leaves out unit ones
    tile_loops = 1 + (spec.tile_pixels > 1) + (spec.tile_rows // spec.vectors_per_channel_vector > 1)
    *outer, lanes = sch.get_loops(store)[-tile_loops:]
    for tile_loop in outer:
        sch.unroll(tile_loop)
    sch.vectorize(lanes)


def _decode_at(sch, loop):
    """The decoded weight tile computed at ``loop`` (once per task, or per K block). The
    four steps of a packed byte are unrolled: their shifts become constants (a variable
    byte shift costs a mask built per vector)."""
    decode = sch.get_sblock("decode")
    sch.compute_at(decode, loop)
    dc, ds, dl, dt = sch.get_loops(decode)[-4:]
    sch.vectorize(sch.fuse(dl, dt))
    sch.unroll(sch.split(ds, [None, BLOCK_K // STEP_K])[1])
    sch.unroll(dc)


def _schedule_avx2(spec):
    """pmaddubsw register tiles over int16 chunks, widened by pmaddwd into ``acc``."""
    sch = s_tir.Schedule(make_compute(spec))
    dot, top = sch.get_sblock("dot16"), sch.get_sblock("widen")   # widen owns acc
    sch.set_scope(top, 0, "local")                   # accumulators live in registers
    sch.set_scope(dot, 0, "local")
    g, p, c, l, red_outer, red_inner = sch.get_loops(top)
    split, mb, b = sch.split(p, [spec.splits, spec.pixel_tiles_per_split, spec.tile_pixels])
    nt, r = sch.split(c, [spec.row_tiles, spec.tile_rows])
    sch.reorder(g, nt, split, mb, red_outer, b, r, l, red_inner)
    task = sch.fuse(g, nt, split)
    sch.parallel(task)
    _store_at(sch, spec, mb)
    sch.unroll(b)
    sch.unroll(r)
    sch.compute_at(dot, red_outer)
    _decode_at(sch, task)
    _vectorize_init(sch, sch.decompose_reduction(top, red_outer))
    # the int16 pair (h) is a lane loop too: (si, b, r, l, h, tt)
    sch.tensorize(_tile_reduction(sch, dot, spec, ["l", "h"], spec.chunk), gemm_intrin.AVX2_DOT16)
    sch.tensorize(l, gemm_intrin.AVX2_WIDEN)
    return sch


def _unroll_steps(sch, loop, extent: int, factor: int) -> None:
    """Unroll the innermost reduction-step loop by ``factor`` (the ``unroll_steps`` knob)
    where it divides the loop's extent."""
    if factor > 1 and extent % factor == 0:
        sch.unroll(sch.split(loop, [None, factor])[1])


def _vectorize_init(sch, init) -> None:
    """Zero the accumulators one vector at a time: the lane loops (lanes, and the two int16
    halves on AVX2) fused and vectorized."""
    loops = sch.get_loops(init)
    lanes = sch.fuse(*loops[-2:]) if len(sch.get(init).iter_vars) == 6 else loops[-1]
    sch.vectorize(lanes)
