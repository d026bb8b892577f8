"""The TIR route: the layer's block GEMM scheduled with ``tvm.s_tir.Schedule`` (the knobs of
``schedule.Schedule`` as splits and a reorder), tensorized onto a VTA-style GEMM intrinsic,
lowered, and walked to one record per GEMM call (DESIGN, "TVM version facts").

``gemm_records`` gives, in the lowered loop nest's execution order, every block product the
schedule issues as ``(ob, cb, i, j, y, x)``: output block, input block, kernel tap and
output pixel. The loop-nest emitter (``emit.py``) must issue exactly these products in the
same tile/step order; the tests check that, so this route can replace the emitter's loop
nest behind the same knobs. Zero-block skipping is a filter on the records (a block whose
weights are zero issues nothing); TIR has no notion of it.
"""

from __future__ import annotations

import numpy as np

from .geometry import ConvProblem, ceil_div
from .schedule import Schedule

GEMM_SYMBOL = "VTAGemm"
_INTRIN_CACHE: dict = {}


def _intrin(bo: int, bi: int) -> str:
    """Register (once) the block GEMM intrinsic ``C[o] += A[c] * W[o, c]`` for batch 1."""
    import tvm
    from tvm.script import tirx as T

    name = f"tternary_vta_gemm_{bo}x{bi}"
    if name in _INTRIN_CACHE:
        return name

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, w: T.handle, c: T.handle):
        A = T.match_buffer(a, (bi,), "int8", offset_factor=1)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1)
        C = T.match_buffer(c, (bo,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:bo], A[0:bi], W[0:bo, 0:bi])
            T.writes(C[0:bo])
            for o, k in T.grid(bo, bi):
                with T.sblock("update"):
                    vo, vk = T.axis.remap("SR", [o, k])
                    C[vo] = C[vo] + T.Cast("int32", A[vk]) * T.Cast("int32", W[vo, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, w: T.handle, c: T.handle):
        A = T.match_buffer(a, (bi,), "int8", offset_factor=1)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1)
        C = T.match_buffer(c, (bo,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:bo], A[0:bi], W[0:bo, 0:bi])
            T.writes(C[0:bo])
            T.evaluate(T.call_extern("int32", GEMM_SYMBOL, C.data, C.elem_offset, A.data,
                                     A.elem_offset, W.data, W.elem_offset))

    tvm.s_tir.TensorIntrin.register(name, desc, impl, override=True)
    _INTRIN_CACHE[name] = True
    return name


def _padded(p: ConvProblem, s: Schedule) -> tuple[int, int, int, int]:
    """Extents rounded up to whole tiles (TIR splits then divide; records past the real
    extents are dropped)."""
    return (ceil_div(p.out_blocks, s.tile_out_blocks) * s.tile_out_blocks,
            ceil_div(p.in_blocks, s.tile_in_blocks) * s.tile_in_blocks,
            ceil_div(p.oh, s.tile_rows) * s.tile_rows,
            ceil_div(p.ow, s.tile_cols) * s.tile_cols)


def scheduled_gemm(p: ConvProblem, s: Schedule):
    """The block GEMM of one (image group, group) as a scheduled, tensorized PrimFunc."""
    import tvm
    from tvm import te

    if p.batch != 1:
        raise NotImplementedError("the TIR route covers batch = 1 configurations")
    nob, ncb, oh, ow = _padded(p, s)
    rs, (sw, dh, dw) = p.loaded_row_stride, (p.loaded_col_stride, *p.dilation)
    rows, cols = (oh - 1) * rs + (p.kh - 1) * dh + 1, (ow - 1) * sw + (p.kw - 1) * dw + 1
    bo, bi = p.block_out, p.block_in
    A = te.placeholder((ncb, rows, cols, bi), "int8", name="A")
    W = te.placeholder((nob, ncb, p.kh, p.kw, bo, bi), "int8", name="W")
    cb = te.reduce_axis((0, ncb), "cb")
    i, j = te.reduce_axis((0, p.kh), "i"), te.reduce_axis((0, p.kw), "j")
    c = te.reduce_axis((0, bi), "c")
    C = te.compute(
        (nob, oh, ow, bo),
        lambda ob, y, x, o: te.sum(A[cb, y * rs + i * dh, x * sw + j * dw, c].astype("int32")
                                   * W[ob, cb, i, j, o, c].astype("int32"), axis=[cb, i, j, c]),
        name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([A, W, C]))
    blk = sch.get_sblock("C")
    ob, y, x, o, cb, i, j, c = sch.get_loops(blk)
    ob_o, ob_i = sch.split(ob, [None, s.tile_out_blocks])
    y_o, y_i = sch.split(y, [None, s.tile_rows])
    x_o, x_i = sch.split(x, [None, s.tile_cols])
    cb_o, cb_i = sch.split(cb, [None, s.tile_in_blocks])
    outer = (ob_o, y_o, x_o) if s.reuse == "weight" else (y_o, x_o, ob_o)
    sch.reorder(*outer, cb_o, ob_i, cb_i, i, j, y_i, x_i, o, c)
    sch.decompose_reduction(blk, cb_o)  # the accumulator reset: a separate (reset) pass
    sch.tensorize(o, _intrin(bo, bi))
    return sch.mod["main"], (A, W, C)


def _lower(func):
    import tvm

    mod = tvm.IRModule({"main": func})
    passes = [tvm.s_tir.transform.LowerInitBlock(), tvm.s_tir.transform.ConvertBlocksToOpaque(),
              tvm.s_tir.transform.CompactBufferAllocation(), tvm.s_tir.transform.LowerMatchBuffer(),
              tvm.s_tir.transform.LowerOpaqueBlock(), tvm.tirx.transform.FlattenBuffer()]
    for ps in passes:
        mod = ps(mod)
    return mod["main"]


# ----------------------------------------------------------------------------- the walker

def _eval(expr, env: dict):
    """Value of an integer PrimExpr over numpy arrays bound to its loop variables."""
    if isinstance(expr, (int, np.integer)):
        return int(expr)
    kind = type(expr).__name__
    if kind == "Var":
        return env[expr.name]
    if kind == "IntImm":
        return int(expr.value)
    if kind == "Cast":
        return _eval(expr.value, env)
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
              "FloorDiv": np.floor_divide, "FloorMod": np.mod, "Min": np.minimum,
              "Max": np.maximum}
    if kind in binary:
        return binary[kind](_eval(expr.a, env), _eval(expr.b, env))
    raise NotImplementedError(f"TIR walker: no rule for {kind} ({expr})")


def _walk(stmt, loops: list, out: list) -> None:
    """Collect (loop nest, call) for every GEMM intrinsic call, in execution order."""
    kind = type(stmt).__name__
    if kind == "For":
        _walk(stmt.body, loops + [(stmt.loop_var.name, int(stmt.min), int(stmt.extent))], out)
    elif kind == "SeqStmt":
        for s in stmt.seq:
            _walk(s, loops, out)
    elif kind in ("LetStmt", "AttrStmt", "Allocate", "DeclBuffer", "AllocBuffer"):
        if getattr(stmt, "body", None) is not None:  # 0.27: DeclBuffer is a statement of a sequence
            _walk(stmt.body, loops, out)
    elif kind == "IfThenElse":
        raise NotImplementedError("TIR walker: conditional GEMM (the splits should divide)")
    elif kind == "Evaluate":
        call = stmt.value
        if type(call).__name__ == "Call" and call.op.name == "tirx.call_extern" \
                and call.args[0].value == GEMM_SYMBOL:
            out.append((loops, call))


def gemm_records(p: ConvProblem, s: Schedule) -> np.ndarray:
    """``[n, 6]`` int64 rows ``(ob, cb, i, j, y, x)`` of every block product of one (image
    group, group), in the execution order of the scheduled, lowered TIR."""
    func, _ = scheduled_gemm(p, s)
    calls = []
    _walk(_lower(func).body, [], calls)
    nob, ncb, oh, ow = _padded(p, s)
    bo, bi = p.block_out, p.block_in
    rs = p.loaded_row_stride
    rows_a = (oh - 1) * rs + (p.kh - 1) * p.dilation[0] + 1
    cols_a = (ow - 1) * p.loaded_col_stride + (p.kw - 1) * p.dilation[1] + 1
    out = []
    for loops, call in calls:
        grids = np.meshgrid(*[np.arange(lo, lo + n) for _, lo, n in loops], indexing="ij")
        env = {name: g.reshape(-1) for (name, _, _), g in zip(loops, grids)}
        size = grids[0].size if grids else 1
        c_off, a_off, w_off = (np.broadcast_to(_eval(call.args[k], env), (size,))
                               for k in (2, 4, 6))
        ob, rest = np.divmod(c_off // bo, oh * ow)
        y, x = np.divmod(rest, ow)
        cb, i, j = np.unravel_index(w_off // (bo * bi), (nob, ncb, p.kh, p.kw))[1:]
        # the input block must be the one this product needs (a check of the lowering)
        a_cb, a_rest = np.divmod(a_off // bi, rows_a * cols_a)
        a_r, a_c = np.divmod(a_rest, cols_a)
        w_ob = w_off // (bo * bi * ncb * p.kh * p.kw)
        assert (w_ob == ob).all() and (a_cb == cb).all()
        assert (a_r == y * rs + i * p.dilation[0]).all()
        assert (a_c == x * p.loaded_col_stride + j * p.dilation[1]).all()
        out.append(np.stack([ob, cb, i, j, y, x], axis=1))
    rec = np.concatenate(out) if out else np.zeros((0, 6), np.int64)
    keep = (rec[:, 0] < p.out_blocks) & (rec[:, 1] < p.in_blocks) & (rec[:, 4] < p.oh) \
        & (rec[:, 5] < p.ow)
    return rec[keep]


def step_products(p: ConvProblem, s: Schedule):
    """``products_of(tile, step)`` for the emitter: each reduction step's block products
    ``(obl, cbl, i, j)`` (relative to the tile), in the TIR loop nest's order, read off the
    records of the step's first output pixel (the hardware loops cover the others)."""
    rec = gemm_records(p, s)
    by_step: dict = {}
    for ob, cb, i, j, y, x in rec.tolist():
        ot, ct = ob // s.tile_out_blocks, cb // s.tile_in_blocks
        if (y, x) != (0, 0):
            continue
        by_step.setdefault((ot, ct), []).append((ob - ot * s.tile_out_blocks,
                                                 cb - ct * s.tile_in_blocks, i, j))

    def products_of(tile, step):
        return by_step[(tile.out_blocks.start // s.tile_out_blocks,
                        step.start // s.tile_in_blocks)]

    return products_of
