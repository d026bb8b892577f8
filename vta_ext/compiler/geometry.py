"""The canonical convolution a layer is lowered as, and what the accelerator cannot run.

Every layer becomes one grouped 2-D convolution over ``images`` canonical images, whose
blocks hold ``HwConfig.batch`` images in their batch lanes:

- conv2d: the layer itself (images = the input batch);
- dense ``x [B, K] @ w [N, K].T``: a 1x1 convolution of ``batch`` lane-images of height
  ``ceil(B / batch)`` and width 1 (row ``r`` is lane ``r % batch`` of pixel row
  ``r // batch``), so the rows run down GEMM's hardware loops, not over separate tiles.

Only this module knows both views; the tiler and the emitter see a :class:`ConvProblem`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_ternary.errors import AcceleratorLayerError
from tvm_ternary.quant import reference as ref

from ..config import HwConfig
from .. import isa
from .layer import LayerSpec



def isa_field_max(opcode: isa.Opcode, field: str) -> int:
    """Largest value an instruction field holds (the ISA bounds tiles and padding)."""
    return next(f for f in isa.fields_of(opcode) if f.name == field).hi


_PAD_LIMIT = isa_field_max(isa.Opcode.LOAD, "y_pad_0")
_SKIP_LIMIT = isa_field_max(isa.Opcode.LOAD, "x_skip")
INT8_ABS_MAX = 128
SHIFT_RANGE = (1, 46)
MULT_RANGE = (0, 2**16 - 1)
BIAS_LIMIT = 2**62


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class ConvProblem:
    """Geometry of the canonical grouped convolution, in elements and in blocks."""

    layer: str
    images: int        # canonical images (lanes of all image groups, before batch padding)
    groups: int
    cin_g: int         # input channels per group
    out_g: int         # output channels per group
    h: int
    w: int
    kh: int
    kw: int
    stride: tuple
    padding: tuple
    dilation: tuple
    oh: int
    ow: int
    batch: int         # HwConfig.batch: images per block
    block_in: int
    block_out: int
    dual: bool         # two accumulators per output (mult_p != mult_n)

    @property
    def image_groups(self) -> int:
        return ceil_div(self.images, self.batch)

    @property
    def in_blocks(self) -> int:
        """Input-channel blocks per group (channels padded per group)."""
        return ceil_div(self.cin_g, self.block_in)

    @property
    def out_blocks(self) -> int:
        return ceil_div(self.out_g, self.block_out)

    @property
    def kernel_taps(self) -> int:
        return self.kh * self.kw

    @property
    def pairs(self) -> int:
        return 2 if self.dual else 1

    @property
    def row_step(self) -> int:
        """Input rows between two loaded rows. A one-row kernel reads only every
        stride-th row (and has no row padding), so a LOAD's row stride skips the others."""
        return self.stride[0] if self.kh == 1 else 1

    @property
    def col_step(self) -> int:
        """Input columns between two loaded columns: a one-column kernel reads only every
        stride-th column, which a LOAD skips (x_skip) when the field can hold the gap."""
        return self.stride[1] if self.kw == 1 and self.stride[1] <= _SKIP_LIMIT + 1 else 1

    @property
    def loaded_col_stride(self) -> int:
        """Loaded columns between the input columns of consecutive output columns."""
        return self.stride[1] // self.col_step

    @property
    def loaded_row_stride(self) -> int:
        """Loaded rows between the input rows of consecutive output rows."""
        return self.stride[0] // self.row_step

    def in_rows(self, out_rows: int) -> int:
        """Loaded input rows that ``out_rows`` consecutive output rows read."""
        return (out_rows - 1) * self.loaded_row_stride + (self.kh - 1) * self.dilation[0] + 1

    def in_cols(self, out_cols: int) -> int:
        """Loaded input columns that ``out_cols`` consecutive output columns read."""
        return (out_cols - 1) * self.loaded_col_stride + (self.kw - 1) * self.dilation[1] + 1

    @property
    def useful_macs(self) -> int:
        """Unpadded multiply-accumulates of the layer (for utilization)."""
        return (self.images * self.groups * self.out_g * self.oh * self.ow
                * self.cin_g * self.kh * self.kw)


def _fail(spec: LayerSpec, field: str, why: str):
    raise AcceleratorLayerError(f"layer {spec.name}: {field} {why}")


def problem_of(spec: LayerSpec, hw: HwConfig) -> ConvProblem:
    """The canonical convolution of ``spec`` on ``hw``; AcceleratorLayerError naming the
    layer and the field for anything the accelerator cannot run."""
    check_supported(spec, hw)
    common = dict(layer=spec.name, batch=hw.batch, block_in=hw.block_in,
                  block_out=hw.block_out, dual=spec.dual_scale)
    if spec.kind == "dense":
        rows, k = spec.input_shape
        n = spec.out_channels
        return ConvProblem(images=hw.batch, groups=1, cin_g=k, out_g=n, h=ceil_div(rows, hw.batch),
                           w=1, kh=1, kw=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                           oh=ceil_div(rows, hw.batch), ow=1, **common)
    b, c, h, w = spec.input_shape
    o, cin_g, kh, kw = spec.weight.shape
    oh = ref.conv_out_size(h, kh, spec.stride[0], spec.padding[0], spec.dilation[0])
    ow = ref.conv_out_size(w, kw, spec.stride[1], spec.padding[1], spec.dilation[1])
    return ConvProblem(images=b, groups=spec.groups, cin_g=cin_g, out_g=o // spec.groups, h=h,
                       w=w, kh=kh, kw=kw, stride=tuple(spec.stride), padding=tuple(spec.padding),
                       dilation=tuple(spec.dilation), oh=oh, ow=ow, **common)


def check_supported(spec: LayerSpec, hw: HwConfig) -> None:
    _check_shapes(spec)
    _check_numerics(spec, hw)
    if spec.kind == "conv2d":
        _check_conv_fields(spec)


def _check_shapes(spec: LayerSpec) -> None:
    w = np.asarray(spec.weight)
    if not np.isin(w, (-1, 0, 1)).all():
        _fail(spec, "weight", "has values outside {-1, 0, +1}")
    want_ndim = 2 if spec.kind == "dense" else 4
    if w.ndim != want_ndim or len(spec.input_shape) != want_ndim:
        _fail(spec, "input_shape", f"{tuple(spec.input_shape)} / weight {w.shape} are not "
                                   f"{want_ndim}-D as a {spec.kind} needs")
    if min(spec.input_shape) < 1 or min(w.shape) < 1:
        _fail(spec, "input_shape", f"{tuple(spec.input_shape)} / weight {w.shape} has an empty axis")
    if spec.kind == "dense" and spec.input_shape[1] != w.shape[1]:
        _fail(spec, "input_shape", f"{tuple(spec.input_shape)} does not match weight {w.shape}")
    n = spec.out_channels
    for field in ("bias", "mult_p", "mult_n"):
        if np.asarray(getattr(spec, field)).shape != (n,):
            _fail(spec, field, f"must have shape ({n},), got {np.asarray(getattr(spec, field)).shape}")


def _check_numerics(spec: LayerSpec, hw: HwConfig) -> None:
    n = spec.out_channels
    if spec.dual_scale and not hw.dual_scale:
        _fail(spec, "mult_n", f"differs from mult_p (dual scales) but HwConfig {hw.name!r} has "
                              "no dual_scale accumulators")
    for field in ("mult_p", "mult_n"):
        v = np.asarray(getattr(spec, field))
        if v.min() < MULT_RANGE[0] or v.max() > MULT_RANGE[1]:
            _fail(spec, field, f"must be 16-bit unsigned multipliers, got range [{v.min()}, {v.max()}]")
    if np.abs(np.asarray(spec.bias, dtype=np.int64)).max() > BIAS_LIMIT:
        _fail(spec, "bias", "exceeds +-2**62 (the ALU's int64 headroom)")
    _check_residual(spec, hw)
    if spec.epilogue == "dequantize":
        for field in ("dq_scale", "dq_bias"):
            v = getattr(spec, field)
            if v is None or np.asarray(v).shape != (n,):
                _fail(spec, field, f"must have shape ({n},) for a dequantize epilogue")
    elif spec.epilogue == "requantize":
        shift = np.asarray(spec.shift) if spec.shift is not None else None
        if shift is None or shift.shape != (n,):
            _fail(spec, "shift", f"must have shape ({n},) for a requantize epilogue")
        if shift.min() < SHIFT_RANGE[0] or shift.max() > SHIFT_RANGE[1]:
            _fail(spec, "shift", f"must be in {list(SHIFT_RANGE)}, got [{shift.min()}, {shift.max()}]")
        if not -128 <= spec.lo <= spec.hi <= 127:
            _fail(spec, "lo/hi", f"clamp [{spec.lo}, {spec.hi}] is not an int8 range")
        if hw.act_bits == 2:
            _fail(spec, "epilogue", f"requantize produces int8 but HwConfig {hw.name!r} stores "
                                    "2-bit activations")
    else:
        if not hw.ternary_act:
            _fail(spec, "epilogue", f"threshold needs HwConfig.ternary_act ({hw.name!r} has none)")
        for field in ("t_lo", "t_hi"):
            v = getattr(spec, field)
            if v is None or np.asarray(v).shape != (n,):
                _fail(spec, field, f"must have shape ({n},) for a threshold epilogue")
    if hw.act_bits == 2 and not spec.input_ternary:
        _fail(spec, "input_ternary", f"is False but HwConfig {hw.name!r} loads 2-bit activations")
    k = int(np.prod(spec.weight.shape[1:]))
    ref.check_accumulator_range(k, 1 if spec.input_ternary else INT8_ABS_MAX, spec.name)


def _check_residual(spec: LayerSpec, hw: HwConfig) -> None:
    """A fused residual add: REQUANT's residual operand (docs/isa.md, ISA v1.6)."""
    if not spec.has_residual:
        return
    n = spec.out_channels
    if spec.epilogue != "requantize":
        _fail(spec, "residual_mult", f"a residual add needs a requantize epilogue, not "
                                     f"{spec.epilogue!r}")
    if spec.residual_shape is not None and tuple(spec.residual_shape) != spec.output_shape():
        _fail(spec, "residual_shape", f"{tuple(spec.residual_shape)} does not match the output "
                                      f"shape {spec.output_shape()}")
    mult = np.asarray(spec.residual_mult)
    if mult.shape != (n,):
        _fail(spec, "residual_mult", f"must have shape ({n},), got {mult.shape}")
    if mult.min() < 0 or mult.max() > isa.RESIDUAL_MULT_MAX:
        _fail(spec, "residual_mult", f"must be in [0, {isa.RESIDUAL_MULT_MAX}] (the ALU's "
                                     f"residual multiplier), got [{mult.min()}, {mult.max()}]")


def check_residual_input(spec: LayerSpec, r) -> np.ndarray:
    """The residual input of a fused residual layer as int64, or AcceleratorLayerError
    naming the layer and the field if its shape or values do not fit."""
    r = np.asarray(r)
    if tuple(r.shape) != spec.output_shape():
        _fail(spec, "residual", f"shape {tuple(r.shape)} does not match the output shape "
                                f"{spec.output_shape()}")
    if not np.issubdtype(r.dtype, np.integer) or (r.size and (r.min() < -128 or r.max() > 127)):
        _fail(spec, "residual", f"must be int8 values (dtype {r.dtype})")
    return r.astype(np.int64)


def _check_conv_fields(spec: LayerSpec) -> None:
    o, cin_g, kh, kw = spec.weight.shape
    b, c, h, w = spec.input_shape
    if spec.groups < 1 or c != cin_g * spec.groups or o % spec.groups:
        _fail(spec, "groups", f"{spec.groups} does not divide input channels {c} / weight {spec.weight.shape}")
    for field in ("stride", "padding", "dilation"):
        v = tuple(getattr(spec, field))
        low = 0 if field == "padding" else 1
        if len(v) != 2 or min(v) < low:
            _fail(spec, field, f"must be two integers >= {low}, got {v}")
    for axis, k in enumerate((kh, kw)):
        pad, dil = spec.padding[axis], spec.dilation[axis]
        if pad > _PAD_LIMIT:
            _fail(spec, "padding", f"{spec.padding} exceeds the LOAD pad field limit {_PAD_LIMIT}")
        if pad > (k - 1) * dil:
            # an output tile could then read only padding, which one 2-D LOAD cannot express
            _fail(spec, "padding", f"{spec.padding} is wider than the dilated kernel extent - 1 "
                                   f"({(k - 1) * dil}) on axis {axis}")
    oh = ref.conv_out_size(h, kh, spec.stride[0], spec.padding[0], spec.dilation[0])
    ow = ref.conv_out_size(w, kw, spec.stride[1], spec.padding[1], spec.dilation[1])
    if oh < 1 or ow < 1:
        _fail(spec, "input_shape", f"{tuple(spec.input_shape)} is smaller than the dilated kernel")
    if spec.input_ternary and spec.pad_value not in (-1, 0, 1):
        _fail(spec, "pad_value", f"{spec.pad_value} is not a ternary activation")
    if not -128 <= spec.pad_value <= 127:
        _fail(spec, "pad_value", f"{spec.pad_value} is not an int8")
