"""The blocked 2-bit kernel layouts are exact, invertible transforms of ternary weights."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_ternary.cpu.layout import (blocked_2bit, deinterleave_2bit, interleaved_2bit, padded_k,
                                    unblock_2bit)
from tvm_ternary.errors import KernelConfigError, PackError


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 13), k=st.integers(1, 600), rows=st.sampled_from([1, 4, 8]),
       lanes=st.sampled_from([32, 64]), seed=st.integers(0, 2**31))
def test_round_trip_and_padding(n, k, rows, lanes, seed):
    w = np.random.default_rng(seed).integers(-1, 2, size=(n, k)).astype(np.int8)
    packed = blocked_2bit(w, rows, lanes)
    assert packed.shape == ((n + rows - 1) // rows * rows, padded_k(k, lanes) // 4)
    assert padded_k(k, lanes) % (4 * lanes) == 0 and padded_k(k, lanes) - k < 4 * lanes
    assert np.array_equal(unblock_2bit(packed, (n, k), lanes), w)
    # padding (extra rows and columns) holds zero weights
    full = unblock_2bit(packed, (packed.shape[0], padded_k(k, lanes)), lanes)
    assert not full[n:].any() and not full[:, k:].any()
    inter = interleaved_2bit(w, rows, lanes)
    assert inter.shape == (packed.shape[0] // rows, packed.size // (packed.shape[0] // rows))
    assert np.array_equal(deinterleave_2bit(inter, rows, lanes), packed)


def test_hand_worked_group():
    w = np.zeros((1, 128), np.int8)
    w[0, 0], w[0, 32], w[0, 64], w[0, 96] = 1, -1, 1, 1   # byte 0 holds k = 0, 32, 64, 96
    packed = blocked_2bit(w)
    assert packed[0, 0] == (2 | 0 << 2 | 2 << 4 | 2 << 6)
    assert (packed[0, 1:] == 0b01010101).all()            # every other trit is 0 (code 1)


def test_hand_worked_interleave():
    # two rows, two 32-byte groups each: the stream is row0 g0, row1 g0, row0 g1, row1 g1
    w = np.zeros((2, 256), np.int8)
    w[0, 128] = 1    # row 0, group 1, byte 0, field 0 -> code 2
    w[1, 1] = -1     # row 1, group 0, byte 1, field 0 -> code 0
    inter = interleaved_2bit(w, rows=2)
    assert inter.shape == (1, 128)
    assert inter[0, 32 + 1] == 0b01010100 and inter[0, 64] == 0b01010110
    untouched = np.delete(inter[0], [33, 64])
    assert (untouched == 0b01010101).all()


def test_rejects_non_ternary_naming_the_weight():
    with pytest.raises(PackError, match=r"weight \[1, 0\] is 2"):
        blocked_2bit(np.array([[1, 0], [2, 0]]))


def test_rejects_bad_shapes_and_block_sizes():
    with pytest.raises(PackError, match=r"2-D .* shape \(4,\)"):
        blocked_2bit(np.zeros(4, np.int8))
    with pytest.raises(KernelConfigError, match="lanes must be 32 .* got 48"):
        blocked_2bit(np.zeros((2, 4), np.int8), lanes=48)
    with pytest.raises(KernelConfigError, match="rows per block must be >= 1, got 0"):
        interleaved_2bit(np.zeros((2, 4), np.int8), rows=0)
