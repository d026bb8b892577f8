"""The integer model a ``freeze`` produces: frozen ternary layers inside an fx graph.

A ``FrozenTernaryLayer`` is one ternary Linear/Conv2d with everything folded into integers:

    input  : "int"      the producer already emits integers of this layer's input scale
             "int8"     quantize the float input: quantize(x, scale)
             "ternary"  quantize the float input: quantize_ternary(x, t_lo, t_hi)
    body   : z = tlinear / tconv2d(x, w_t, bias, mult)      (int64 scaled accumulator,
             z = Mp * acc_p - Mn * acc_n + bias)
    output : "requant"    requantize(z, shift, lo, hi) -> int8 for the next ternary layer
             "requant_residual"  requantize(z + Mr * r, shift, lo, hi): a residual block's
                          output, ``r`` the int8 shortcut (``forward(x, r)``)
             "threshold"  threshold(z, t_lo, t_hi)      -> ternary for the next layer
             "float"      dequantize(z, scale, bias)    -> float32 for host ops

``forward`` runs the ``tternary::*`` torch ops (what ``torch.export`` records);
``forward_reference`` runs the same computation with the numpy reference.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, fx, nn

from tvm_ternary.errors import FrozenModelError, ShapeMismatchError

from . import ops, reference


class FrozenTernaryLayer(nn.Module):
    def __init__(self, *, name: str, kind: str, w_t: Tensor, bias: Tensor, mult: Tensor,
                 conv: dict | None, input_kind: str, input_params: dict,
                 output_kind: str, output_params: dict):
        super().__init__()
        self.layer_name = name
        self.kind = kind  # "linear" | "conv2d"
        self.conv = conv  # stride / padding / dilation / groups for conv2d
        self.input_kind = input_kind
        self.input_params = input_params  # python floats: scale or t_lo / t_hi
        self.output_kind = output_kind
        self.lo = output_params.pop("lo", reference.INT8_MIN)
        self.hi = output_params.pop("hi", reference.INT8_MAX)
        self.register_buffer("w_t", w_t.to(torch.int8))
        self.register_buffer("bias", bias.to(torch.int64))
        self.register_buffer("mult", mult.to(torch.int32))
        for key, value in output_params.items():  # shift | t_lo, t_hi | scale, out_bias
            self.register_buffer(key, value)

    @property
    def axis(self) -> int:
        return 1 if self.kind == "conv2d" else -1

    def extra_repr(self) -> str:
        return (f"{self.layer_name}: {self.kind} {tuple(self.w_t.shape)}, "
                f"in={self.input_kind}, out={self.output_kind}")

    # ----------------------------------------------------------------- torch custom ops
    def forward(self, x: Tensor, r: Tensor | None = None) -> Tensor:
        r = self._residual(r)
        if self.input_kind == "int8":
            x = ops.tquantize(x, self.input_params["scale"], reference.INT8_MIN, reference.INT8_MAX)
        elif self.input_kind == "ternary":
            x = ops.tquantize_ternary(x, self.input_params["t_lo"], self.input_params["t_hi"])
        if self.kind == "linear":
            z = ops.tlinear(x, self.w_t, self.bias, self.mult)
        else:
            c = self.conv
            z = ops.tconv2d(x, self.w_t, self.bias, self.mult, c["stride"], c["padding"],
                            c["dilation"], c["groups"], c["pad_value"])
        if self.output_kind == "requant":
            return ops.trequantize(z, self.shift, self.lo, self.hi, self.axis)
        if self.output_kind == "requant_residual":
            self._check_residual_shape(r.shape, z.shape)
            return ops.trequantize_residual(z, self.shift, r, self.mult_r, self.lo, self.hi,
                                            self.axis)
        if self.output_kind == "threshold":
            return ops.tthreshold(z, self.t_lo, self.t_hi, self.axis)
        return ops.tdequantize(z, self.scale, self.out_bias, self.axis)

    def _residual(self, r):
        """The shortcut a residual epilogue adds: required there, refused elsewhere."""
        if (r is None) != (self.output_kind != "requant_residual"):
            raise FrozenModelError(
                f"layer {self.layer_name!r}: output {self.output_kind!r} "
                + ("adds a residual r: call layer(x, r)" if r is None else "takes no residual r"))
        if r is not None and r.dtype != torch.int8:
            raise FrozenModelError(f"layer {self.layer_name!r}: residual r must be int8 "
                                   f"(the shortcut's integers), got {r.dtype}")
        return r

    def _check_residual_shape(self, r_shape, z_shape) -> None:
        if tuple(r_shape) != tuple(z_shape):
            raise ShapeMismatchError(f"layer {self.layer_name!r}: residual r has shape "
                                     f"{list(r_shape)}, the output {list(z_shape)}")

    # ----------------------------------------------------------------- numpy reference
    def forward_reference(self, x: np.ndarray, r: np.ndarray | None = None) -> np.ndarray:
        ref = reference
        r = self._residual(None if r is None else torch.from_numpy(np.asarray(r)))
        if self.input_kind == "int8":
            x = ref.quantize(x, self.input_params["scale"])
        elif self.input_kind == "ternary":
            x = ref.quantize_ternary(x, self.input_params["t_lo"], self.input_params["t_hi"])
        w = self.w_t.numpy()
        if self.kind == "linear":
            acc_p, acc_n = ref.linear_acc(x, w)
        else:
            c = self.conv
            acc_p, acc_n = ref.conv2d_acc(x, w, c["stride"], c["padding"], c["dilation"],
                                          c["groups"], c["pad_value"])
        mult = self.mult.numpy()
        z = ref.scaled_acc(acc_p, acc_n, self.bias.numpy(), mult[0], mult[1], self.axis)
        if self.output_kind == "requant":
            return ref.requantize(z, self.shift.numpy(), self.lo, self.hi, self.axis)
        if self.output_kind == "requant_residual":
            self._check_residual_shape(r.shape, z.shape)
            total = ref.add_residual(z, r.numpy(), self.mult_r.numpy(), self.axis)
            return ref.requantize(total, self.shift.numpy(), self.lo, self.hi, self.axis)
        if self.output_kind == "threshold":
            return ref.threshold(z, self.t_lo.numpy(), self.t_hi.numpy(), self.axis)
        return ref.dequantize(z, self.scale.numpy(), self.out_bias.numpy(), self.axis)


class FrozenResidualQuant(nn.Module):
    """A residual branch's int8 quantizer (``quant.ResidualQuant``) in the integer model.

    ``quantize``: the branch's input is float (no layer emitted integers at this scale);
    ``dequantize``: the add stayed in float, so it gets ``float32(r) * scale``, the value
    the fake-quant model adds. When neither is needed ``freeze`` removes the branch's
    quantizer altogether (integers flow into a layer's residual epilogue).
    """

    def __init__(self, name: str, scale: float, quantize: bool, dequantize: bool):
        super().__init__()
        self.layer_name = name
        self.quantize, self.dequantize = quantize, dequantize
        self.scale_value = float(scale)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def extra_repr(self) -> str:
        return f"{self.layer_name}: quantize={self.quantize}, dequantize={self.dequantize}"

    def forward(self, x: Tensor) -> Tensor:
        if self.quantize:
            x = ops.tquantize(x, self.scale_value, reference.INT8_MIN, reference.INT8_MAX)
        if self.dequantize:
            x = x.to(torch.float32) * self.scale
        return x

    def forward_reference(self, x: np.ndarray) -> np.ndarray:
        if self.quantize:
            x = reference.quantize(x, self.scale_value)
        if self.dequantize:
            x = np.asarray(x).astype(np.float32) * np.float32(self.scale_value)
        return x


class FrozenModel(nn.Module):
    """The integer model: an fx graph of frozen ternary layers and host (float) ops.

    ``host_layers`` lists ternary layers kept in float (no input quantizer) and layers the
    user kept float; ``fused`` lists, per frozen layer, the ops folded into its epilogue.
    """

    is_frozen = True

    def __init__(self, graph_module: fx.GraphModule, host_layers: list[str], fused: dict):
        super().__init__()
        self.graph_module = graph_module
        self.host_layers = host_layers
        self.fused = fused
        super().train(False)

    def forward(self, *args):
        return self.graph_module(*args)

    def train(self, mode: bool = True):
        if mode:
            raise FrozenModelError(
                "this model is frozen (integer weights and scales); train the float model "
                "returned by ternarize() and freeze it again")
        return super().train(False)

    def frozen_layers(self) -> list[FrozenTernaryLayer]:
        return [m for m in self.modules() if isinstance(m, FrozenTernaryLayer)]


class _ReferenceInterpreter(fx.Interpreter):
    """Runs a frozen graph with every frozen layer evaluated by the numpy reference."""

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if isinstance(module, (FrozenTernaryLayer, FrozenResidualQuant)):
            arrays = [a.detach().numpy() for a in args]
            return torch.from_numpy(np.ascontiguousarray(module.forward_reference(*arrays)))
        return super().call_module(target, args, kwargs)


@torch.no_grad()
def run_reference(frozen: FrozenModel, *inputs: Tensor) -> Tensor:
    """Evaluate a frozen model with the numpy integer reference (host ops in torch)."""
    return _ReferenceInterpreter(frozen.graph_module).run(*inputs)
