"""lanes_2bit: output channels in vector lanes, four 2-bit codes a byte; round trip and
the byte layout worked by hand."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tvm_ternary.cpu.gemm_layout import lanes_2bit, pad_channels, unpack_lanes
from tvm_ternary.errors import PackError


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 150), st.sampled_from([8, 16]),
       st.sampled_from([1, 2]), st.integers(0, 2**31))
def test_round_trip(groups, n, k, lanes, vectors, seed):
    w = np.random.default_rng(seed).integers(-1, 2, (groups, n, k)).astype(np.int8)
    packed = lanes_2bit(w, lanes, lanes * vectors)
    tile = lanes * vectors
    assert packed.shape == (groups, -(-n // tile) * tile // lanes, -(-k // 16), 4 * lanes)
    assert np.array_equal(unpack_lanes(packed, (groups, n, k)), w)


def test_lane_holds_four_consecutive_weights_of_one_channel():
    # hand-worked, 8 lanes: channel 3, k = 16 + 4 * 2 + (0..3) = 24..27 are +1, 0, -1, +1:
    # block q = 1, shift j = 2, bytes 4 * 3 + t = 12..15 hold codes 2, 1, 0, 2 in bits 4..5
    w = np.zeros((1, 8, 40), np.int8)
    w[0, 3, 24:28] = [1, 0, -1, 1]
    packed = lanes_2bit(w, 8)
    zero = 0b01010101                                   # code 1 (weight 0) in all four slots
    assert [packed[0, 0, 1, 12 + t] for t in range(4)] == [
        zero & ~0b110000 | (c << 4) for c in (2, 1, 0, 2)]
    assert packed[0, 0, 1, 11] == zero
    assert packed[0, 0, 2, 31] == zero                  # K padding (k = 40..47) is weight 0


def test_pad_channels_per_group():
    v = np.arange(6).reshape(2, 3)
    assert pad_channels(v, 4).tolist() == [0, 1, 2, 0, 3, 4, 5, 0]


@pytest.mark.parametrize("bad", [np.full((1, 2, 3), 2), np.zeros((2, 3))])
def test_bad_weights_are_named(bad):
    with pytest.raises(PackError, match="tlinear weight must be a 3-D .* ternary"):
        lanes_2bit(bad, 8, what="tlinear weight")


def test_bad_multiple_is_named():
    with pytest.raises(PackError, match="rows_multiple 12 is not a multiple of lanes 8"):
        lanes_2bit(np.zeros((1, 2, 3)), 8, 12)
