"""Walk the lowered layer PrimFunc (``tir_layer``) into the tiles the accelerator runs.

TVM 0.27 has no TIR visitor helpers (DESIGN, "TVM version facts"), so this is a small
hand-written walker over the flattened TIR. It runs in two stages, so that TVM is touched
once per shape class and never per tile:

1. ``compile_plan``: lower the PrimFunc and turn it into a plan: the tile loops (named in
   ``tir_layer.OUTER_LOOPS``) and, in program order inside them, one event per intrinsic
   (a ``pragma_vta_dma`` copy nest, or a loop nest around a tensorized GEMM / ALU call).
   Every index of an event is an affine function of the loop variables, read off the
   flattened buffer offsets; what lies inside an event (its own loops) is evaluated once.
2. ``run_plan``: iterate the tile loops in Python, evaluate the event offsets and decode
   them back into block coordinates: each tile's output region (from its STORE), each
   reduction step's input-channel blocks (from its input LOAD) and the step's block
   products ``(obl, cbl, i, j)`` in the GEMM nest's order (from the tensorized calls).

With virtual threads (``Schedule.virtual_threads``), ``InjectVirtualThread`` has put one
statement per thread inside a nest: each becomes an event, and the thread of an event is
read off its offsets (the output block it addresses); the input load is every thread's.

Regions past the real extents (the PrimFunc is extended to whole tiles) are clipped here.
The walker also checks that the copies load what the products read (a check of the
lowering, not of the input): a mismatch is an internal error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import tir_intrin as ti
from .geometry import ConvProblem
from .schedule import Schedule
from .tiling import Span, Tile
from .tir_layer import (ACCUMULATE, ALU, OUTER_LOOPS, RESIDUAL, LayerShape, layer_shape,
                        scheduled_layer)


class WalkError(AssertionError):
    """The lowered TIR does not have the structure the walker maps (a lowering bug)."""


# ----------------------------------------------------------------------------- affine forms

@dataclass(frozen=True)
class Affine:
    const: int
    coef: tuple  # ((loop variable name, coefficient), ...)

    def at(self, env: dict) -> int:
        return self.const + sum(c * env.get(v, 0) for v, c in self.coef)

    def split(self, names) -> tuple[Affine, Affine]:
        """(the part over ``names``, the rest) of this form."""
        inner = tuple((v, c) for v, c in self.coef if v in names)
        outer = tuple((v, c) for v, c in self.coef if v not in names)
        return Affine(0, inner), Affine(self.const, outer)


def affine(expr) -> Affine:
    const, coef = _affine(expr)
    return Affine(const, tuple(sorted((v, c) for v, c in coef.items() if c)))


def _affine(expr) -> tuple[int, dict]:
    kind = type(expr).__name__
    if kind == "IntImm":
        return int(expr.value), {}
    if kind == "Var":
        return 0, {expr.name: 1}
    if kind == "Cast":
        return _affine(expr.value)
    if kind in ("Add", "Sub"):
        (ca, a), (cb, b) = _affine(expr.a), _affine(expr.b)
        sign = 1 if kind == "Add" else -1
        out = dict(a)
        for v, c in b.items():
            out[v] = out.get(v, 0) + sign * c
        return ca + sign * cb, out
    if kind == "Mul":
        (ca, a), (cb, b) = _affine(expr.a), _affine(expr.b)
        if a and b:
            raise WalkError(f"TIR walker: non-affine index {expr}")
        k, (c0, terms) = (ca, (cb, b)) if not a else (cb, (ca, a))
        return k * c0, {v: k * c for v, c in terms.items()}
    raise WalkError(f"TIR walker: no affine rule for {kind} ({expr})")


# ----------------------------------------------------------------------------- the plan

@dataclass
class Loop:
    name: str
    extent: int
    body: list


@dataclass
class Event:
    """One intrinsic: ``bases`` are its offsets (outer-loop affine forms) at the first
    iteration of its own loops; ``inner`` (GEMM only) its offsets over its own loops, ``[n, k]``."""

    symbol: str
    bases: tuple
    inner: np.ndarray | None
    pattern: GemmPattern | None = None  # GEMM: ``inner`` decoded once (``compile_plan``)


def _loop_grid(loops: list) -> dict:
    if not loops:
        return {}
    grids = np.meshgrid(*[np.arange(n) for _, n in loops], indexing="ij")
    return {name: g.reshape(-1) for (name, _), g in zip(loops, grids)}


def _event(symbol: str, loops: list, offsets: list) -> Event:
    """An event's bases; its own offsets over its loops only for a GEMM (the walker reads
    a copy or an ALU at its origin, the first iteration of its own loops)."""
    names = {name for name, _ in loops}
    parts = [off.split(names) for off in offsets]
    bases = tuple(rest for _, rest in parts)
    if symbol != ti.GEMM:
        return Event(symbol, bases, None)
    grid = _loop_grid(loops)
    size = next(iter(grid.values())).size if grid else 1
    inner = [sum((c * grid[v] for v, c in own.coef), np.zeros(size, np.int64))
             for own, _ in parts]
    return Event(symbol, bases, np.stack(inner, axis=1))


_STORES, _LOADS = ("BufferStore", "TensorStore"), ("BufferLoad", "TensorLoad")  # 0.27 names both


def _nest(stmt, loops: list):
    """(own loops, innermost statement) of a perfect loop nest."""
    while type(stmt).__name__ == "For":
        loops = loops + [(stmt.loop_var.name, int(stmt.extent))]
        if int(stmt.min) != 0:
            raise WalkError("TIR walker: loop not starting at 0")
        stmt = stmt.body
    return loops, stmt


def _statements(body) -> list:
    """The innermost statements of a nest: one, or one per virtual thread (InjectVirtualThread
    repeats a thread-dependent statement inside its loops)."""
    return list(body.seq) if type(body).__name__ == "SeqStmt" else [body]


def _copy_events(symbol: str, stmt) -> list[Event]:
    loops, body = _nest(stmt, [])
    out = []
    for store in _statements(body):
        if type(store).__name__ not in _STORES or type(store.value).__name__ not in _LOADS:
            raise WalkError(f"TIR walker: {symbol} is not a copy nest")
        dram = store.indices[0] if symbol == ti.STORE else store.value.indices[0]
        out.append(_event(symbol, loops, [affine(dram)]))
    return out


def _call_events(stmt) -> list[Event]:
    loops, body = _nest(stmt, [])
    out = []
    for st in _statements(body):
        kind = type(st).__name__
        if kind in _STORES:  # the accumulator reset (decompose_reduction's init)
            continue
        if kind != "Evaluate" or type(st.value).__name__ != "Call" \
                or st.value.op.name != "tirx.call_extern":
            raise WalkError(f"TIR walker: unexpected statement {kind}")
        args = st.value.args
        symbol = args[0].value
        if symbol not in (ti.GEMM, ti.ALU):
            raise WalkError(f"TIR walker: unknown intrinsic {symbol}")
        out.append(_event(symbol, loops, [affine(args[k]) for k in range(2, len(args), 2)]))
    return out


def _plan(stmt) -> list:
    kind = type(stmt).__name__
    if kind == "SeqStmt":
        return [node for s in stmt.seq for node in _plan(s)]
    if kind == "For" and stmt.loop_var.name in OUTER_LOOPS:
        return [Loop(stmt.loop_var.name, int(stmt.extent), _plan(stmt.body))]
    if kind == "AttrStmt" and stmt.attr_key == ti.DMA_PRAGMA:
        return _copy_events(stmt.value.value, stmt.body)
    if kind in ("For", "Evaluate"):
        return _call_events(stmt)
    if kind in ("LetStmt", "AttrStmt", "Allocate", "DeclBuffer", "AllocBuffer"):
        body = getattr(stmt, "body", None)  # 0.27: DeclBuffer/AllocBuffer head a sequence
        return _plan(body) if body is not None else []
    raise WalkError(f"TIR walker: no rule for {kind}")


def _lower(func, threads: int = 1):
    import tvm

    mod = tvm.IRModule({"main": func})
    passes = [tvm.s_tir.transform.LowerInitBlock(), tvm.s_tir.transform.ConvertBlocksToOpaque(),
              tvm.s_tir.transform.CompactBufferAllocation(),
              tvm.s_tir.transform.LowerMatchBuffer(), tvm.s_tir.transform.LowerOpaqueBlock(),
              tvm.tirx.transform.FlattenBuffer()]
    if threads > 1:
        passes.append(tvm.s_tir.transform.InjectVirtualThread())
    for ps in passes:
        mod = ps(mod)
    return mod["main"]


@lru_cache(maxsize=256)
def compile_plan(ls: LayerShape) -> list:
    """The walked plan of the shape class ``ls`` (TVM runs here only, once per class)."""
    plan = _plan(_lower(scheduled_layer(ls), ls.threads).body)
    dec = _Decoder(ls)
    for ev in _events(plan):
        if ev.symbol == ti.GEMM:
            ev.pattern = _gemm_pattern(ev, dec)
            ev.inner = None  # decoded: the cache keeps only the step's products
    return plan


def _events(nodes: list):
    for node in nodes:
        if isinstance(node, Loop):
            yield from _events(node.body)
        else:
            yield node


# ----------------------------------------------------------------------------- running it

@dataclass
class TileWork:
    """One output tile as the TIR runs it: the tile and each step's block products."""

    tile: Tile
    products: list  # per step: [(obl, cbl, i, j)] in the GEMM nest's order
    thread: int = 0  # the virtual thread running the tile (``Schedule.virtual_threads``)


class _Decoder:
    """Block coordinates of the flattened offsets of one shape class."""

    def __init__(self, ls: LayerShape):
        self.ls = ls
        nb, bo, bi = ls.batch, ls.block_out, ls.block_in
        self.inp = (ls.image_groups, ls.groups, ls.in_blocks, ls.in_rows, ls.in_cols, nb * bi)
        self.wgt = (ls.groups, ls.out_blocks, ls.in_blocks, ls.kh, ls.kw, bo * bi)
        self.acc = (ls.image_groups, ls.groups, ls.out_blocks, ls.oh, ls.ow, nb * bo)

    @staticmethod
    def at(offset, shape) -> tuple:
        """Coordinates of a flat offset (or offsets) in ``shape``, the last axis dropped."""
        return np.unravel_index(offset, shape)[:-1]


def run_plan(plan: list, p: ConvProblem, s: Schedule, ls: LayerShape) -> list[TileWork]:
    """The tiles in the order of their STOREs; with virtual threads, the tiles of one
    thread group (thread 0, 1, ..) are consecutive, those past the real extents left out."""
    dec = _Decoder(ls)
    out: list[TileWork] = []
    states = [{"steps": [], "products": [], "events": []} for _ in range(ls.threads)]
    _run(plan, {}, p, s, dec, states, out)
    return out


def _run(nodes: list, env: dict, p, s, dec, states, out) -> None:
    for node in nodes:
        if isinstance(node, Loop):
            for v in range(node.extent):
                env[node.name] = v
                _run(node.body, env, p, s, dec, states, out)
            del env[node.name]
        else:
            _on_event(node, env, p, s, dec, states, out)


def _thread_of(symbol: str, base: list, dec: _Decoder) -> int | None:
    """The virtual thread of an event, from the output block its offsets address (the
    threads run consecutive output tiles); None for the input load, which all threads share."""
    ls = dec.ls
    if symbol == ti.LOAD_INP:
        return None
    if symbol == ti.LOAD_WGT:
        ob = int(dec.at(base[0], dec.wgt)[1])
    elif symbol == ti.LOAD_PAR:
        ob = base[0] // ls.block_out % ls.out_blocks
    else:  # GEMM, ALU, LOAD_RES, STORE: the accumulator / output block
        ob = int(dec.at(base[0], dec.acc)[2])
    return ob // ls.tile[0] % ls.threads


def _on_event(ev: Event, env: dict, p, s, dec: _Decoder, states: list, out: list) -> None:
    base = [b.at(env) for b in ev.bases]
    thread = _thread_of(ev.symbol, base, dec)
    for k in range(len(states)) if thread is None else (thread,):
        _on_thread_event(ev, base, p, s, dec, states[k], k, out)


def _on_thread_event(ev: Event, base: list, p, s, dec: _Decoder, state: dict, thread: int,
                     out: list) -> None:
    state["events"].append((ev.symbol, base))
    if ev.symbol == ti.LOAD_INP:
        n, g, cb, r, c = (int(v) for v in dec.at(base[0], dec.inp))
        state["steps"].append((n, g, cb, r, c))
    elif ev.symbol == ti.GEMM:
        state["products"].append(_step_products(ev, base, p, s, dec, state["steps"][-1]))
    elif ev.symbol == ti.STORE:
        work = _tile(base[0], p, s, dec, state, thread)
        if work is not None:
            out.append(work)
            _check_tile_events(state["events"], work.tile, p, dec)
        state["steps"], state["products"], state["events"] = [], [], []
    # LOAD_WGT, LOAD_PAR, LOAD_RES, ALU: their regions follow from the tile and step
    # (checked at the tile's STORE); the emitter's builder decides their instructions.


def _step_products(ev: Event, base: list, p: ConvProblem, s: Schedule, dec: _Decoder,
                   step: tuple) -> list:
    """(obl, cbl, i, j) of the step, in the nest's order, for the step's first pixel, the
    blocks past the real extents left out."""
    n, g, ob, y, x = (int(v) for v in dec.at(base[0], dec.acc))
    an, ag, acb, ar, ac = (int(v) for v in dec.at(base[1], dec.inp))
    wg, wob, wcb, i, j = (int(v) for v in dec.at(base[2], dec.wgt))
    ls = dec.ls
    if (an, ag, wg, wob, acb, wcb, ar, ac, i, j) != \
            (n, g, g, ob, step[2], step[2], y * ls.row_stride, x * ls.col_stride, 0, 0):
        raise WalkError(f"layer {p.layer}: a GEMM reads other blocks than its step loaded")
    return ev.pattern.clipped(p.out_blocks - ob, p.in_blocks - acb)


def _gemm_pattern(ev: Event, dec: _Decoder) -> GemmPattern:
    """Decode a GEMM nest's own offsets once. Bases are whole-tile origins and the shapes
    are extended to whole tiles, so the coordinates of base + own offset are those of the
    base plus those of the own offset (no carry between axes)."""
    ls = dec.ls
    n, g, ob, y, x = dec.at(ev.inner[:, 0], dec.acc)
    an, ag, acb, ar, ac = dec.at(ev.inner[:, 1], dec.inp)
    wg, wob, wcb, i, j = dec.at(ev.inner[:, 2], dec.wgt)
    if not ((n == 0).all() and (g == 0).all() and (an == 0).all() and (ag == 0).all()
            and (wg == 0).all() and (wob == ob).all() and (acb == wcb).all()
            and (ar == y * ls.row_stride + i * ls.dilation[0]).all()
            and (ac == x * ls.col_stride + j * ls.dilation[1]).all()):
        raise WalkError("TIR walker: a GEMM's products do not read the blocks they multiply")
    first = (y == 0) & (x == 0)
    return GemmPattern(np.stack([ob[first], wcb[first], i[first], j[first]], axis=1))


class GemmPattern:
    """The block products ``(obl, cbl, i, j)`` of one step (first pixel, nest order)."""

    def __init__(self, products: np.ndarray):
        self.products = products
        self._out_span, self._in_span = (int(v) + 1 for v in products[:, :2].max(axis=0, initial=0))
        self._clipped: dict = {}

    def clipped(self, out_left: int, in_left: int) -> list:
        """The products of output blocks below ``out_left`` and input blocks below
        ``in_left`` (an edge tile or step), memoized."""
        # every tile but the edge ones has the same key: the pattern's own extents
        key = (min(out_left, self._out_span), min(in_left, self._in_span))
        if key not in self._clipped:
            pr = self.products
            keep = (pr[:, 0] < out_left) & (pr[:, 1] < in_left)
            self._clipped[key] = list(map(tuple, pr[keep].tolist()))
        return self._clipped[key]


def _tile(store_base: int, p: ConvProblem, s: Schedule, dec: _Decoder, state: dict,
          thread: int) -> TileWork | None:
    """The tile a STORE ends, or None for a thread's tile past the last output block (the
    PrimFunc's output blocks are extended to whole thread groups)."""
    n, g, ob, y, x = (int(v) for v in dec.at(store_base, dec.acc))
    if ob >= p.out_blocks:
        return None
    rows, cols = Span(y, min(s.tile_rows, p.oh - y)), Span(x, min(s.tile_cols, p.ow - x))
    steps = []
    for (sn, sg, cb, r, c) in state["steps"]:
        if (sn, sg, r, c) != (n, g, y * dec.ls.row_stride, x * dec.ls.col_stride):
            raise WalkError(f"layer {p.layer}: an input load is not the tile's rectangle")
        steps.append(Span(cb, min(s.tile_in_blocks, p.in_blocks - cb)))
    tile = Tile(n, g, Span(ob, min(s.tile_out_blocks, p.out_blocks - ob)), rows, cols,
                tuple(steps))
    return TileWork(tile, list(state["products"]), thread)


def _check_tile_events(events: list, t: Tile, p: ConvProblem, dec: _Decoder) -> None:
    """The tile's intrinsics, in order: per step its input and weight loads and its GEMM,
    then the parameter (and residual) loads, the ALU and the STORE (or the STORE alone
    when the accumulators are stored), each on the tile's and step's own blocks."""
    ls = dec.ls
    tail = {ALU: [ti.LOAD_PAR, ti.ALU], RESIDUAL: [ti.LOAD_PAR, ti.LOAD_RES, ti.ALU],
            ACCUMULATE: []}[ls.epilogue]
    want = [ti.LOAD_INP, ti.LOAD_WGT, ti.GEMM] * len(t.in_steps) + tail + [ti.STORE]
    if [sym for sym, _ in events] != want:
        raise WalkError(f"layer {p.layer}: tile intrinsics {[sym for sym, _ in events]}, "
                        f"expected {want}")
    origin = (t.image_group, t.group, t.out_blocks.start, t.rows.start, t.cols.start)
    steps = iter(t.in_steps)
    for sym, base in events:
        if sym == ti.LOAD_WGT:
            got, exp = dec.at(base[0], dec.wgt), (t.group, t.out_blocks.start, next(steps).start,
                                                  0, 0)
        elif sym == ti.LOAD_PAR:
            got = divmod(base[0] // ls.block_out, ls.out_blocks)
            exp = (t.group, t.out_blocks.start)
        elif sym in (ti.LOAD_RES, ti.ALU):
            got, exp = dec.at(base[0], dec.acc), origin
        else:
            continue
        got = tuple(int(v) for v in got)
        if got != exp:
            raise WalkError(f"layer {p.layer}: {sym} reads {got}, the tile's blocks are {exp}")


def walk_layer(p: ConvProblem, s: Schedule, epilogue: str = ALU) -> list[TileWork]:
    """The tiles of ``p`` under ``s`` in the scheduled TIR's order, with their products."""
    ls = layer_shape(p, s, epilogue)
    return run_plan(compile_plan(ls), p, s, ls)
