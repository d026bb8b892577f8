"""Fused ternary operators: a ternary layer body with its epilogue, e.g.
``R.tternary_tlinear_trequantize``.

Arguments: the body's tensors, the epilogue's tensors after ``z``, the body's scalars,
then the epilogue's scalars. The output is the epilogue's. Bias, batch norm and ReLU are
already inside the epilogue's integers (freeze folded them; ReLU is the clamp ``lo=0``),
so one fused op is the whole layer.

Legalization asks the strategy registry for a fused implementation of the pair first
(a kernel that applies the epilogue in registers); if the target has none, the body is
legalized as its own op through the registry (so the body kernels are used) and the
epilogue's TE compute reads the body's result. ``stats["kernels"]`` shows which route
ran: a record naming the fused op (``tconv2d_trequantize: <kernel>``) is a fused kernel,
one naming the body (``tconv2d: <kernel>``) is the body kernel + the epilogue compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax

from tvm_ternary.strategy import registry

from . import ops

BODIES = ("tlinear", "tconv2d")
# A residual block's second conv with the shortcut add fused in (docs/numerics.md):
# y = clamp(round_half_away((z + Mr[c] * r) / 2**shift[c]), lo, hi), z the conv's scaled
# accumulator, r the int8 shortcut (reference.add_residual then reference.requantize).
# Epilogue arguments: tensors (z, shift, r, mult_r), scalars (lo, hi, axis); so the fused
# call is (x, w, bias, mult, shift, r, mult_r, <8 conv scalars>, lo, hi, axis).
RESIDUAL_EPILOGUE = "trequantize_residual"
RESIDUAL_FUSED = f"tconv2d_{RESIDUAL_EPILOGUE}"
EPILOGUES = ("trequantize", "tthreshold", "tdequantize", RESIDUAL_EPILOGUE)


@dataclass(frozen=True)
class FusedDef:
    body: str
    epilogue: str

    @property
    def name(self) -> str:
        return f"{self.body}_{self.epilogue}"

    def split(self, args) -> tuple[list, list, list, list]:
        """(body tensors, epilogue tensors after z, body scalars, epilogue scalars)."""
        nb, ne = ops.OPS[self.body].n_tensors, ops.OPS[self.epilogue].n_tensors - 1
        args = list(args)
        n_body_scalars = ops.OPS[self.body].n_scalars
        body_t, epi_t = args[:nb], args[nb:nb + ne]
        rest = args[nb + ne:]
        return body_t, epi_t, rest[:n_body_scalars], rest[n_body_scalars:]


# The residual epilogue follows convolutions only (a residual block's second conv); a
# linear residual keeps the unfused epilogue (flattening [..., K] linears would need r too).
FUSED: dict[str, FusedDef] = {d.name: d for d in (FusedDef(b, e) for b in BODIES for e in EPILOGUES)
                              if d.name != f"tlinear_{RESIDUAL_EPILOGUE}"}


def fuse(body_call: relax.Call, epilogue_call: relax.Call) -> relax.Call:
    """``epilogue(body(...), ...)`` as one fused call."""
    body, epilogue = _short(body_call), _short(epilogue_call)
    nb = ops.OPS[body].n_tensors
    ne = ops.OPS[epilogue].n_tensors
    args = (list(body_call.args[:nb]) + list(epilogue_call.args[1:ne])
            + list(body_call.args[nb:]) + list(epilogue_call.args[ne:]))
    return relax.Call(tvm.ir.Op.get(ops.op_name(f"{body}_{epilogue}")), args)


def _short(call: relax.Call) -> str:
    return call.op.name.removeprefix("relax.tternary_")


def _body_call(spec: FusedDef, call) -> relax.Call:
    body_t, _, body_s, _ = spec.split(call.args)
    return relax.Call(tvm.ir.Op.get(ops.op_name(spec.body)), body_t + body_s)


def _register(spec: FusedDef) -> None:
    epi = ops.OPS[spec.epilogue]

    def infer(call, ctx):
        body_t, _, body_s, _ = spec.split(call.args)
        shapes = [[int(d) for d in t.ty.shape] for t in body_t]
        scalars = [s.value for s in body_s]
        return relax.TensorType(ops.OPS[spec.body].out_shape(shapes, scalars), epi.out_dtype)

    def lower(bb, call):
        impl = registry.lookup(spec.name, call)
        if impl is not None:
            registry.record(spec.name, impl.name)
            return impl.emit(bb, call)
        _, epi_t, _, epi_s = spec.split(call.args)
        scalars = [s.value for s in epi_s]
        z = bb.emit(ops.legalize(spec.body, bb, _body_call(spec, call)))
        return bb.call_te(lambda zt, *ts: epi.compute(zt, *ts, *scalars), z, *epi_t,
                          primfunc_name_hint=spec.epilogue)

    ops.register_op(spec.name, infer, lower)


def register_all() -> None:
    for spec in FUSED.values():
        _register(spec)
