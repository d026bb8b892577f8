"""Bit-plane ternary dot products equal the integer reference; the sign-magnitude form
needs half the popcounts of the generic 2-bit form (FATNN's 2x)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_ternary.quant import reference
from tvm_ternary.quant.popcount import dot_generic_2bit, dot_sign_magnitude


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 4), n=st.integers(1, 5), k=st.integers(1, 200), seed=st.integers(0, 2**31))
def test_bitplane_dots_equal_reference(b, n, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, size=(b, k)).astype(np.int8)
    w = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
    acc_p, acc_n = reference.linear_acc(x, w)
    expected = acc_p - acc_n
    fast, fast_pops = dot_sign_magnitude(x, w)
    slow, slow_pops = dot_generic_2bit(x, w)
    assert np.array_equal(fast, expected) and np.array_equal(slow, expected)
    assert slow_pops == 2 * fast_pops


def test_hand_worked_dot():
    x = np.array([[1, -1, 0, 1]], np.int8)
    w = np.array([[1, 1, 1, -1]], np.int8)  # 1 - 1 + 0 - 1 = -1
    assert dot_sign_magnitude(x, w)[0].tolist() == [[-1]]
    assert dot_generic_2bit(x, w)[0].tolist() == [[-1]]
