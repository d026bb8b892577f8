"""tlinear with a batch of rows on the register-tiled GEMM (gemm_kernel.py).

Registered before the GEMV implementation (cpu/__init__.py imports this first), and
applies only where it wins: 2-D inputs with at least ``GEMM_MIN_BATCH`` rows, constant
ternary weights and multipliers (symmetric, or dual-scale: a second accumulator on the +1
codes), int8 (not ternary) inputs; also for the fused ``tlinear_<epilogue>`` ops: a
requantize, threshold or dequantize epilogue is applied in the kernel's store
(``gemm_epilogue``). Ternary-input layers go to the popcount kernel, and weights with
enough all-zero blocks to the block-sparse GEMV, which ``strategy`` registers ahead of
this one (its measured thresholds by batch: ``strategy.SPARSE_MIN_ZERO_BLOCKS``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tvm import te, tirx

from tvm_ternary.relax import fused_ops
from tvm_ternary.strategy.registry import Impl, knob_values, register
from tvm_ternary.target import cpu_features

from .gemm_emit import constant as _constant
from .gemm_emit import current_target, emit_gemm, layer_parts
from .gemm_epilogue import REGISTERED
from .gemm_kernel import ISA_VECTOR_BYTES, X_BIAS, GemmSpec, reduction_padded
from .gemm_layout import STEP_K, lanes_2bit
from .gemm_scales import scale_operands, scale_pair
from .gemm_tiles import KNOBS, choose_isa, k_block_steps, parallel_splits, tile_shape

IMPL_NAME = "gemm_tiled"
# Where the GEMM beats the GEMV kernels (scripts/bench_gemm_crossover.py, whole layer,
# table in docs/cpu_kernels.md): from batch 8 on 1024^2 and 4096^2, VNNI x1.07-1.12 at 8
# (x0.64-0.89 at 4-6) and AVX2 (znver3) x1.32-1.39 at 8 (x1.06-1.33 at 4-6, not taken:
# one threshold for both, VNNI's).
GEMM_MIN_BATCH = 8


def _has_avx2(target: dict) -> bool:
    return "avx2" in cpu_features(target)


def linear_plan(w_t: np.ndarray, mult: np.ndarray, batch: int, isa: str, threads: int,
                knobs: dict | None = None):
    """The kernel spec and constant operands of ``z = Mp acc_p - Mn acc_n + bias`` with
    ``acc = x @ w_t.T``: ``mult`` is ``M [N]`` (symmetric) or ``[Mp, Mn]`` ``[2, N]`` (dual
    scales when they differ). Returns ``(spec, consts)``; ``consts`` maps
    ``CONST_OPERANDS`` names to arrays. ``knobs``: values of ``gemm_tiles.KNOBS`` (missing
    or 0: the ISA's defaults).
    """
    n, k = w_t.shape
    kp = reduction_padded(k, isa)
    mult_p, mult_n = scale_pair(mult)
    dual = not np.array_equal(mult_p, mult_n)
    rows, pixels = tile_shape(isa, knobs, dual)
    lanes = ISA_VECTOR_BYTES[isa] // STEP_K
    row_tiles = -(-n // (rows // (2 if dual else 1) * lanes))
    pixel_tiles = -(-batch // pixels)
    spec = GemmSpec(isa=isa, groups=1, rows=n, pixels=batch, k_padded=kp, x_shape=(batch, kp),
                    x_group_stride=0, out_shape=(batch, n), out_channel_stride=1,
                    tile_rows=rows, tile_pixels=pixels, unroll_steps=(knobs or {}).get("unroll_steps") or 1,
                    splits=parallel_splits(row_tiles, pixel_tiles, threads, knobs), dual=dual,
                    k_block=k_block_steps(isa, kp // STEP_K, rows, 0, knobs))
    row = np.minimum(np.arange(spec.pixels_padded), batch - 1).astype(np.int32)
    consts = {"wp": lanes_2bit(w_t[None], lanes, spec.tile_channels, k_padded=kp, what="tlinear weight"),
              "obase": row * n}
    consts.update(scale_operands(w_t.reshape(1, n, k), mult_p, mult_n, spec.rows_padded))
    return spec, consts


def biased_rows(x: te.Tensor, k_padded: int) -> te.Tensor:
    """``xu[i, k] = x[i, k] + 128`` as uint8, K padded (the padding meets zero weights)."""
    k = x.shape[1]
    return te.compute((x.shape[0], k_padded), lambda i, j: tirx.if_then_else(
        j < k, (x[i, j].astype("int16") + X_BIAS).astype("uint8"), tirx.const(X_BIAS, "uint8")),
        name="biased_rows")


def _applies(call, target) -> bool:
    from tvm_ternary.relax.ternary_inputs import has_ternary_input

    x, w, _, mult = call.args[:4]
    if not _has_avx2(target) or len(x.ty.shape) != 2 or int(x.ty.shape[0]) < GEMM_MIN_BATCH:
        return False
    if has_ternary_input(call):  # ternary x ternary: the popcount kernel's (cpu/strategy.py)
        return False
    return _constant(w) is not None and _constant(mult) is not None


def _emit(bb, call):
    """A bare ``tlinear``, or a fused one whose epilogue the kernel's store applies."""
    (x, w, bias, mult), _, epilogue, clamp, epi_tensors = layer_parts(call, 2)
    w_t = _constant(w)
    batch = int(x.ty.shape[0])
    target = current_target()
    isa = choose_isa(target, w_t.shape[0])
    spec, consts = linear_plan(w_t, _constant(mult), batch, isa, int(target.get("num-cores", 1)),
                               knob_values(IMPL_NAME, KNOBS, call))
    spec = dataclasses.replace(spec, epilogue=epilogue, clamp=clamp)
    xu = bb.emit(bb.call_te(biased_rows, x, spec.k_padded, primfunc_name_hint="biased_rows"))
    return emit_gemm(bb, spec, xu, consts, bias, epi_tensors)


def _emit_unfused(bb, call):
    """A fused ``tlinear_<epilogue>`` the store does not apply: this kernel for the body,
    then the epilogue's compute."""
    from .strategy import _with_epilogue
    return _with_epilogue(_emit)(bb, call)


def _applies_store(call, target) -> bool:
    return _applies(call, target) and layer_parts(call, 2) is not None


register("tlinear", Impl(IMPL_NAME, _applies, _emit, KNOBS))
for _name, _fused in fused_ops.FUSED.items():
    if _fused.body == "tlinear":
        # per channel along axis 1 of [batch, n]: the store applies it; else the unfused path
        register(_name, Impl(IMPL_NAME, _applies, _emit_unfused, KNOBS) if _fused.epilogue not in REGISTERED
                 else Impl(IMPL_NAME, _applies_store, _emit, KNOBS))
