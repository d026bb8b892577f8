"""Portable TE computes of the ternary operators: the fallback on any target.

Each mirrors a function of ``tvm_ternary.quant.reference`` (the definition) and is tested
against it with ``==``. No schedule: these lower through TVM's default path. The fast CPU
kernels (tensorized, packed weights) replace them per target.
"""

from __future__ import annotations

from tvm import te, tirx, topi

from tvm_ternary.quant.reference import conv_out_size


def _i64(v):
    return v.astype("int64")


def _round_half_away(v):
    """``reference.round_half_away_float`` in TIR (float64)."""
    mag = tirx.abs(v)
    whole = tirx.floor(mag)
    up = tirx.Select(mag - whole >= tirx.const(0.5, "float64"), tirx.const(1.0, "float64"),
                     tirx.const(0.0, "float64"))
    sign = tirx.Select(v < tirx.const(0.0, "float64"), tirx.const(-1.0, "float64"),
                       tirx.Select(v > tirx.const(0.0, "float64"), tirx.const(1.0, "float64"),
                                   tirx.const(0.0, "float64")))
    return sign * (whole + up)


def tquantize(x: te.Tensor, scale: float, lo: int, hi: int) -> te.Tensor:
    def f(*idx):
        r = _round_half_away(x(*idx).astype("float64") / tirx.const(scale, "float64"))
        q = tirx.max(tirx.min(r, tirx.const(float(hi), "float64")), tirx.const(float(lo), "float64"))
        return tirx.Select(tirx.isnan(r), tirx.const(0, "int8"), q.astype("int8"))  # as the reference

    return te.compute(x.shape, f, name="tquantize")


def tquantize_ternary(x: te.Tensor, t_lo: float, t_hi: float) -> te.Tensor:
    def f(*idx):
        v = x(*idx).astype("float64")
        return ((v > tirx.const(t_hi, "float64")).astype("int8")
                - (v < tirx.const(t_lo, "float64")).astype("int8"))

    return te.compute(x.shape, f, name="tquantize_ternary")


def _masked(w_val, sign: int, x_val):
    return tirx.Select(w_val == tirx.const(sign, "int8"), _i64(x_val), tirx.const(0, "int64"))


def tlinear(x: te.Tensor, w: te.Tensor, bias: te.Tensor, mult: te.Tensor) -> te.Tensor:
    """``z = Mp * acc_p - Mn * acc_n + bias`` for ``x [..., K]``, ``w [N, K]``."""
    k_dim = x.shape[-1]
    lead = list(x.shape[:-1])

    def acc(sign):
        k = te.reduce_axis((0, k_dim), f"k{'p' if sign > 0 else 'n'}")
        return te.compute(lead + [w.shape[0]], lambda *i: te.sum(
            _masked(w[i[-1], k], sign, x(*i[:-1], k)), axis=k), name=f"acc_{'p' if sign > 0 else 'n'}")

    acc_p, acc_n = acc(1), acc(-1)
    return te.compute(acc_p.shape, lambda *i: _i64(mult[0, i[-1]]) * acc_p(*i)
                      - _i64(mult[1, i[-1]]) * acc_n(*i) + bias[i[-1]], name="tlinear")


def tconv2d(x: te.Tensor, w: te.Tensor, bias: te.Tensor, mult: te.Tensor, stride, padding,
            dilation, groups: int, pad_value: int) -> te.Tensor:
    batch, chans, height, width = x.shape
    out_ch, cin_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = topi.nn.pad(x, [0, 0, ph, pw], [0, 0, ph, pw], pad_value=pad_value)
    oh = conv_out_size(height, kh, sh, ph, dh)
    ow = conv_out_size(width, kw, sw, pw, dw)
    out_g = out_ch // groups

    def acc(sign):
        tag = "p" if sign > 0 else "n"
        c = te.reduce_axis((0, cin_g), f"c{tag}")
        i = te.reduce_axis((0, kh), f"i{tag}")
        j = te.reduce_axis((0, kw), f"j{tag}")
        return te.compute((batch, out_ch, oh, ow), lambda b, o, y, xx: te.sum(
            _masked(w[o, c, i, j], sign,
                    xp[b, (o // out_g) * cin_g + c, y * sh + i * dh, xx * sw + j * dw]),
            axis=[c, i, j]), name=f"acc_{tag}")

    acc_p, acc_n = acc(1), acc(-1)
    return te.compute(acc_p.shape, lambda b, o, y, xx: _i64(mult[0, o]) * acc_p[b, o, y, xx]
                      - _i64(mult[1, o]) * acc_n[b, o, y, xx] + bias[o], name="tconv2d")


def _channel(idx, axis: int):
    return idx[axis]


def requantized(v, s, lo: int, hi: int):
    """``clamp(round_half_away(v / 2**s), lo, hi)`` as int8, for int64 ``v`` and ``s``."""
    half = tirx.shift_left(tirx.const(1, "int64"), s - tirx.const(1, "int64"))
    mag = tirx.shift_right(tirx.abs(v) + half, s)
    r = tirx.Select(v < tirx.const(0, "int64"), -mag, mag)
    return tirx.max(tirx.min(r, tirx.const(hi, "int64")), tirx.const(lo, "int64")).astype("int8")


def trequantize(z: te.Tensor, shift: te.Tensor, lo: int, hi: int, axis: int) -> te.Tensor:
    def f(*idx):
        return requantized(z(*idx), _i64(shift[_channel(idx, axis)]), lo, hi)

    return te.compute(z.shape, f, name="trequantize")


def trequantize_residual(z: te.Tensor, shift: te.Tensor, r: te.Tensor, mult_r: te.Tensor,
                         lo: int, hi: int, axis: int) -> te.Tensor:
    """``requantize(z + Mr[c] * r)``: ``reference.add_residual`` then ``reference.requantize``."""
    def f(*idx):
        c = _channel(idx, axis)
        return requantized(z(*idx) + _i64(mult_r[c]) * _i64(r(*idx)), _i64(shift[c]), lo, hi)

    return te.compute(z.shape, f, name="trequantize_residual")


def tthreshold(z: te.Tensor, t_lo: te.Tensor, t_hi: te.Tensor, axis: int) -> te.Tensor:
    def f(*idx):
        c = _channel(idx, axis)
        return (z(*idx) > t_hi[c]).astype("int8") - (z(*idx) < t_lo[c]).astype("int8")

    return te.compute(z.shape, f, name="tthreshold")


def dequantized(z, scale, bias):
    """``reference.dequantize`` of one value: float64 math, one rounding to float32 (also
    the form the CPU GEMV stores in its fused dequantize epilogue)."""
    product = z.astype("float64") * scale.astype("float64")
    # The fence keeps LLVM from contracting the multiply and the add into an FMA: its one
    # rounding differs from the reference's two when the bias cancels most of the product
    # (e.g. z = 18008646664103, scale = 7.1623940f, bias = -1.28985023e14f).
    product = tirx.call_llvm_pure_intrin("float64", "llvm.arithmetic.fence", product)
    return (product + bias.astype("float64")).astype("float32")


def tdequantize(z: te.Tensor, scale: te.Tensor, bias: te.Tensor, axis: int) -> te.Tensor:
    def f(*idx):
        c = _channel(idx, axis)
        return dequantized(z(*idx), scale[c], bias[c])

    return te.compute(z.shape, f, name="tdequantize")
