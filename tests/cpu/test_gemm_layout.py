"""row4_2bit: four rows interleaved per 32-byte block; round trip and the byte layout."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tvm_ternary.cpu.gemm_layout import row4_2bit, unpack_row4
from tvm_ternary.errors import PackError


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 19), st.integers(1, 150), st.sampled_from([4, 8]),
       st.sampled_from([32, 64]), st.integers(0, 2**31))
def test_round_trip(groups, n, k, rows, kmul, seed):
    w = np.random.default_rng(seed).integers(-1, 2, (groups, n, k)).astype(np.int8)
    packed = row4_2bit(w, rows, kmul)
    assert packed.shape == (groups, -(-n // rows) * rows // 4, -(-k // kmul) * kmul // 32, 32)
    assert np.array_equal(unpack_row4(packed, (groups, n, k)), w)


def test_byte_holds_four_rows_at_one_k():
    # hand-worked: rows 0..3 at k = 5 are +1, 0, -1, +1 -> codes 2, 1, 0, 2 -> 0b10_00_01_10
    w = np.zeros((1, 4, 40), np.int8)
    w[0, :, 5] = [1, 0, -1, 1]
    packed = row4_2bit(w)
    assert packed[0, 0, 0, 5] == 0b10000110
    assert packed[0, 0, 0, 4] == 0b01010101          # all zero weights: code 1 everywhere
    assert packed[0, 0, 1, 8] == 0b01010101          # K padding (k = 40) is weight 0


@pytest.mark.parametrize("bad", [np.full((1, 2, 3), 2), np.zeros((2, 3))])
def test_bad_weights_are_named(bad):
    with pytest.raises(PackError, match="tlinear weight must be a 3-D .* ternary"):
        row4_2bit(bad, what="tlinear weight")


def test_bad_multiples_are_named():
    with pytest.raises(PackError, match="rows_multiple 6"):
        row4_2bit(np.zeros((1, 2, 3)), rows_multiple=6)
