"""``LayerSpec``: one accelerator layer, the contract between the partitioner and the lowering.

The partitioner (``vta_ext.compiler.partition``) extracts one LayerSpec per fused ternary
Relax op (``R.tternary_{tlinear,tconv2d}_{trequantize,tthreshold,tdequantize}``) that the
accelerator can run; the lowering (``vta_ext.compiler.lower``) turns a LayerSpec, a HwConfig and a
schedule into a ``vta_ext.program.Program``. ``reference`` is what both must equal: the
foundation's numpy integer reference, applied to this layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_ternary.quant import reference as ref

KINDS = ("dense", "conv2d")
EPILOGUES = ("requantize", "threshold", "dequantize")
# The part of a "dequantize" layer the host computes from the stored accumulators
# (reported as host work in cm.stats): float outputs are not the accelerator's.
HOST_EPILOGUE = "scaled_acc + dequantize (float32)"


@dataclass(frozen=True, eq=False)
class LayerSpec:
    name: str                        # the source layer (for errors and stats)
    kind: str                        # "dense": x [B, K], w [N, K]; "conv2d": x [B, C, H, W], w [O, C/g, KH, KW]
    input_shape: tuple               # int8 values, or trits {-1, 0, 1} when input_ternary
    weight: np.ndarray               # int8 in {-1, 0, 1}
    bias: np.ndarray                 # int64 [N]: z = Mp * acc_p - Mn * acc_n + bias
    mult_p: np.ndarray               # int64 [N]
    mult_n: np.ndarray               # int64 [N] (== mult_p for symmetric scales)
    epilogue: str                    # "requantize" -> int8; "threshold" -> trits;
    #                                  "dequantize" -> float32 (the accelerator stores the
    #                                  int32 accumulators, the host applies HOST_EPILOGUE)
    shift: np.ndarray | None = None  # int64 [N] (requantize)
    lo: int = -127                   # requantize clamp (lo = 0 is a fused ReLU)
    hi: int = 127
    t_lo: np.ndarray | None = None   # int64 [N] (threshold)
    t_hi: np.ndarray | None = None
    dq_scale: np.ndarray | None = None  # float32 [N] (dequantize)
    dq_bias: np.ndarray | None = None   # float32 [N] (dequantize)
    # int64 [N] >= 0 (requantize only): a fused residual add, z += residual_mult[c] * r
    # before the shift, r an int8 second input of the output's shape
    residual_mult: np.ndarray | None = None
    residual_shape: tuple | None = None  # the residual input's shape (must be the output's)
    stride: tuple = (1, 1)           # conv2d only, from here on
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    pad_value: int = 0
    input_ternary: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"layer {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if self.epilogue not in EPILOGUES:
            raise ValueError(f"layer {self.name}: epilogue {self.epilogue!r} is not one of {EPILOGUES}")

    @property
    def dual_scale(self) -> bool:
        return not np.array_equal(self.mult_p, self.mult_n)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def has_residual(self) -> bool:
        return self.residual_mult is not None

    @property
    def stores_accumulators(self) -> bool:
        """The accelerator stores int32 accumulators and the host finishes the layer."""
        return self.epilogue == "dequantize"

    def output_shape(self) -> tuple:
        """The layer output's shape (also the residual input's)."""
        if self.kind == "dense":
            return (int(self.input_shape[0]), self.out_channels)
        b, _, h, w = self.input_shape
        _, _, kh, kw = self.weight.shape
        return (int(b), self.out_channels,
                ref.conv_out_size(h, kh, self.stride[0], self.padding[0], self.dilation[0]),
                ref.conv_out_size(w, kw, self.stride[1], self.padding[1], self.dilation[1]))

    def accumulators(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(acc_p, acc_n) of the reference, channels on axis 1."""
        if self.kind == "dense":
            return ref.linear_acc(x, self.weight)
        return ref.conv2d_acc(x, self.weight, self.stride, self.padding, self.dilation,
                              self.groups, self.pad_value)

    def reference(self, x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        """The layer's output by the numpy integer reference (int8 values or trits; float32
        for "dequantize"); ``residual``: the second input of a fused residual layer."""
        acc_p, acc_n = self.accumulators(x)
        if self.stores_accumulators:
            return self.host_epilogue(acc_p, acc_n)
        z = ref.scaled_acc(acc_p, acc_n, self.bias, self.mult_p, self.mult_n, axis=1)
        if self.has_residual:
            z = ref.add_residual(z, residual, self.residual_mult, axis=1)
        if self.epilogue == "requantize":
            return ref.requantize(z, self.shift, self.lo, self.hi, axis=1)
        return ref.threshold(z, self.t_lo, self.t_hi, axis=1)

    def host_epilogue(self, acc_p: np.ndarray, acc_n: np.ndarray) -> np.ndarray:
        """HOST_EPILOGUE of a "dequantize" layer (channels on axis 1). A single-accumulator
        program stores ``acc_p - acc_n`` as ``acc_p`` with ``acc_n = 0``, the same ``z``
        since ``mult_n == mult_p`` then."""
        z = ref.scaled_acc(acc_p, acc_n, self.bias, self.mult_p, self.mult_n, axis=1)
        return ref.dequantize(z, self.dq_scale, self.dq_bias, axis=1)
