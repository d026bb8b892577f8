"""A whole accelerator layer as one ``tvm.s_tir``-scheduled, tensorized PrimFunc.

The layer is the canonical grouped convolution of ``geometry.ConvProblem`` in blocks,
extended to whole tiles (the walker drops what lies past the real extents):

    A [IG, G, ncb, rows, cols, batch, bi]   input, in loaded rows/columns (padding included)
    W [G, nob, ncb, kh, kw, bo, bi]         weight blocks
    P [G, nob, 1, bo]                       per-channel epilogue parameters
    S [IG, G, nob, oh, ow, batch, bo]       a fused residual add's second input (RESIDUAL)
    C [IG, G, nob, oh, ow, batch, bo]       accumulators  (scope local.acc_buffer)
    R = epilogue(C, P (, S))                results       (scope local.acc_buffer)
    O = R, or O = C (ACCUMULATE: the int32 accumulators are stored for the host)

The knobs of ``schedule.Schedule`` become schedule primitives: the tile splits of output
blocks, rows, columns and input blocks, the loop order of ``reuse`` (the tile loop is the
innermost of the three outer loops), ``cache_read`` of A and W into the input and weight
buffers at the reduction step, of P into the parameter buffer and S into the accumulator
buffer at the tile,
``reverse_compute_at`` of the epilogue and the store at the tile, and ``tensorize`` of every
copy, product, epilogue and store block onto ``tir_intrin``. The accumulator reset is
``decompose_reduction`` at the step loop (the emitter turns it into first-bit micro-ops).

Double buffering is not a loop of this PrimFunc: the slot a step's operands land in
depends on what each slot still holds (reuse across tiles), which the walker tracks
(``tir_program``). ``Schedule.virtual_threads`` = 2 is: the output-block tile loop split in
two, the inner part bound to ``vthread.x`` (the old VTA's ``cthread``) before the reduction is
decomposed (0.27 refuses the binding afterwards); ``InjectVirtualThread`` (``tir_walk``) then
repeats every statement that depends on the thread once per thread, and leaves the input
load, which does not, shared.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import tir_intrin as ti
from .geometry import ConvProblem, ceil_div
from .schedule import Schedule

# loop names of the scheduled PrimFunc the walker iterates (everything inside is one event)
IMAGE_GROUP, GROUP, OUT_TILE, ROW_TILE, COL_TILE, STEP = "n", "g", "ob_0", "y_0", "x_0", "cb_0"
OUTER_LOOPS = (IMAGE_GROUP, GROUP, OUT_TILE, ROW_TILE, COL_TILE, STEP)
VTHREAD = "ob_1"  # with virtual threads: the output-tile loop of one thread (bound, then unrolled)
# what a tile ends with: the ALU epilogue, the ALU with a residual input, or no ALU
ALU, RESIDUAL, ACCUMULATE = "alu", "residual", "accumulate"


@dataclass(frozen=True)
class LayerShape:
    """Everything the PrimFunc depends on: the shape class of a (problem, schedule). Two
    layers with equal LayerShapes share one walked PrimFunc (``tir_walk.compile_plan``)."""

    image_groups: int
    groups: int
    out_blocks: int      # extended to whole tiles
    in_blocks: int       # extended to whole steps
    oh: int              # extended to whole tiles
    ow: int
    kh: int
    kw: int
    row_stride: int      # loaded rows between the input rows of consecutive output rows
    col_stride: int
    dilation: tuple
    batch: int
    block_out: int
    block_in: int
    tile: tuple          # (out blocks, in blocks, rows, cols)
    reuse: str
    epilogue: str        # ALU, RESIDUAL or ACCUMULATE
    threads: int = 1     # virtual threads over the output-block tiles

    @property
    def in_rows(self) -> int:
        return (self.oh - 1) * self.row_stride + (self.kh - 1) * self.dilation[0] + 1

    @property
    def in_cols(self) -> int:
        return (self.ow - 1) * self.col_stride + (self.kw - 1) * self.dilation[1] + 1


def layer_shape(p: ConvProblem, s: Schedule, epilogue: str = ALU) -> LayerShape:
    to, tc, th, tw = s.tile_out_blocks, s.tile_in_blocks, s.tile_rows, s.tile_cols
    vt = s.virtual_threads
    return LayerShape(image_groups=p.image_groups, groups=p.groups,
                      out_blocks=ceil_div(p.out_blocks, to * vt) * to * vt,
                      in_blocks=ceil_div(p.in_blocks, tc) * tc,
                      oh=ceil_div(p.oh, th) * th, ow=ceil_div(p.ow, tw) * tw, kh=p.kh, kw=p.kw,
                      row_stride=p.loaded_row_stride, col_stride=p.loaded_col_stride,
                      dilation=tuple(p.dilation), batch=p.batch, block_out=p.block_out,
                      block_in=p.block_in, tile=(to, tc, th, tw), reuse=s.reuse,
                      epilogue=epilogue, threads=vt)


def _compute(ls: LayerShape):
    from tvm import te

    bo, bi, nb = ls.block_out, ls.block_in, ls.batch
    rs, sw, (dh, dw) = ls.row_stride, ls.col_stride, ls.dilation
    A = te.placeholder((ls.image_groups, ls.groups, ls.in_blocks, ls.in_rows, ls.in_cols, nb, bi),
                       "int8", name="A")
    W = te.placeholder((ls.groups, ls.out_blocks, ls.in_blocks, ls.kh, ls.kw, bo, bi), "int8",
                       name="W")
    P = te.placeholder((ls.groups, ls.out_blocks, 1, bo), "int32", name="P")
    cb = te.reduce_axis((0, ls.in_blocks), "cb")
    i, j = te.reduce_axis((0, ls.kh), "i"), te.reduce_axis((0, ls.kw), "j")
    c = te.reduce_axis((0, bi), "c")
    shape = (ls.image_groups, ls.groups, ls.out_blocks, ls.oh, ls.ow, nb, bo)
    C = te.compute(shape, lambda n, g, ob, y, x, b, o: te.sum(
        A[n, g, cb, y * rs + i * dh, x * sw + j * dw, b, c].astype("int32")
        * W[g, ob, cb, i, j, o, c].astype("int32"), axis=[cb, i, j, c]), name="C")
    if ls.epilogue == ACCUMULATE:
        return [A, W, te.compute(shape, lambda *ax: C(*ax), name="O")]
    if ls.epilogue == RESIDUAL:
        S = te.placeholder(shape, "int8", name="S")
        R = te.compute(shape, lambda n, g, ob, y, x, b, o:
                       (C[n, g, ob, y, x, b, o] * P[g, ob, 0, o]
                        + S[n, g, ob, y, x, b, o].astype("int32")).astype("int8"), name="R")
        inputs = [A, W, P, S]
    else:
        R = te.compute(shape, lambda n, g, ob, y, x, b, o:
                       (C[n, g, ob, y, x, b, o] * P[g, ob, 0, o]).astype("int8"), name="R")
        inputs = [A, W, P]
    return inputs + [te.compute(shape, lambda *ax: R(*ax), name="O")]


def scheduled_layer(ls: LayerShape):
    """The scheduled, tensorized PrimFunc of ``ls``."""
    import tvm
    from tvm import te

    to, tc, th, tw = ls.tile
    bo, bi, nb = ls.block_out, ls.block_in, ls.batch
    sch = tvm.s_tir.Schedule(te.create_prim_func(_compute(ls)))
    cblk, oblk = sch.get_sblock("C"), sch.get_sblock("O")
    sch.set_scope(cblk, 0, ti.ACC_SCOPE)
    n, g, ob, y, x, b, o, cb, i, j, c = sch.get_loops(cblk)
    if ls.threads > 1:
        ob_o, ob_v, ob_i = sch.split(ob, [None, ls.threads, to])
    else:
        ob_o, ob_i = sch.split(ob, [None, to])
    y_o, y_i = sch.split(y, [None, th])
    x_o, x_i = sch.split(x, [None, tw])
    cb_o, cb_i = sch.split(cb, [None, tc])
    outer = (ob_o, y_o, x_o) if ls.reuse == "weight" else (y_o, x_o, ob_o)
    if ls.threads > 1:  # one output tile per thread, inside the tile loops
        outer = (*outer, ob_v)
    sch.reorder(n, g, *outer, cb_o, ob_i, cb_i, i, j, y_i, x_i, b, o, c)
    if ls.threads > 1:  # before decompose_reduction: 0.27 refuses it afterwards
        sch.bind(ob_v, "vthread.x")
    tile = outer[-1]
    rblk = None if ls.epilogue == ACCUMULATE else sch.get_sblock("R")
    if rblk is not None:
        sch.set_scope(rblk, 0, ti.ACC_SCOPE)
        sch.reverse_compute_at(rblk, tile)
    sch.reverse_compute_at(oblk, tile)
    a_buf = sch.cache_read(cblk, 0, ti.INP_SCOPE)
    w_buf = sch.cache_read(cblk, 1, ti.WGT_SCOPE)
    copies = [] if rblk is None else _epilogue_reads(sch, rblk, tile, ls.epilogue == RESIDUAL)
    sch.compute_at(a_buf, cb_o)
    sch.compute_at(w_buf, cb_o)
    sch.decompose_reduction(cblk, cb_o)
    sch.tensorize(b if nb > 1 else o, ti.gemm_intrin(nb, bo, bi))
    if rblk is not None:
        sch.tensorize(sch.get_loops(rblk)[-2 if nb > 1 else -1],
                      ti.alu_intrin(nb, bo, ls.epilogue == RESIDUAL))
    for block, symbol in [(a_buf, ti.LOAD_INP), (w_buf, ti.LOAD_WGT), *copies,
                          (oblk, ti.STORE)]:
        _mark_copy(sch, block, symbol)
    return sch.mod["main"]


def _epilogue_reads(sch, rblk, tile, residual: bool) -> list:
    """The epilogue's parameters (and residual blocks) read into their buffers at the
    tile; the copy blocks with their DMA symbols."""
    copies = [(sch.cache_read(rblk, 1, ti.PAR_SCOPE), ti.LOAD_PAR)]
    if residual:
        copies.append((sch.cache_read(rblk, 2, ti.ACC_SCOPE), ti.LOAD_RES))
    for block, _ in copies:
        sch.compute_at(block, tile)
    return copies


def _mark_copy(sch, block, symbol: str) -> None:
    """Mark a copy block's outermost own loop as one DMA (the old VTA's ``dma_copy``
    pragma): the walker reads the copied region off the loop nest below the mark. A block
    always keeps its element loop, so it has at least one loop of its own."""
    own = [lp for lp in sch.get_loops(block)
           if sch.get(lp).loop_var.name not in (*OUTER_LOOPS, VTHREAD)]
    sch.annotate(own[0], ti.DMA_PRAGMA, symbol)
