"""tlinear with a batch of rows on the register-tiled GEMM (gemm_kernel.py).

Registered before the GEMV implementation (cpu/__init__.py imports this first), and
applies only where it wins: 2-D inputs with at least ``GEMM_MIN_BATCH`` rows, constant
ternary weights, symmetric constant multipliers. Dual-scale layers (Mp != Mn) stay on the
portable path (they need two accumulators; not built here).
"""

from __future__ import annotations

import numpy as np
from tvm import relax, te, tirx

from tvm_ternary.strategy.registry import Impl, register

from .gemm_kernel import ISA_VECTOR_BYTES, X_BIAS, GemmSpec, make_gemm
from .gemm_layout import round_up, row4_2bit
from .gemm_tiles import TILES, choose_isa, parallel_splits

GEMM_MIN_BATCH = 2  # batch 1 is the GEMV kernel's (cpu/gemv_avx2.py)


def _constant(expr):
    from .strategy import _constant as constant  # late: importing strategy registers the GEMV
    return constant(expr)


def _has_avx2(target: dict) -> bool:
    from .strategy import has_avx2
    return has_avx2(target)


def linear_plan(w_t: np.ndarray, mult: np.ndarray, batch: int, isa: str, threads: int):
    """The kernel spec and constant operands of ``z = mult * (x @ w_t.T) + bias``.

    Returns ``(spec, consts)``; ``consts`` maps operand names of ``make_gemm`` to arrays.
    """
    n, k = w_t.shape
    kp = round_up(k, ISA_VECTOR_BYTES[isa])
    rows, pixels = TILES[isa]
    row_tiles = -(-n // rows)
    pixel_tiles = -(-batch // pixels)
    spec = GemmSpec(isa=isa, groups=1, rows=n, pixels=batch, k_padded=kp, x_shape=(batch, kp),
                    x_group_stride=0, out_shape=(batch, n), out_channel_stride=1,
                    tile_rows=rows, tile_pixels=pixels,
                    splits=parallel_splits(row_tiles, pixel_tiles, threads))
    row = np.minimum(np.arange(pixel_tiles * pixels), batch - 1).astype(np.int32)
    mult64 = np.asarray(mult, np.int64)
    consts = {
        "wp": row4_2bit(w_t[None], rows, kp, what="tlinear weight"),
        "pbase": row * kp,
        "koff": (np.arange(kp // spec.vector_bytes) * spec.vector_bytes).astype(np.int32),
        "obase": row * n,
        "mult": mult64,
        # xu = x + 128: remove 128 * sum_k w[n, k] from every accumulator, times M
        "corr": -X_BIAS * mult64 * w_t.astype(np.int64).sum(axis=1),
    }
    return spec, consts


def biased_rows(x: te.Tensor, k_padded: int) -> te.Tensor:
    """``xu[i, k] = x[i, k] + 128`` as uint8, K padded (the padding meets zero weights)."""
    k = x.shape[1]
    return te.compute((x.shape[0], k_padded), lambda i, j: tirx.if_then_else(
        j < k, (x[i, j].astype("int16") + X_BIAS).astype("uint8"), tirx.const(X_BIAS, "uint8")),
        name="biased_rows")


def _applies(call, target) -> bool:
    x, w, _, mult = call.args
    if not _has_avx2(target) or len(x.ty.shape) != 2 or int(x.ty.shape[0]) < GEMM_MIN_BATCH:
        return False
    mult_v = _constant(mult)
    return _constant(w) is not None and mult_v is not None and np.array_equal(mult_v[0], mult_v[1])


def _emit(bb, call):
    x, w, bias, mult = call.args
    w_t = _constant(w)
    batch = int(x.ty.shape[0])
    target = _current_target()
    isa = choose_isa(target, w_t.shape[1])
    spec, consts = linear_plan(w_t, _constant(mult)[0], batch, isa, int(target.get("num-cores", 1)))
    xu = bb.emit(bb.call_te(biased_rows, x, spec.k_padded, primfunc_name_hint="biased_rows"))
    kernel = bb.add_func(make_gemm(spec), spec.symbol())
    args = [xu] + [relax.const(consts[name]) for name in ("wp", "pbase", "koff", "obase", "mult", "corr")]
    return relax.call_tir(kernel, args + [bias], out_ty=relax.TensorType([batch, w_t.shape[0]], "int64"))


def _current_target() -> dict:
    from tvm_ternary.strategy.registry import _current
    return _current["target"]


register("tlinear", Impl("gemm_tiled", _applies, _emit))
