"""Partition a Relax module into accelerator regions and host regions (BYOC style).

After ``fold_batchnorm`` / ``fuse_epilogue`` / ``flatten_linear_batch`` every ternary layer
is one fused op ``R.tternary_<body>_<epilogue>``. ``partition_for_vta``:

1. matches each fused op an accelerator can run at all with
   ``relax.transform.FuseOpsByPattern`` (one ``dpl`` pattern per fused op; the check refuses
   float outputs and non-constant weights), giving one composite function per layer with
   its constants bound inside;
2. extracts a :class:`LayerSpec` from each composite and hands it to ``offload``, which
   lowers it for the HwConfig (the one judge of what that HwConfig supports) and returns
   the name of a registered packed function (``vta_ext.runtime``);
3. replaces each offloaded composite call by ``relax.call_dps_packed(name, x)``. A layer
   the lowering refuses (``AcceleratorLayerError``) goes back inline as its fused op, so the
   host strategies lower it; every host layer is reported with its reason, never
   approximated (DESIGN: a target without dual accumulators runs such a layer on the host).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard
from tvm.relax.expr_functor import PyExprMutator, mutator

from tvm_ternary.errors import AcceleratorLayerError, UnsupportedOpError
from tvm_ternary.relax import fused_ops, ops
from tvm_ternary.relax.analysis import op_of

from .layer import LayerSpec
from .ternary_values import ternary_vars

_Constant = tvm.ir.expr.Constant  # Relax constants (TVM 0.27 moved the class)
COMPOSITE_PREFIX = "tternary_vta."
_EPILOGUE_OF = {"trequantize": "requantize", "tthreshold": "threshold",
                "tdequantize": "dequantize"}
# The fused residual epilogue (a second data input r; tvm_ternary.relax.fused_ops), if
# this build has it: requantize with residual_mult.
_RESIDUAL = getattr(fused_ops, "RESIDUAL_EPILOGUE", None)
if _RESIDUAL:
    _EPILOGUE_OF[_RESIDUAL] = "requantize"
_KIND_OF = {"tlinear": "dense", "tconv2d": "conv2d"}
_FUSED_OPS = {ops.op_name(name): name for name in fused_ops.FUSED}


@dataclass(frozen=True)
class Placement:
    """Where one ternary layer runs, and why there."""

    name: str                      # the source layer (or "<op>#<index>" without a model)
    op: str                        # the fused op, e.g. "tconv2d_trequantize"
    on_accelerator: bool
    reason: str = ""               # why it stayed on the host ("" when offloaded)
    spec: LayerSpec | None = None
    packed_func: str = ""          # the global function the Relax VM calls
    macs: int = 0                  # the layer's multiply-accumulates (zero weights included)


# ----------------------------------------------------------------------------- LayerSpec

def _const(expr, layer: str, field: str) -> np.ndarray:
    if not isinstance(expr, _Constant):
        raise UnsupportedOpError(f"layer {layer}: {field} is not a compile-time constant "
                                 "(the accelerator needs its weights at compile time)")
    return expr.value.numpy()


def data_args(call: relax.Call) -> list:
    """The data inputs of a fused ternary call, in call order: ``x``, and the shortcut
    ``r`` of a fused residual epilogue (every other argument is a compile-time constant)."""
    fused = fused_ops.FUSED[_FUSED_OPS[call.op.name]]
    body_t, epi_t, _, _ = fused.split(call.args)
    return [body_t[0], epi_t[1]] if fused.epilogue == _RESIDUAL else [body_t[0]]


def _shape(expr) -> tuple:
    return tuple(int(d) for d in expr.ty.shape)


def layer_spec(call: relax.Call, name: str, input_ternary: bool = False) -> LayerSpec:
    """The LayerSpec of one fused ternary call (``*_trequantize``, ``*_tthreshold``,
    ``*_tdequantize``, ``tconv2d_trequantize_residual``)."""
    fused = fused_ops.FUSED[_FUSED_OPS[call.op.name]]
    body_t, epi_t, body_s, epi_s = fused.split(call.args)
    x, w, bias, mult = body_t
    mult = _const(mult, name, "mult").astype(np.int64)
    fields = dict(name=name, kind=_KIND_OF[fused.body], input_shape=_shape(x),
                  weight=_const(w, name, "weight").astype(np.int8),
                  bias=_const(bias, name, "bias").astype(np.int64), mult_p=mult[0], mult_n=mult[1],
                  epilogue=_EPILOGUE_OF[fused.epilogue], input_ternary=input_ternary)
    scalars = [s.value for s in epi_s]
    if fused.epilogue in ("trequantize", _RESIDUAL):
        fields.update(shift=_const(epi_t[0], name, "shift").astype(np.int64),
                      lo=int(scalars[0]), hi=int(scalars[1]))
    if fused.epilogue == _RESIDUAL:  # epilogue tensors: shift, r, mult_r
        fields.update(residual_shape=_shape(epi_t[1]),
                      residual_mult=_const(epi_t[2], name, "mult_r").astype(np.int64))
    elif fused.epilogue == "tdequantize":
        fields.update(dq_scale=_const(epi_t[0], name, "scale").astype(np.float32),
                      dq_bias=_const(epi_t[1], name, "bias").astype(np.float32))
    elif fused.epilogue != "trequantize":
        fields.update(t_lo=_const(epi_t[0], name, "t_lo").astype(np.int64),
                      t_hi=_const(epi_t[1], name, "t_hi").astype(np.int64))
    if fused.body == "tconv2d":
        sh, sw, ph, pw, dh, dw, groups, pad_value = (int(s.value) for s in body_s)
        fields.update(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups,
                      pad_value=pad_value)
    return LayerSpec(**fields)


# ----------------------------------------------------------------------------- support

def host_reason(op: str) -> str | None:
    """Why no accelerator runs a fused op of this kind, or None if one may.

    What a given HwConfig supports (dual accumulators, ternary activations, 2-bit
    activations, buffer sizes) is the lowering's to judge, in one place: ``compile_layer``
    raises ``AcceleratorLayerError`` naming the layer and the field.
    """
    # Float outputs run too: the accelerator stores the int32 accumulators and the host
    # applies the dequantize epilogue (LayerSpec.HOST_EPILOGUE, reported in cm.stats).
    return None


def layer_macs(call: relax.Call) -> int:
    """Output elements x reduction length of a fused ternary call."""
    fused = fused_ops.FUSED[_FUSED_OPS[call.op.name]]
    body_t, _, body_s, _ = fused.split(call.args)
    shapes = [[int(d) for d in t.ty.shape] for t in body_t]
    out = ops.OPS[fused.body].out_shape(shapes, [s.value for s in body_s])
    return math.prod(out) * math.prod(shapes[1][1:])


def _call_reason(call: relax.Call) -> str | None:
    op = _FUSED_OPS[call.op.name]
    body_t, epi_t, _, _ = fused_ops.FUSED[op].split(call.args)
    data = data_args(call)
    if not all(isinstance(a, _Constant) for a in body_t + epi_t if not any(a.same_as(d) for d in data)):
        return "weights or epilogue parameters are not compile-time constants"
    return host_reason(op)


def patterns() -> list:
    """One FusionPattern per fused ternary op; the check applies ``_call_reason``."""
    out = []
    for name in fused_ops.FUSED:
        call = is_op(ops.op_name(name))(*[wildcard() for _ in range(_n_args(name))])
        out.append(relax.transform.FusionPattern(
            COMPOSITE_PREFIX + name, call, {}, lambda ctx: _call_reason(ctx.matched_expr) is None))
    return out


def _n_args(name: str) -> int:
    d = fused_ops.FUSED[name]
    body, epi = ops.OPS[d.body], ops.OPS[d.epilogue]
    return body.n_tensors + epi.n_tensors - 1 + body.n_scalars + epi.n_scalars


def _is_ternary_arg(x, ternary: set) -> bool:
    return isinstance(x, relax.Var) and x in ternary


# ----------------------------------------------------------------------------- partition

@dataclass
class Partitioned:
    mod: tvm.IRModule
    placements: list[Placement]
    host_ops: dict                 # Relax ops left on the host (host layers too): name -> count

    @property
    def host_layers(self) -> list[Placement]:
        return [p for p in self.placements if not p.on_accelerator]

    def host_layers_names(self) -> list[str]:
        return [p.name for p in self.host_layers]

    def host_reason(self, name: str) -> str:
        """Why layer ``name`` stayed on the host (KeyError if it did not)."""
        return {p.name: p.reason for p in self.host_layers}[name]


@mutator
class _Offloader(PyExprMutator):
    """Composite calls -> ``call_dps_packed`` (or back to the fused op on the host)."""

    def __init__(self, mod, offload, name_of, ternary: set):
        super().__init__(mod)
        self.src, self.offload, self.name_of = mod, offload, name_of
        self.ternary = ternary
        self.placements: list[Placement] = []
        self.error: Exception | None = None

    def _label(self, op: str, weight, bias) -> str:
        name = None
        if isinstance(weight, _Constant) and isinstance(bias, _Constant):
            name = self.name_of(weight.value.numpy(), bias.value.numpy())
        return name or f"{op}#{len(self.placements)}"

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if op_of(call) in _FUSED_OPS:  # a layer the pattern check left on the host
            op = _FUSED_OPS[op_of(call)]
            reason = _call_reason(call)
            name = self._label(op, call.args[1], call.args[2])
            self.placements.append(Placement(name, op, False, reason or "", macs=layer_macs(call)))
            return call
        func = self.src[call.op] if isinstance(call.op, relax.GlobalVar) else None
        if not isinstance(func, relax.Function) or "Composite" not in (func.attrs or {}):
            return call
        inner = _inner_call(func)
        op = _FUSED_OPS[inner.op.name]
        bound = {param: arg for param, arg in zip(func.params, call.args)}
        inline = relax.Call(inner.op, [_lookup(bound, a) for a in inner.args])
        inputs = data_args(inline)  # x (and a residual layer's r), as the packed function takes them
        x = inputs[0]
        ternary_in = _is_ternary_arg(x, self.ternary)
        name = self._label(op, inline.args[1], inline.args[2])
        spec = layer_spec(inline, name, ternary_in)
        try:
            packed = self.offload(spec)
        except AcceleratorLayerError as err:  # the lowering cannot fit it: host runs it, reported
            self.placements.append(Placement(name, op, False, f"lowering refused: {err}", spec,
                                             macs=layer_macs(inline)))
            return inline
        except Exception as err:  # noqa: BLE001  (re-raised by partition_for_vta)
            # Raising here would cross TVM's FFI (the mutator's caller), which turns every
            # error into a RuntimeError: keep it to re-raise with its type.
            self.error = self.error or err
            return call
        self.placements.append(Placement(name, op, True, "", spec, packed, layer_macs(inline)))
        return relax.call_dps_packed(packed, relax.Tuple(inputs), out_ty=call.ty)


def _lookup(bound: dict, arg):
    """``arg`` with a composite function's parameter replaced by its call argument."""
    for param, value in bound.items():
        if arg.same_as(param):
            return value
    return arg


def _inner_call(func: relax.Function) -> relax.Call:
    (block,) = func.body.blocks
    (binding,) = block.bindings
    call = binding.value
    if func.params[0] is not call.args[0] and not call.args[0].same_as(func.params[0]):
        raise AssertionError("composite function does not start from its parameter")
    return call


def partition_for_vta(mod: tvm.IRModule, offload: Callable[[LayerSpec], str],
                      name_of: Callable = lambda weight, bias: None) -> Partitioned:
    """Offload every fused ternary layer ``offload`` accepts; see the module docstring.

    ``offload(spec)`` lowers a layer and returns its packed function's name (raising
    ``AcceleratorLayerError`` if the accelerator cannot run it; any other error
    propagates); ``name_of(weight, bias)`` names a layer from its integers (None: by op
    and position).
    """
    ops.register_all()
    fused = relax.transform.FuseOpsByPattern(patterns(), bind_constants=True)(mod)
    offloader = _Offloader(fused, offload, name_of, ternary_vars(fused["main"], fused))
    new_main = offloader.visit_expr(fused["main"])
    if offloader.error is not None:
        raise offloader.error
    out = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint != "main"},
                       attrs=mod.attrs)
    out["main"] = new_main
    out = relax.transform.DeadCodeElimination(["main"])(out)
    return Partitioned(out, offloader.placements, _host_ops(out["main"]))


def _host_ops(func: relax.Function) -> dict:
    counts: Counter = Counter()
    for block in func.body.blocks:
        for binding in block.bindings:
            name = op_of(binding.value)
            if name is None or name == "relax.call_dps_packed":
                continue
            counts[name.removeprefix("relax.")] += 1
    return dict(counts)


__all__ = ["COMPOSITE_PREFIX", "Partitioned", "Placement", "data_args", "host_reason", "layer_spec",
           "partition_for_vta", "patterns"]
