"""The blocked 2-bit kernel layout is an exact, invertible transform of ternary weights."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_ternary.cpu.layout import blocked_2bit, padded_k, unblock_2bit


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 13), k=st.integers(1, 400), rows=st.sampled_from([1, 4]), seed=st.integers(0, 2**31))
def test_round_trip_and_padding(n, k, rows, seed):
    w = np.random.default_rng(seed).integers(-1, 2, size=(n, k)).astype(np.int8)
    packed = blocked_2bit(w, rows)
    assert packed.shape == ((n + rows - 1) // rows * rows, padded_k(k) // 4)
    assert np.array_equal(unblock_2bit(packed, (n, k)), w)
    # padding (extra rows and columns) holds zero weights
    full = unblock_2bit(packed, (packed.shape[0], padded_k(k)))
    assert not full[n:].any() and not full[:, k:].any()


def test_hand_worked_group():
    w = np.zeros((1, 128), np.int8)
    w[0, 0], w[0, 32], w[0, 64], w[0, 96] = 1, -1, 1, 1   # byte 0 holds k = 0, 32, 64, 96
    packed = blocked_2bit(w)
    assert packed[0, 0] == (2 | 0 << 2 | 2 << 4 | 2 << 6)
    assert (packed[0, 1:] == 0b01010101).all()            # every other trit is 0 (code 1)


def test_rejects_non_ternary():
    with pytest.raises(ValueError, match="ternary"):
        blocked_2bit(np.array([[2, 0]]))
