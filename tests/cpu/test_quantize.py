"""CPU input quantization kernels (tquantize, tquantize_ternary): == the numpy reference
for every float32 input, including exact ties, values next to ties and thresholds, NaN,
infinities and huge values; registered so compiled models no longer fall back."""

import warnings

import numpy as np
import pytest
import torch
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

import tvm_ternary as tt
from tvm_ternary.cpu import quantize as qz
from tvm_ternary.errors import KernelConfigError
from tvm_ternary.quant import reference as ref

from ..quant.helpers import frozen_pair, random_digits_model
from .targets import AVX2_TARGET

TARGET = tvm.target.Target(AVX2_TARGET)
_SPECIAL = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 0.0, -0.0, 1e-45], np.float32)


def _run(kernel, x: np.ndarray) -> np.ndarray:
    lib = tvm.compile(kernel, target=TARGET)
    out = tvm.runtime.tensor(np.zeros(x.size, np.int8))
    lib(tvm.runtime.tensor(np.ascontiguousarray(x, np.float32).ravel()), out)
    return out.numpy()


def _reference(fn, *args):
    with warnings.catch_warnings():  # the reference casts NaN (-> 0) with a RuntimeWarning
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args)


def _near(values: np.ndarray, ulps: int = 3) -> np.ndarray:
    """float32 ``values`` and their neighbours up to ``ulps`` float32 steps away."""
    out = [values.astype(np.float32)]
    for direction in (np.inf, -np.inf):
        v = out[0]
        for _ in range(ulps):
            v = np.nextafter(v, np.float32(direction))
            out.append(v)
    return np.concatenate(out)


def _inputs(rng, size: int, scale: float, lo: int, hi: int) -> np.ndarray:
    """Random values over the clamp range and beyond, values at and next to every tie
    ``(k + 0.5) * scale`` (exact ties when scale is a power of two), and special values."""
    ks = rng.integers(lo - 3, hi + 3, size=max(size // 4, 1)) + 0.5
    ties = _near((ks * scale).astype(np.float32))
    spread = (rng.standard_normal(size) * scale * (hi - lo) / 3).astype(np.float32)
    x = np.concatenate([spread, ties, _SPECIAL])
    return rng.permutation(x)[:max(size, 1)] if size < len(x) else x


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 3000), seed=st.integers(0, 2**31),
       scale=st.one_of(st.sampled_from([0.5, 2.0 ** -7, 1.0, 3.0]),
                       st.floats(1e-6, 1e3, allow_nan=False, allow_infinity=False)),
       clamp=st.sampled_from([(-127, 127), (0, 127), (-128, 127), (-3, 5)]),
       lanes=st.sampled_from(qz.KNOBS["lanes"]))
def test_quantize_matches_reference(size, seed, scale, clamp, lanes):
    lo, hi = clamp
    x = _inputs(np.random.default_rng(seed), size, scale, lo, hi)
    got = _run(qz.make_quantize(x.size, scale, lo, hi, lanes), x)
    np.testing.assert_array_equal(got, _reference(ref.quantize, x, scale, lo, hi))


def test_ties_round_away_and_specials_by_hand():
    # scale 0.5: x / scale = 2.5 -> 3, -2.5 -> -3, 0.25 / 0.5 = 0.5 -> 1; NaN -> 0;
    # +-inf and huge values clamp; worked by hand, not taken from the code under test
    x = np.array([1.25, -1.25, 0.25, -0.25, 0.2499999, np.nan, np.inf, -np.inf, 1e30, -1e30,
                  63.25, 63.75], np.float32)
    expected = np.array([3, -3, 1, -1, 0, 0, 127, -127, 127, -127, 127, 127], np.int8)
    np.testing.assert_array_equal(_run(qz.make_quantize(x.size, 0.5, -127, 127, 8), x), expected)
    np.testing.assert_array_equal(_reference(ref.quantize, x, 0.5), expected)


def test_large_input_runs_the_parallel_loop_and_matches():
    rng = np.random.default_rng(5)
    x = _inputs(rng, qz.PARALLEL_MIN_VALUES + 1001, 0.0371, -127, 127)
    got = _run(qz.make_quantize(x.size, 0.0371, -127, 127), x)
    np.testing.assert_array_equal(got, _reference(ref.quantize, x, 0.0371))


_THRESHOLDS = st.one_of(st.floats(-4, 4, allow_nan=False), st.sampled_from([0.0, 0.5, -0.5, 1.0 / 3.0]),
                        st.sampled_from([np.inf, -np.inf, np.nan, 3.4028234663852886e38, 1e300]))


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 2000), t_lo=_THRESHOLDS, t_hi=_THRESHOLDS, seed=st.integers(0, 2**31),
       lanes=st.sampled_from(qz.KNOBS["lanes"]))
def test_quantize_ternary_matches_reference(size, t_lo, t_hi, seed, lanes):
    rng = np.random.default_rng(seed)
    finite = [t for t in (t_lo, t_hi) if np.isfinite(t) and abs(t) < 3e38]
    near = _near(np.array(finite, np.float64).astype(np.float32)) if finite else np.zeros(0, np.float32)
    x = np.concatenate([(rng.standard_normal(size) * 2).astype(np.float32), near, _SPECIAL])
    got = _run(qz.make_quantize_ternary(x.size, t_lo, t_hi, lanes), x)
    np.testing.assert_array_equal(got, ref.quantize_ternary(x, t_lo, t_hi))


@settings(max_examples=60, deadline=None)
@given(t=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e-30, 1e-30)))
def test_ternary_bounds_are_the_float32_cut_points(t):
    below, above = qz.ternary_bounds(t, t)
    if np.isnan(above):  # no float32 exceeds t
        assert np.isnan(t) or t == np.inf
    else:
        a = np.float32(above)
        assert float(a) > t and not float(np.nextafter(a, np.float32(-np.inf))) > t
    if not np.isnan(below):
        b = np.float32(below)
        assert float(b) < t and not float(np.nextafter(b, np.float32(np.inf))) < t


@pytest.mark.parametrize("act", ["int8", "ternary"])
def test_compiled_model_uses_the_kernels_not_the_fallback(act):
    x = torch.rand(8, 1, 8, 8) * 4 - 1
    _, frozen = frozen_pair(random_digits_model("mlp", 21), "twn", x, act=act)
    cm = tt.compile(frozen, (x[:1],), target="cpu")
    generic = cm.stats["fallback"]["generic"]
    assert "tquantize" not in generic and "tquantize_ternary" not in generic, generic
    op = "tquantize_ternary" if act == "ternary" else "tquantize"
    assert f"{op}: cpu_{op.removeprefix('t')}" in cm.stats["kernels"], cm.stats["kernels"]
    for i in range(len(x)):
        assert torch.equal(cm(x[i:i + 1]), tt.quant.run_reference(frozen, x[i:i + 1]))


def test_bad_kernel_configs_are_named():
    with pytest.raises(KernelConfigError, match="quantize: the input must have at least one value, got size 0"):
        qz.make_quantize(0, 0.5, -127, 127)
    with pytest.raises(KernelConfigError, match="quantize_ternary: lanes must be 8, 16 or 32, got 5"):
        qz.make_quantize_ternary(10, -0.5, 0.5, lanes=5)
    with pytest.raises(KernelConfigError, match="scale must be a finite float > 0, got 0.0"):
        qz.make_quantize(10, 0.0, -127, 127)
    with pytest.raises(KernelConfigError, match=r"clamp range \[5, 3\] is not inside int8"):
        qz.make_quantize(10, 0.5, 5, 3)
