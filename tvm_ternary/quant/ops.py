"""The ``tternary::*`` torch custom ops a frozen model is made of.

They are what ``torch.export`` records, so the TVM frontend converts ternary layers without
pattern guessing: each op carries its integer parameters as tensor arguments. The eager
kernels here are written with torch ops, independently of the numpy reference in
``reference.py``; the tests check the two agree with ``==``.

Semantics (see ``reference.py`` for the definitions):

* ``tquantize(x, scale, lo, hi)``: float -> int8.
* ``tquantize_ternary(x, t_lo, t_hi)``: float -> ternary int8.
* ``tlinear(x, w, bias, mult)`` / ``tconv2d(..., pad_value)``: int8 input, ternary int8 weights,
  int64 bias, int32 ``mult [2, N]`` (row 0 = Mp, row 1 = Mn) -> int64 scaled accumulator
  ``z = Mp * acc_p - Mn * acc_n + bias``.
* ``trequantize(z, shift, lo, hi, axis)``, ``tthreshold(z, t_lo, t_hi, axis)``,
  ``tdequantize(z, scale, bias, axis)``: the epilogues reading ``z``;
  ``trequantize_residual(z, shift, r, mult_r, lo, hi, axis)``: a residual block's output,
  ``requantize(z + Mr * r)`` with the int8 shortcut ``r`` (one rounding).

Every op name starts with ``t``: TVM's torch frontend keys custom converters by the op name
without its namespace, so ``threshold`` would collide with ``aten::threshold``.

Accumulation runs in float64, which is exact here: every partial sum is an integer below
2**31 in magnitude (checked), far inside float64's 2**53.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tvm_ternary.errors import OverflowRiskError, ShapeMismatchError

from .reference import conv_out_size

_INT32_MAX = 2**31 - 1


def _channel_view(v: Tensor, ndim: int, axis: int) -> Tensor:
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def round_half_away(x: Tensor) -> Tensor:
    """Torch twin of ``reference.round_half_away_float`` (ties away from zero, exact
    just below 0.5 where ``floor(|x| + 0.5)`` is not). Differentiable nowhere: use it
    under a straight-through estimator."""
    mag = x.abs()
    whole = torch.floor(mag)
    return torch.sign(x) * (whole + (mag - whole >= 0.5).to(x.dtype))


def _to_checked_int64(acc: Tensor, what: str) -> Tensor:
    if acc.numel() and (acc.min().item() < -_INT32_MAX - 1 or acc.max().item() > _INT32_MAX):
        raise OverflowRiskError(f"{what}: accumulator left the int32 range")
    return acc.to(torch.int64)


def _check_ternary(w: Tensor) -> None:
    if w.numel() and ((w < -1) | (w > 1)).any():
        raise ValueError("ternary weights must be in {-1, 0, +1}")


def _scale_accumulators(acc_p: Tensor, acc_n: Tensor, bias: Tensor, mult: Tensor, axis: int) -> Tensor:
    nd = acc_p.dim()
    mp = _channel_view(mult[0].to(torch.int64), nd, axis)
    mn = _channel_view(mult[1].to(torch.int64), nd, axis)
    acc_p, acc_n = _to_checked_int64(acc_p, "accumulate"), _to_checked_int64(acc_n, "accumulate")
    return mp * acc_p - mn * acc_n + _channel_view(bias.to(torch.int64), nd, axis)


# ----------------------------------------------------------------------------- quantizers

@torch.library.custom_op("tternary::tquantize", mutates_args=())
def tquantize(x: Tensor, scale: float, lo: int, hi: int) -> Tensor:
    q = round_half_away(x.double() / scale)
    return q.nan_to_num(0.0, posinf=hi, neginf=lo).clamp(lo, hi).to(torch.int8)  # NaN -> 0


@tquantize.register_fake
def _(x, scale, lo, hi):
    return torch.empty_like(x, dtype=torch.int8)


@torch.library.custom_op("tternary::tquantize_ternary", mutates_args=())
def tquantize_ternary(x: Tensor, t_lo: float, t_hi: float) -> Tensor:
    x = x.double()
    return ((x > t_hi).to(torch.int8) - (x < t_lo).to(torch.int8))


@tquantize_ternary.register_fake
def _(x, t_lo, t_hi):
    return torch.empty_like(x, dtype=torch.int8)


# ----------------------------------------------------------------------------- ternary layers

@torch.library.custom_op("tternary::tlinear", mutates_args=())
def tlinear(x: Tensor, w: Tensor, bias: Tensor, mult: Tensor) -> Tensor:
    _check_ternary(w)
    xd = x.double()
    acc_p = xd @ (w == 1).double().T
    acc_n = xd @ (w == -1).double().T
    return _scale_accumulators(acc_p, acc_n, bias, mult, axis=-1)


@tlinear.register_fake
def _(x, w, bias, mult):
    return x.new_empty((*x.shape[:-1], w.shape[0]), dtype=torch.int64)


@torch.library.custom_op("tternary::tconv2d", mutates_args=())
def tconv2d(x: Tensor, w: Tensor, bias: Tensor, mult: Tensor, stride: list[int],
            padding: list[int], dilation: list[int], groups: int, pad_value: int = 0) -> Tensor:
    _check_ternary(w)
    ph, pw = padding
    xd = F.pad(x.double(), (pw, pw, ph, ph), value=float(pad_value))
    acc = [F.conv2d(xd, (w == sign).double(), None, stride, 0, dilation, groups)
           for sign in (1, -1)]
    return _scale_accumulators(acc[0], acc[1], bias, mult, axis=1)


@tconv2d.register_fake
def _(x, w, bias, mult, stride, padding, dilation, groups, pad_value=0):
    oh = conv_out_size(x.shape[2], w.shape[2], stride[0], padding[0], dilation[0])
    ow = conv_out_size(x.shape[3], w.shape[3], stride[1], padding[1], dilation[1])
    return x.new_empty((x.shape[0], w.shape[0], oh, ow), dtype=torch.int64)


# ----------------------------------------------------------------------------- epilogues

def _requantize(z: Tensor, shift: Tensor, lo: int, hi: int, axis: int) -> Tensor:
    s = _channel_view(shift.to(torch.int64), z.dim(), axis)
    half = torch.bitwise_left_shift(torch.ones_like(s), s - 1)
    mag = torch.bitwise_right_shift(z.abs() + half, s)
    return (torch.sign(z) * mag).clamp(lo, hi).to(torch.int8)


@torch.library.custom_op("tternary::trequantize", mutates_args=())
def trequantize(z: Tensor, shift: Tensor, lo: int, hi: int, axis: int) -> Tensor:
    return _requantize(z, shift, lo, hi, axis)


@trequantize.register_fake
def _(z, shift, lo, hi, axis):
    return torch.empty_like(z, dtype=torch.int8)


def _check_residual(z: Tensor, r: Tensor) -> None:
    if tuple(r.shape) != tuple(z.shape):
        raise ShapeMismatchError(f"trequantize_residual: residual r has shape {list(r.shape)}, "
                                 f"the output {list(z.shape)}")


_HEADROOM = 2**62  # as reference.add_residual: each term and the sum stay inside int64


@torch.library.custom_op("tternary::trequantize_residual", mutates_args=())
def trequantize_residual(z: Tensor, shift: Tensor, r: Tensor, mult_r: Tensor, lo: int, hi: int,
                         axis: int) -> Tensor:
    _check_residual(z, r)
    mr = _channel_view(mult_r.to(torch.int64), z.dim(), axis)
    big_z = z.numel() and int(z.abs().max()) >= _HEADROOM
    big_r = r.numel() and int(mult_r.max()) * int(r.to(torch.int64).abs().max()) >= _HEADROOM
    if big_z or big_r:
        raise OverflowRiskError("trequantize_residual: z + Mr * r beyond +-2**62")
    total = z + mr * r.to(torch.int64)
    if total.numel() and int(total.abs().max()) > _HEADROOM:
        raise OverflowRiskError("trequantize_residual: z + Mr * r beyond +-2**62")
    return _requantize(total, shift, lo, hi, axis)


@trequantize_residual.register_fake
def _(z, shift, r, mult_r, lo, hi, axis):
    _check_residual(z, r)
    return torch.empty_like(z, dtype=torch.int8)


@torch.library.custom_op("tternary::tthreshold", mutates_args=())
def tthreshold(z: Tensor, t_lo: Tensor, t_hi: Tensor, axis: int) -> Tensor:
    hi = _channel_view(t_hi.to(torch.int64), z.dim(), axis)
    lo = _channel_view(t_lo.to(torch.int64), z.dim(), axis)
    return (z > hi).to(torch.int8) - (z < lo).to(torch.int8)


@tthreshold.register_fake
def _(z, t_lo, t_hi, axis):
    return torch.empty_like(z, dtype=torch.int8)


@torch.library.custom_op("tternary::tdequantize", mutates_args=())
def tdequantize(z: Tensor, scale: Tensor, bias: Tensor, axis: int) -> Tensor:
    s = _channel_view(scale.to(torch.float32).double(), z.dim(), axis)
    b = _channel_view(bias.to(torch.float32).double(), z.dim(), axis)
    return (z.double() * s + b).to(torch.float32)


@tdequantize.register_fake
def _(z, scale, bias, axis):
    return torch.empty_like(z, dtype=torch.float32)
