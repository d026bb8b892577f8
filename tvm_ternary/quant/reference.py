"""The integer reference: the definition of tvm-ternary's integer semantics.

Plain numpy, slow and obvious on purpose. The torch custom ops, the CPU kernels, the
accelerator simulator and the RTL are all checked against these functions with ``==``.

Conventions used throughout:

* Integer tensors are numpy integer arrays; intermediate arithmetic is int64.
* A ternary layer produces two accumulators, ``acc_p = sum(x[w == +1])`` and
  ``acc_n = sum(x[w == -1])``; both must fit int32 (checked, never wrapped).
* The *scaled accumulator* of output channel ``c`` is
  ``z = Mp[c] * acc_p - Mn[c] * acc_n + bias[c]`` (int64). A symmetric layer has
  ``Mp == Mn`` so ``z = M * acc + bias`` with ``acc = acc_p - acc_n``. The bias is added
  after the multiply, in units of ``2**-shift`` output steps, so a folded batch norm costs
  no extra rounding (a bias in accumulator units would be rounded to ``M / 2**shift`` of an
  output step). Requantization, ternary thresholds and dequantization all read ``z``; that
  keeps asymmetric (dual-scale) layers exact with one rounding.
* Every rounding is round-half-away-from-zero (``round_half_away``); numpy's and torch's
  half-to-even rounding is never used.
"""

from __future__ import annotations

import math

import numpy as np

from tvm_ternary.errors import OverflowRiskError, ShapeMismatchError

INT8_MIN, INT8_MAX = -127, 127  # symmetric int8: -128 is never produced
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# M is in [2**15, 2**16): the full 16-bit unsigned multiplier (one DSP operand). DESIGN.md's
# [2**14, 2**15) left the top bit unused; the extra bit halves the requantize error, which
# integer residual adds carry from block to block (docs/numerics.md).
MULT_BITS = 16
# DESIGN.md said s in [15, 46] (multipliers below 1); folded batch norms need more
# (e.g. a first layer whose BN variance is small), so the shift may go down to 1.
SHIFT_MIN, SHIFT_MAX = 1, 46


# ----------------------------------------------------------------------------- rounding

def round_half_away_float(x) -> np.ndarray:
    """Round to the nearest integer, ties away from zero, as float64 (no overflow).

    ``floor(|x| + 0.5)`` is wrong for ``|x|`` just below 0.5 (the sum rounds up to 1.0),
    so the fraction is compared instead.
    """
    x = np.asarray(x, dtype=np.float64)
    mag = np.abs(x)
    whole = np.floor(mag)
    return np.sign(x) * (whole + (mag - whole >= 0.5))


def round_half_away(x) -> np.ndarray:
    """Round float values to the nearest integer, ties away from zero (as int64)."""
    return round_half_away_float(x).astype(np.int64)


def _check_domain(v: np.ndarray, what: str, limit: int) -> np.ndarray:
    """The integer rounding helpers are exact up to ``limit`` in magnitude (int64 headroom
    for their intermediate sums); refuse the rest rather than wrap."""
    if v.size and (v.max() > limit or v.min() < -limit):
        raise OverflowRiskError(f"{what}: value beyond +-2**62 (int64 headroom exhausted)")
    return v


def rounding_div(num, den) -> np.ndarray:
    """``round_half_away(num / den)`` computed exactly in integers (den > 0, |num| < 2**62)."""
    num = _check_domain(np.asarray(num, dtype=np.int64), "rounding_div", 2**62 - 1)
    den = np.asarray(den, dtype=np.int64)
    if np.any(den <= 0):
        raise ValueError("rounding_div needs a positive denominator")
    mag = (2 * np.abs(num) + den) // (2 * den)
    return np.sign(num) * mag


def rounding_shift(z, shift) -> np.ndarray:
    """``round_half_away(z / 2**shift)`` exactly, for ``|z| <= 2**62`` and ``shift >= 1``
    (scaled accumulators stay below 2**48)."""
    z = _check_domain(np.asarray(z, dtype=np.int64), "rounding_shift", 2**62)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.left_shift(np.int64(1), shift - 1)
    return np.sign(z) * np.right_shift(np.abs(z) + half, shift)


def clamp(x, lo: int, hi: int) -> np.ndarray:
    return np.minimum(np.maximum(np.asarray(x, dtype=np.int64), lo), hi)


# ----------------------------------------------------------------------------- fixed point

def quantize_multiplier(m: float) -> tuple[int, int]:
    """Fixed-point form ``(M, s)`` of a real multiplier ``m``: ``m ~= M / 2**s``.

    ``M`` is in ``[2**(MULT_BITS-1), 2**MULT_BITS)`` = ``[2**15, 2**16)`` and ``s`` in
    ``[1, 46]``, so representable multipliers lie in ``[2**-31, 2**15)``. ``m == 0`` gives ``(0, SHIFT_MIN)`` (a constant channel).
    """
    if not math.isfinite(m) or m < 0:
        raise ValueError(f"requantization multiplier must be finite and >= 0, got {m!r}")
    if m == 0:
        return 0, SHIFT_MIN
    mantissa, exponent = math.frexp(m)  # m = mantissa * 2**exponent, mantissa in [0.5, 1)
    shift = MULT_BITS - exponent
    mult = int(round_half_away(mantissa * 2**MULT_BITS))
    if mult == 2**MULT_BITS:  # mantissa rounded up to 1.0
        if shift - 1 >= SHIFT_MIN:
            mult //= 2
            shift -= 1
        else:  # at the top of the range: the largest multiplier is the nearest one
            mult -= 1
    if not SHIFT_MIN <= shift <= SHIFT_MAX:
        raise ValueError(
            f"requantization multiplier {m:.6g} is outside the representable range "
            f"[2**{MULT_BITS - 1 - SHIFT_MAX}, 2**{MULT_BITS - 1}) (needs shift {shift}, allowed {SHIFT_MIN}..{SHIFT_MAX})"
        )
    return mult, shift


# ----------------------------------------------------------------------------- quantizers

def quantize(x, scale: float, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    """Float -> int8: ``clamp(round_half_away(x / scale))`` with the division in float64.

    NaN becomes 0 (int8 has no NaN; every backend must agree, so this is stated rather
    than left to a float -> int cast, which C and numpy leave undefined); +-inf clamp."""
    if not scale > 0:
        raise ValueError(f"quantization scale must be > 0, got {scale!r}")
    q = round_half_away_float(np.asarray(x, dtype=np.float64) / np.float64(scale))
    q = np.where(np.isnan(q), 0.0, q)
    return np.clip(q, lo, hi).astype(np.int8)  # clip in float: huge values must not wrap


def quantize_ternary(x, t_lo: float, t_hi: float) -> np.ndarray:
    """Float -> ternary: +1 where ``x > t_hi``, -1 where ``x < t_lo``, else 0."""
    x = np.asarray(x, dtype=np.float64)
    return ((x > t_hi).astype(np.int8) - (x < t_lo).astype(np.int8)).astype(np.int8)


# ----------------------------------------------------------------------------- accumulation

def check_accumulator_range(k: int, max_abs_input: int, layer: str = "layer") -> None:
    """Raise if ``k`` terms of magnitude ``max_abs_input`` could overflow int32."""
    if k * max_abs_input > INT32_MAX:
        raise OverflowRiskError(
            f"{layer}: worst-case accumulator {k} x {max_abs_input} = {k * max_abs_input} "
            f"exceeds int32 ({INT32_MAX}); split the layer or lower the input range"
        )


def _check_int32(acc: np.ndarray, what: str) -> np.ndarray:
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowRiskError(f"{what}: accumulator left the int32 range")
    return acc


def _check_ternary(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w)
    if not np.isin(w, (-1, 0, 1)).all():
        raise ValueError("ternary weights must be in {-1, 0, +1}")
    return w.astype(np.int64)


def linear_acc(x, w) -> tuple[np.ndarray, np.ndarray]:
    """``x [..., K]`` int, ``w [N, K]`` ternary -> ``(acc_p, acc_n)`` of shape ``[..., N]``."""
    x = np.asarray(x, dtype=np.int64)
    w = _check_ternary(w)
    acc_p = x @ (w == 1).astype(np.int64).T
    acc_n = x @ (w == -1).astype(np.int64).T
    return _check_int32(acc_p, "linear"), _check_int32(acc_n, "linear")


def _pad_nchw(x: np.ndarray, padding: tuple[int, int], value: int = 0) -> np.ndarray:
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def conv_out_size(size, k, stride, pad, dilation):
    """Output length of a convolution or pooling window (ints, or TIR expressions)."""
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def conv2d_acc(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
               pad_value: int = 0):
    """Grouped 2-D convolution of int ``x [B, C, H, W]`` with ternary ``w [O, C/g, kh, kw]``.

    Returns ``(acc_p, acc_n)`` of shape ``[B, O, OH, OW]``. Padding holds ``pad_value``: the
    integer that stands for a real zero (0, or -1 for half-range ternary activations,
    whose wire value ``t`` means ``t + 1`` levels).
    """
    x = np.asarray(x, dtype=np.int64)
    w = _check_ternary(w)
    batch, chans, height, width = x.shape
    out_ch, cin_g, kh, kw = w.shape
    if chans != cin_g * groups or out_ch % groups:
        raise ValueError(f"conv2d: input channels {chans} / weight {w.shape} / groups {groups} disagree")
    sh, sw = stride
    dh, dw = dilation
    oh = conv_out_size(height, kh, sh, padding[0], dh)
    ow = conv_out_size(width, kw, sw, padding[1], dw)
    xp = _pad_nchw(x, padding, pad_value)
    # im2col: cols[b, c, i, j, oh, ow] = xp[b, c, i*dh + oh*sh, j*dw + ow*sw]
    cols = np.empty((batch, chans, kh, kw, oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            colsl = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            cols[:, :, i, j] = xp[:, :, rows, colsl]
    out_g = out_ch // groups
    acc = []
    for sign in (1, -1):
        mask = (w == sign).astype(np.int64)
        parts = []
        for g in range(groups):
            xg = cols[:, g * cin_g:(g + 1) * cin_g]
            wg = mask[g * out_g:(g + 1) * out_g]
            parts.append(np.einsum("bcijhw,ocij->bohw", xg, wg))
        acc.append(_check_int32(np.concatenate(parts, axis=1), "conv2d"))
    return acc[0], acc[1]


# ----------------------------------------------------------------------------- epilogues

def _per_channel(v, ndim: int, axis: int) -> np.ndarray:
    """Reshape a per-channel vector so it broadcasts along ``axis`` of an ``ndim`` tensor."""
    v = np.asarray(v)
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def scaled_acc(acc_p, acc_n, bias, mult_p, mult_n, axis: int = -1) -> np.ndarray:
    """``z = Mp * acc_p - Mn * acc_n + bias`` per output channel on ``axis`` (int64)."""
    acc_p = np.asarray(acc_p, dtype=np.int64)
    acc_n = np.asarray(acc_n, dtype=np.int64)
    nd = acc_p.ndim
    mp = _per_channel(np.asarray(mult_p, np.int64), nd, axis)
    mn = _per_channel(np.asarray(mult_n, np.int64), nd, axis)
    return mp * acc_p - mn * acc_n + _per_channel(np.asarray(bias, np.int64), nd, axis)


def requantize(z, shift, lo: int = INT8_MIN, hi: int = INT8_MAX, axis: int = -1) -> np.ndarray:
    """int64 scaled accumulator -> int8: ``clamp(round_half_away(z / 2**shift[c]), lo, hi)``.

    ``lo = 0`` is a fused ReLU.
    """
    z = np.asarray(z, dtype=np.int64)
    s = _per_channel(np.asarray(shift, np.int64), z.ndim, axis)
    return clamp(rounding_shift(z, s), lo, hi).astype(np.int8)


def threshold(z, t_lo, t_hi, axis: int = -1) -> np.ndarray:
    """Two-threshold ternary activation: +1 where ``z > t_hi[c]``, -1 where ``z < t_lo[c]``."""
    z = np.asarray(z, dtype=np.int64)
    hi = _per_channel(np.asarray(t_hi, np.int64), z.ndim, axis)
    lo = _per_channel(np.asarray(t_lo, np.int64), z.ndim, axis)
    return ((z > hi).astype(np.int8) - (z < lo).astype(np.int8)).astype(np.int8)


def dequantize(z, scale, bias, axis: int = -1) -> np.ndarray:
    """int64 scaled accumulator -> float32 for host ops:
    ``float32(float64(z) * float64(scale[c]) + float64(bias[c]))`` (scale, bias float32)."""
    z = np.asarray(z, dtype=np.int64)
    s = _per_channel(np.asarray(scale, np.float32).astype(np.float64), z.ndim, axis)
    b = _per_channel(np.asarray(bias, np.float32).astype(np.float64), z.ndim, axis)
    return (z.astype(np.float64) * s + b).astype(np.float32)


# ----------------------------------------------------------------------------- other integer ops

def add_rescale(a, b, mult_a: int, mult_b: int, shift: int,
                lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    """Residual add of two int8 tensors with different scales, one rounding:
    ``clamp(round_half_away((Ma * a + Mb * b) / 2**shift))``."""
    z = np.int64(mult_a) * np.asarray(a, np.int64) + np.int64(mult_b) * np.asarray(b, np.int64)
    return clamp(rounding_shift(z, shift), lo, hi).astype(np.int8)


def _pool_windows(x: np.ndarray, kernel, stride, padding, pad_value: int) -> np.ndarray:
    """All pooling windows of ``x [B, C, H, W]`` as ``[B, C, OH, OW, kh*kw]``."""
    kh, kw = kernel
    sh, sw = stride
    oh = conv_out_size(x.shape[2], kh, sh, padding[0], 1)
    ow = conv_out_size(x.shape[3], kw, sw, padding[1], 1)
    xp = _pad_nchw(x, padding, pad_value)
    wins = [xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    return np.stack(wins, axis=-1)


def max_pool2d(x, kernel, stride=None, padding=(0, 0)) -> np.ndarray:
    """Integer max pooling (padding never wins)."""
    x = np.asarray(x)
    stride = stride or kernel
    wins = _pool_windows(x.astype(np.int64), kernel, stride, padding, np.iinfo(np.int64).min)
    return wins.max(axis=-1).astype(x.dtype)


def avg_pool2d(x, kernel, stride=None, padding=(0, 0)) -> np.ndarray:
    """Integer average pooling, padding counted (as torch's default), one rounding."""
    x = np.asarray(x)
    stride = stride or kernel
    wins = _pool_windows(x.astype(np.int64), kernel, stride, padding, 0)
    return rounding_div(wins.sum(axis=-1), kernel[0] * kernel[1]).astype(x.dtype)


def global_avg_pool2d(x) -> np.ndarray:
    """``[B, C, H, W] -> [B, C, 1, 1]`` integer mean, rounded half away from zero."""
    x = np.asarray(x)
    total = x.astype(np.int64).sum(axis=(2, 3), keepdims=True)
    return rounding_div(total, x.shape[2] * x.shape[3]).astype(x.dtype)


# ----------------------------------------------------------------------------- fused residual

def add_residual(z, r, mult_r, axis: int = -1) -> np.ndarray:
    """The fused residual epilogue's sum: ``z + Mr[c] * r`` (int64), before requantization.

    ``z`` is a layer's scaled accumulator (``scaled_acc``), ``r`` an int8 tensor of the
    same shape (the block's shortcut), ``Mr`` a non-negative int64 per channel on ``axis``:
    the shortcut's scale in units of ``2**-shift[c]`` output steps, so one
    ``requantize(add_residual(z, r, Mr), shift)`` is the whole residual block output with
    one rounding (the fused op ``tconv2d_trequantize_residual``).
    """
    z = np.asarray(z, dtype=np.int64)
    r = np.asarray(r)
    if r.shape != z.shape:
        raise ShapeMismatchError(f"add_residual: residual shape {r.shape} differs from the output {z.shape}")
    mult_r = np.asarray(mult_r, np.int64)
    if np.any(mult_r < 0):
        raise ValueError("add_residual: residual multipliers must be >= 0")
    # each term below 2**62 (bounded with Python ints), so their int64 sum cannot wrap
    _check_domain(z, "add_residual", 2**62 - 1)
    if mult_r.size and r.size and int(mult_r.max()) * int(np.abs(r.astype(np.int64)).max()) >= 2**62:
        raise OverflowRiskError("add_residual: Mr * r beyond +-2**62 (int64 headroom exhausted)")
    total = z + _per_channel(mult_r, z.ndim, axis) * r.astype(np.int64)
    return _check_domain(total, "add_residual", 2**62)
