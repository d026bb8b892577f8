"""CPU kernels of ``tquantize`` (float -> int8) and ``tquantize_ternary`` (float -> {-1,0,1}).

``reference.quantize`` divides in float64, ``clamp(round_half_away(fl64(x / scale)))``:
done literally (the generic compute) that is two ``vdivpd`` and ~30 float64 uops per 8
values. Here the kernel works in float32 vectors and is still exact:

* ``y = x * fl32(1 / scale)`` is within ``2**-22 |q|`` of ``d = fl64(x / scale)``, so
  ``round(y) == round_half_away(d)`` unless ``|y|``'s fraction lies within a band of
  ``2**-18 |y|`` around 0.5 (a possible tie, or a wrong side of one). A chunk of
  ``lanes`` values with such a lane (or a NaN) is recomputed lane by lane the reference's
  way (float64 division, fraction compare); values beyond the clamp range need no care.
  Inputs rarely hit the band (about 1e-5 of random values; every exact tie does).
* ``tquantize_ternary`` compares in float64; the host turns each float64 threshold into
  the float32 bound that gives the same answer for every float32 input
  (``ternary_bounds``), so the kernel compares float32 vectors.

NaN gives 0, as the reference's float -> int8 conversion does here (and the comparisons
of the ternary variant do); +-inf clamp. The loop over chunks is parallel for large
inputs (``PARALLEL_MIN_VALUES``).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError

from .vector import lane_sum

PARALLEL_MIN_VALUES = 1 << 16  # below this the thread wake-up costs more than it saves
KNOBS = {"lanes": [16, 8, 32]}  # float32 values per chunk (the first the default)
_BAND = 2.0 ** -18  # relative half-width of the band around a tie (30x the error bound)


def _check(kernel: str, size: int, lanes: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise KernelConfigError(f"{kernel}: the input must have at least one value, got size {size!r}")
    if lanes not in (8, 16, 32):
        raise KernelConfigError(f"{kernel}: lanes must be 8, 16 or 32, got {lanes!r}")


def _check_range(scale: float, lo: int, hi: int) -> None:
    if not (isinstance(scale, float) and math.isfinite(scale) and scale > 0):
        raise KernelConfigError(f"quantize: scale must be a finite float > 0, got {scale!r}")
    if not -128 <= lo <= hi <= 127:
        raise KernelConfigError(f"quantize: clamp range [{lo}, {hi}] is not inside int8")


def _tag(*constants) -> str:
    """A symbol suffix for the constants baked into a kernel: equal layers share one
    function, layers with other scales or thresholds never clash."""
    return hashlib.sha1(repr(constants).encode()).hexdigest()[:10]


def _f32(v: float):
    return tirx.const(v, "float32")


def _exact(v32, scale: float, lo: int, hi: int):
    """One value the reference's way: float64 division, round half away, clamp; NaN -> 0."""
    q = v32.astype("float64") / tirx.const(scale, "float64")
    whole = tirx.trunc(q)
    away = tirx.Select(q < tirx.const(0.0, "float64"), tirx.const(-1.0, "float64"), tirx.const(1.0, "float64"))
    r = whole + tirx.Select(tirx.abs(q - whole) >= tirx.const(0.5, "float64"), away, tirx.const(0.0, "float64"))
    r = tirx.max(tirx.min(r, tirx.const(float(hi), "float64")), tirx.const(float(lo), "float64"))
    return tirx.Select(tirx.isnan(q), tirx.const(0.0, "float64"), r).astype("int32").astype("int8")


def _fast(y, lanes: int, lo: int, hi: int):
    """``round(y)`` clamped, as int8 lanes (right wherever ``_unsure`` is 0)."""
    r = tirx.nearbyint(tirx.Select(tirx.isnan(y), T.broadcast(_f32(0.0), lanes), y))
    r = tirx.max(tirx.min(r, T.broadcast(_f32(hi), lanes)), T.broadcast(_f32(lo), lanes))
    return r.astype(f"int32x{lanes}").astype(f"int8x{lanes}")


def _unsure(y, lanes: int, limit: float):
    """int32 lanes: 1 where ``round(y)`` may differ from the reference (near a tie, NaN)."""
    mag = tirx.abs(y)
    off_half = tirx.abs(mag - tirx.floor(mag) - T.broadcast(_f32(0.5), lanes))
    sure = tirx.Or(off_half > mag * T.broadcast(_f32(_BAND), lanes), mag > T.broadcast(_f32(limit), lanes))
    return tirx.Select(sure, T.broadcast(T.int32(0), lanes), T.broadcast(T.int32(1), lanes))


def make_quantize(size: int, scale: float, lo: int, hi: int, lanes: int = KNOBS["lanes"][0]):
    """``quantize(x [size] float32, q [size] int8)`` == ``reference.quantize(x, scale, lo, hi)``."""
    _check("quantize", size, lanes)
    _check_range(scale, lo, hi)
    L, N = lanes, size
    C = N // L
    inv = float(np.float32(1.0 / scale))
    limit = float(max(abs(lo), abs(hi)) + 2)
    chunks = T.parallel if N >= PARALLEL_MIN_VALUES else T.serial

    @T.prim_func(s_tir=True)  # block form: Relax passes (RewriteDataflowReshape) inspect it
    def quantize(x: T.Buffer((N,), "float32"), q: T.Buffer((N,), "int8")):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            for c in chunks(C):
                q[T.ramp(c * L, 1, L)] = _fast(x[T.ramp(c * L, 1, L)] * T.broadcast(_f32(inv), L), L, lo, hi)
                if lane_sum(_unsure(x[T.ramp(c * L, 1, L)] * T.broadcast(_f32(inv), L), L, limit), "int32") != 0:
                    for i in range(L):
                        q[c * L + i] = _exact(x[c * L + i], scale, lo, hi)
            for i in range(N - C * L):
                q[C * L + i] = _exact(x[C * L + i], scale, lo, hi)

    return quantize.with_attr("global_symbol", f"tternary_quantize_l{L}_n{N}_{_tag(scale, lo, hi)}")


def ternary_bounds(t_lo: float, t_hi: float) -> tuple[float, float]:
    """float32 ``(below, above)`` with, for every float32 ``x``: ``x > t_hi`` (float64) iff
    ``x >= above`` and ``x < t_lo`` iff ``x <= below``; NaN where no float32 qualifies."""
    return -_first_above(-t_lo), _first_above(t_hi)


def _first_above(t: float) -> float:
    """The smallest float32 greater than ``t`` (compared in float64), or NaN."""
    if math.isnan(t) or t == math.inf:
        return math.nan
    if t >= float(np.finfo(np.float32).max):
        return math.inf
    a = np.float32(max(t, -float(np.finfo(np.float32).max)))  # rounds to nearest
    while float(a) <= t:
        a = np.nextafter(a, np.float32(np.inf))
    while float(np.nextafter(a, np.float32(-np.inf))) > t:
        a = np.nextafter(a, np.float32(-np.inf))
    return float(a)


def make_quantize_ternary(size: int, t_lo: float, t_hi: float, lanes: int = KNOBS["lanes"][0]):
    """``quantize_ternary(x [size] float32, q [size] int8)`` ==
    ``reference.quantize_ternary(x, t_lo, t_hi)``."""
    _check("quantize_ternary", size, lanes)
    below, above = ternary_bounds(t_lo, t_hi)
    L, N = lanes, size
    C = N // L
    chunks = T.parallel if N >= PARALLEL_MIN_VALUES else T.serial

    @T.prim_func(s_tir=True)  # block form: Relax passes (RewriteDataflowReshape) inspect it
    def quantize_ternary(x: T.Buffer((N,), "float32"), q: T.Buffer((N,), "int8")):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            for c in chunks(C):
                q[T.ramp(c * L, 1, L)] = (
                    (x[T.ramp(c * L, 1, L)] >= T.broadcast(_f32(above), L)).astype(f"int8x{L}")
                    - (x[T.ramp(c * L, 1, L)] <= T.broadcast(_f32(below), L)).astype(f"int8x{L}"))
            for i in range(N - C * L):
                q[C * L + i] = (x[C * L + i] >= _f32(above)).astype("int8") - (x[C * L + i] <= _f32(below)).astype("int8")

    return quantize_ternary.with_attr("global_symbol", f"tternary_quantize_ternary_l{L}_n{N}_{_tag(t_lo, t_hi)}")
