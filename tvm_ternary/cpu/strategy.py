"""CPU implementations registered with the strategy registry.

``tlinear`` (constant weights, 2-D input) runs as one fused whole-layer GEMV PrimFunc:
AVX-512 VNNI where the target's CPU has it, else AVX2 (the floor); other CPUs keep the
portable path. Dual-scale layers (``Mp != Mn``) get the GEMV's ``dual`` variant (a second
accumulator for ``acc_p``), symmetric ones the single-accumulator kernel. A linear whose
input ``relax.ternary_inputs`` marked ternary runs the bit-plane popcount kernel instead
(symmetric or dual-scale); one whose weights have enough all-zero blocks for its batch
(``SPARSE_MIN_ZERO_BLOCKS``) runs the block-sparse GEMV (symmetric or dual-scale), ahead of
the tiled GEMM that takes other batches of ``GEMM_MIN_BATCH`` rows or more. Each is registered
for the bare ``tlinear`` and for the fused ``tlinear_<epilogue>`` ops (body kernel, then the
epilogue's compute; the dense GEMV stores a ``tlinear_tdequantize``'s float32 output
itself), so the input annotation on the fused call is seen. ``tquantize`` and
``tquantize_ternary`` run ``cpu/quantize.py``'s kernels on AVX2 CPUs.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_ternary.relax import fused_ops, ops
from tvm_ternary.relax.ternary_inputs import has_ternary_input
from tvm_ternary.strategy.registry import Impl, knob_values, register
from tvm_ternary.target import cpu_features

from . import gemv, intrin_trit, quantize
from .params import typed
from .popcount_gemv import KNOBS_AVX2, KNOBS_VPOPCNTDQ, make_popcount_gemv, weight_planes
from .popcount_gemv import Knobs as PopcountKnobs
from . import sparse_gemv


def has_avx2(target: dict) -> bool:
    return "avx2" in cpu_features(target)


def has_vnni512(target: dict) -> bool:
    return "avx512_vnni" in cpu_features(target)


def has_vpopcntdq(target: dict) -> bool:
    return "avx512_vpopcntdq" in cpu_features(target)


_DEQUANTIZE = "tlinear_tdequantize"  # the fused op whose epilogue the dense GEMV stores


def _constant(expr) -> np.ndarray | None:
    """The value of a bound constant (weights, multipliers), or None for a runtime tensor."""
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


def _constant_linear(call) -> bool:
    """A 2-D ``tlinear`` (or fused ``tlinear_*``) with constant weights and multipliers."""
    x, w, _, mult = call.args[:4]
    return len(x.ty.shape) == 2 and _constant(w) is not None and _constant(mult) is not None


def _symmetric(call) -> bool:
    mult = _constant(call.args[3])
    return np.array_equal(mult[0], mult[1])


# (first batch, fraction): from that batch on, the block-sparse GEMV needs at least that
# fraction of all-zero blocks to be as fast as the dense route. Below GEMM_MIN_BATCH that is
# the dense GEMV (GEMV 4096: the sparse kernel pays an indirect group index and no int16
# chunking per block); from it, the tiled GEMM, whose advantage grows with the batch while
# the sparse kernel decodes its blocks again for every row. Measured on a 4096^2 layer with
# 16 x 256 zero blocks, whole layer cm(x), both routes interleaved in one process, 25-100
# rounds, load 2-6; GEMM / sparse time (min; median), VNNI host and AVX2 (znver3):
#   zero blocks  20%          35%          50%          70%          90%
#   batch 8      1.09; 1.12   1.29; 1.66   1.80; 1.89   2.46; 3.15   4.81; 4.64   VNNI
#                1.05; 1.03   1.18; 1.14   1.50; 1.43   1.65; 2.31   4.26; 6.51   AVX2
#   batch 12     1.23; 1.16   1.20; 1.31   1.75; 1.86   2.57; 2.41   3.40; 9.10   VNNI
#   batch 16     0.92; 0.88   1.00; 1.01   1.39; 2.92   2.03; 2.00   2.62; 10.84  VNNI
#                0.84; 0.85   1.05; 1.02   1.31; 1.30   1.85; 2.01   3.61; 4.66   AVX2
#   batch 32     0.88; 0.58   0.92; 0.91   1.25; 1.53   1.64; 2.72   2.45; 4.80   VNNI
#                1.34; 0.81   1.01; 1.00   1.25; 1.11   2.92; 2.21   4.22; 3.85   AVX2
#   batch 64     0.70; 0.71   0.79; 0.84   1.03; 1.02   1.36; 1.18   3.45; 1.45   VNNI
#                0.90; 0.82   0.90; 0.89   1.02; 1.07   2.62; 1.89   3.87; 2.75   AVX2
#   batch 128                              0.87; 0.87   1.23; 1.18   1.97; 1.60   VNNI
#                                          1.06; 1.07   1.60; 1.61   3.26; 2.37   AVX2
#   batch 256                                           1.09; 1.09   1.47; 1.42   VNNI
# (batch 1 / 4, VNNI: 3.7-14 / 1.8-8.9; these batches do not take the GEMM.) One
# table for both ISAs, each step at the smallest fraction measured no slower on either;
# batches above 256 are not measured. A quieter rerun (load 0.9-2, VNNI, medians) agrees:
# 20 % 1.04 / 1.08 / 0.95 at batch 8 / 12 / 16, 35 % 1.02 / 0.87 at 16 / 32, 50 % 1.06 /
# 0.94 at 64 / 128, 70 % 1.33 at 128; so do dual-scale (TTQ) layers: 20 % 1.16 / 0.92 at
# 8 / 16, 35 % 1.09 / 0.95 at 16 / 32, 50 % 1.15 at 32.
SPARSE_MIN_ZERO_BLOCKS = ((1, 0.2), (16, 0.35), (32, 0.5), (128, 0.7))


def min_zero_blocks(batch: int) -> float:
    """The fraction of all-zero blocks from which the sparse GEMV serves ``batch`` rows."""
    return [fraction for first, fraction in SPARSE_MIN_ZERO_BLOCKS if batch >= first][-1]


def _sparse_enough(call, isa) -> bool:
    """At the ISA's default block rows (a tuned ``rows`` may find more or fewer)."""
    rows = sparse_gemv.default_rows(isa, not _symmetric(call))
    fraction = sparse_gemv.block_zero_fraction(_constant(call.args[1]), isa, rows)
    return fraction >= min_zero_blocks(int(call.args[0].ty.shape[0]))


def _body_call(call) -> relax.Call:
    """The ``tlinear`` part of a fused ``tlinear_<epilogue>`` call (attrs kept)."""
    spec = fused_ops.FUSED[call.op.name.removeprefix("relax.tternary_")]
    body_t, _, body_s, _ = spec.split(call.args)
    return relax.Call(tvm.ir.Op.get(ops.op_name(spec.body)), body_t + body_s, call.attrs)


def _with_epilogue(body_emit):
    """Emit a fused ``tlinear_<epilogue>`` call: ``body_emit``'s kernel, then the epilogue."""

    def emit(bb, call):
        spec = fused_ops.FUSED[call.op.name.removeprefix("relax.tternary_")]
        _, epi_t, _, epi_s = spec.split(call.args)
        scalars = [s.value for s in epi_s]
        epilogue = ops.OPS[spec.epilogue]
        z = bb.emit(body_emit(bb, _body_call(call)))
        return bb.call_te(lambda zt, *ts: epilogue.compute(zt, *ts, *scalars), z, *epi_t,
                          primfunc_name_hint=spec.epilogue)

    return emit


def _linear_args(call):
    """``x, w, bias, mult`` of a ``tlinear`` call, bias as int64 and mult as int32."""
    x, w, bias, mult = call.args
    return x, w, typed(bias, "int64"), typed(mult, "int32")


def _finished(kernel):
    """A finished kernel is opaque to Relax's FuseOps (a schedulable block PrimFunc would
    otherwise be fused with its epilogue, which FuseTIR rejects) and marked scheduled, so
    the host scheduler (relax/schedule_host.py) leaves a kernel with only serial loops
    alone (it fails on non-block functions)."""
    return kernel.with_attrs({"op_pattern": 8,  # TVM's OpPatternKind kOpaque
                              "tirx.is_scheduled": True})


def _kernel_emitter(build, dequantize: bool = False):
    """Emit a whole-layer linear kernel for a ``tlinear`` call. ``build(w_t, batch, n, k,
    dual)`` returns the kernel PrimFunc and the constant weight arrays it takes after ``x``
    (before ``mult`` and ``bias``); every linear kernel returns ``z [batch, n]`` int64.
    ``dequantize``: the call is a fused ``tlinear_tdequantize`` whose kernel also takes the
    epilogue's float32 ``scale, bias`` and returns its float32 output."""

    def emit(bb, call):
        epilogue = []
        if dequantize:
            _, epilogue, _, _ = fused_ops.FUSED[_DEQUANTIZE].split(call.args)
            epilogue = [typed(e, "float32") for e in epilogue]
            call = _body_call(call)
        x, w, bias, mult = _linear_args(call)
        w_t = _constant(w)
        n, k = w_t.shape
        batch = int(x.ty.shape[0])
        kernel, weights = build(w_t, batch, n, k, not _symmetric(call))
        gv = bb.add_func(_finished(kernel), str(kernel.attrs["global_symbol"]))
        return relax.call_tir(gv, [x, *(relax.const(a) for a in weights), mult, bias, *epilogue],
                              out_ty=relax.TensorType([batch, n], "float32" if dequantize else "int64"))

    return emit


def _popcount_emitter(name: str, knobs: dict):
    """The popcount GEMV with the knob values the scope's configs give ``name``."""

    def emit(bb, call):
        values = knob_values(name, knobs, call)

        chosen = PopcountKnobs(**values)

        def build(w_t, batch, n, k, dual):
            return (make_popcount_gemv(batch, n, k, dual, chosen.words, chosen.rows, chosen.chunk),
                    [weight_planes(w_t, dual, chosen.words, chosen.rows, chosen.chunk)])

        return _kernel_emitter(build)(bb, call)

    return emit


def _gemv_emitter(name: str, isa, dequantize: bool = False):
    """The tensorized whole-layer GEMV on ``isa`` (symmetric or dual-scale), with the knob
    values the scope's configs give ``name`` (``gemv.KNOBS``); ``dequantize``: for a fused
    ``tlinear_tdequantize`` call, storing its float32 output."""

    def emit(bb, call):
        values = knob_values(name, gemv.KNOBS[isa], call)

        def build(w_t, batch, n, k, dual):
            plan = gemv.GemvPlan.from_knobs(isa, batch, n, k, dual, values, dequantize)
            return gemv.schedule(plan), [plan.pack(w_t)]

        return _kernel_emitter(build, dequantize)(bb, call)

    return emit


def _sparse_emitter(name: str, isa):
    """The block-sparse GEMV (symmetric or dual-scale) with ``name``'s knob values."""

    def emit(bb, call):
        values = knob_values(name, sparse_gemv.KNOBS[isa], call)

        def build(w_t, batch, n, k, dual):
            rows = values["dual_rows" if dual else "rows"]
            csr = sparse_gemv.csr_blocks(w_t, rows, isa.lanes)
            kernel = sparse_gemv.make_sparse_gemv(batch, n, k, csr.nnz, isa, dual, rows, values["unroll_rows"])
            return kernel, [csr.ptr, csr.col, csr.blocks]

        return _kernel_emitter(build)(bb, call)

    return emit


def _register_linear(name: str, applies, body_emit, knobs: dict | None = None, first: bool = False,
                     fused_emits: dict | None = None) -> None:
    """Register a linear kernel for ``tlinear`` and each fused ``tlinear_<epilogue>``
    (``first``: ahead of the implementations registered so far): the body kernel then the
    epilogue's compute, unless ``fused_emits`` gives the fused op a kernel of its own:
    ``{fused op: (emit, when)}``, taken for the calls ``when(call)`` holds for (else the
    next registered implementation)."""
    register("tlinear", Impl(name, applies, body_emit, knobs or {}), first)
    for fused, spec in fused_ops.FUSED.items():
        if spec.body != "tlinear":
            continue
        if fused in (fused_emits or {}):
            emit, when = fused_emits[fused]
            impl = Impl(name, lambda call, target: applies(call, target) and when(call), emit, knobs or {})
        else:
            impl = Impl(name, applies, _with_epilogue(body_emit), knobs or {})
        register(fused, impl, first)


# The popcount GEMV serves ternary inputs at every batch (the tiled GEMM leaves them to it):
# 4096^2 TWN layer, act="ternary", cm(x), both interleaved, 60 rounds, load 0.7-1.1, GEMM /
# popcount median at batch 8 / 16 / 32 / 64 / 128 / 256: VPOPCNTDQ host 2.12 / 1.85 / 1.70 /
# 1.47 / 1.41 / 1.42, AVX2 (znver3) 1.31 / 1.22 / 1.13 / 1.10 / 1.10.
def _register_popcount(name: str, has_isa, knobs: dict) -> None:
    """The popcount GEMV for linears whose input is proven ternary, on CPUs ``has_isa``."""
    _register_linear(name, lambda call, target: (has_isa(target) and has_ternary_input(call)
                                                 and _constant_linear(call)),
                     _popcount_emitter(name, knobs), knobs)


_register_popcount("avx512_vpopcntdq_popcount_gemv", has_vpopcntdq, KNOBS_VPOPCNTDQ)
_register_popcount("avx2_popcount_gemv", has_avx2, KNOBS_AVX2)


def _register_sparse(name: str, has_isa, isa) -> None:
    """The block-sparse GEMV for constant weights with enough all-zero blocks for the batch,
    ahead of the tiled GEMM (registered before this module); ternary inputs keep the
    popcount kernel."""
    _register_linear(name, lambda call, target: (has_isa(target) and _constant_linear(call)
                                                 and not has_ternary_input(call)
                                                 and _sparse_enough(call, isa)),
                     _sparse_emitter(name, isa), sparse_gemv.KNOBS[isa], first=True)


_register_sparse("avx2_sparse_gemv", has_avx2, intrin_trit.AVX2)  # first: prepended, so behind VNNI's
_register_sparse("avx512_vnni_sparse_gemv", has_vnni512, intrin_trit.VNNI)


def _channels_last(call) -> bool:
    """The fused epilogue scales the output's channels (its axis is the last), the only
    per-channel layout the GEMV's epilogue stores."""
    _, _, _, (axis,) = fused_ops.FUSED[_DEQUANTIZE].split(call.args)
    return _number(axis) in (-1, 1)


def _register_gemv(name: str, has_isa, isa) -> None:
    """The dense GEMV; a fused ``tlinear_tdequantize`` stores its float32 output from the
    GEMV's epilogue (no int64 ``z`` tensor, no second PrimFunc)."""
    _register_linear(name, lambda call, target: has_isa(target) and _constant_linear(call),
                     _gemv_emitter(name, isa), gemv.KNOBS[isa],
                     fused_emits={_DEQUANTIZE: (_gemv_emitter(name, isa, dequantize=True), _channels_last)})


_register_gemv("avx512_vnni_gemv", has_vnni512, intrin_trit.VNNI)
_register_gemv("avx2_pmaddubsw_gemv", has_avx2, intrin_trit.AVX2)


def _number(arg):
    """The Python number a scalar argument carries (PrimValue -> IntImm / FloatImm)."""
    value = arg.value
    return value.value if hasattr(value, "value") else value


def _static_float32(call) -> bool:
    x = call.args[0]
    return x.ty.dtype == "float32" and all(isinstance(d, tvm.tirx.IntImm) for d in x.ty.shape)


def _quantize_emitter(name: str, make):
    """A flat float32 -> int8 kernel ``make(size, *scalars, lanes=...)`` on a reshaped view
    of the input (reshapes are free views in the VM)."""

    def emit(bb, call):
        x = call.args[0]
        shape = [int(d) for d in x.ty.shape]
        size = int(np.prod(shape))
        kernel = make(size, *(_number(a) for a in call.args[1:]),
                      **knob_values(name, quantize.KNOBS, call))
        gv = bb.add_func(_finished(kernel), str(kernel.attrs["global_symbol"]))
        flat = bb.emit(relax.op.reshape(x, [size]))
        q = bb.emit(relax.call_tir(gv, [flat], out_ty=relax.TensorType([size], "int8")))
        return relax.op.reshape(q, shape)

    return emit


# Input quantization: float32 vector code; AVX2 CPUs (a CPU without SSE4.1 has no vector
# rounding and would call libm per value: the generic compute is as good there).
for _op, _name, _make in (("tquantize", "cpu_quantize", quantize.make_quantize),
                          ("tquantize_ternary", "cpu_quantize_ternary", quantize.make_quantize_ternary)):
    register(_op, Impl(_name, lambda call, target: has_avx2(target) and _static_float32(call),
                       _quantize_emitter(_name, _make), quantize.KNOBS))
