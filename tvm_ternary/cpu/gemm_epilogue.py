"""Epilogues fused into the tiled GEMM's store: the int8 (trit, float32) result is written
once, straight from the accumulator registers, instead of an int64 ``z`` tensor and a
second pass.

``z`` is the layer's scaled accumulator (``M acc + bias``, int64). The kernel always takes
three epilogue operands after ``bias`` (unused ones are one-element placeholders), so one
compute serves every epilogue:

| epilogue | operands | stored (int8) |
|---|---|---|
| ``""`` (none) | - | ``z`` (int64) |
| ``trequantize`` | shift[n] | ``clamp(round_half_away(z / 2**shift), lo, hi)`` |
| ``tthreshold`` | t_lo[n], t_hi[n] | ``(z > t_hi) - (z < t_lo)`` |
| ``trequantize_residual`` | shift[n], r (as out), mult_r[n] | ``requantize(z + mult_r r)`` |
| ``tdequantize`` | scale[n], bias[n] (float32) | ``float32(float64(z) scale + bias)`` (float32) |

Per-channel operands are int64 ``[groups * rows]`` (float32 for ``tdequantize``); the
residual ``r`` is int8 in the output's (flat) layout. Each formula is the generic
lowering's (``strategy.generic``), the one TIR form of its ``reference`` function.
"""

from __future__ import annotations

from tvm_ternary.strategy.generic import requantized, dequantized

NONE = ""
FUSABLE = ("trequantize", "tthreshold", "trequantize_residual", "tdequantize")
# The fused ops the strategy sends to the store epilogue (all of them; linears never carry
# the residual one, fused_ops.FUSED has no tlinear_trequantize_residual)
REGISTERED = FUSABLE
OPERANDS = 3   # epilogue operands every kernel takes


def out_dtype(epilogue: str) -> str:
    return {NONE: "int64", "tdequantize": "float32"}.get(epilogue, "int8")


def operand_types(epilogue: str, channels: int, out_elems: int) -> list[tuple[tuple, str]]:
    """``(shape, dtype)`` of the kernel's three epilogue operands."""
    chan, chan_f32, unused = ((channels,), "int64"), ((channels,), "float32"), ((1,), "int64")
    return {
        NONE: [unused] * 3,
        "trequantize": [chan, unused, unused],
        "tthreshold": [chan, chan, unused],
        "trequantize_residual": [chan, ((out_elems,), "int8"), chan],
        "tdequantize": [chan_f32, chan_f32, unused],
    }[epilogue]


def stored(epilogue: str, clamp: tuple, z, e0, e1, e2, n, flat):
    """The value the kernel stores for channel index ``n`` at flat output offset ``flat``."""
    lo, hi = clamp
    if epilogue == NONE:
        return z
    if epilogue == "trequantize":
        return requantized(z, e0[n], lo, hi)
    if epilogue == "tthreshold":
        return (z > e1[n]).astype("int8") - (z < e0[n]).astype("int8")
    if epilogue == "tdequantize":
        return dequantized(z, e0[n], e1[n])
    return requantized(z + e2[n] * e1[flat].astype("int64"), e0[n], lo, hi)
