import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tvm_ternary.errors import PackError
from tvm_ternary.quant.packing import (
    FORMATS,
    block_sparsity,
    pack,
    packed_bits,
    packed_shape,
    unpack,
    zero_block_bitmap,
)

# K values around every unit boundary: 4 (2bit), 5 (base3), 32, 64 (bitplane words).
EDGE_K = [1, 2, 3, 4, 5, 6, 7, 9, 10, 31, 32, 33, 63, 64, 65, 127, 128, 129]

shapes = st.one_of(
    st.tuples(st.integers(1, 200)),
    st.tuples(st.integers(1, 8), st.integers(1, 200)),
    st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3)),
)


def ternary_arrays(shape_strategy=shapes, trits=(-1, 0, 1)):
    return shape_strategy.flatmap(
        lambda s: hnp.arrays(np.int8, s, elements=st.sampled_from(trits))
    )


def rows_of(w):
    return w.reshape(1, -1) if w.ndim == 1 else w.reshape(w.shape[0], -1)


def reference_pack(w, fmt):
    """Slow, per-element statement of each format, independent of the vectorized code."""
    rows = rows_of(w)
    per = {"2bit": 4, "bitplane": 64, "base3": 5}[fmt]
    units = math.ceil(rows.shape[1] / per)
    if fmt == "bitplane":
        out = np.zeros((rows.shape[0], 2, units), dtype=np.uint64)
    else:
        out = np.zeros((rows.shape[0], units), dtype=np.uint8)
    for r, row in enumerate(rows):
        for u in range(units):
            chunk = [int(v) for v in row[u * per:(u + 1) * per]]
            chunk += [0] * (per - len(chunk))
            if fmt == "2bit":
                out[r, u] = sum((v + 1) << (2 * i) for i, v in enumerate(chunk))
            elif fmt == "base3":
                out[r, u] = sum((v + 1) * 3**i for i, v in enumerate(chunk))
            else:
                out[r, 0, u] = sum(1 << i for i, v in enumerate(chunk) if v != 0)
                out[r, 1, u] = sum(1 << i for i, v in enumerate(chunk) if v < 0)
    return out


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@given(w=ternary_arrays())
def test_round_trip(fmt, w):
    packed = pack(w, fmt)
    assert packed.shape == packed_shape(w.shape, fmt)
    assert packed.nbytes * 8 == packed_bits(w.shape, fmt)
    out = unpack(packed, fmt, w.shape)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, w)


@pytest.mark.parametrize("fmt", FORMATS)
@given(w=ternary_arrays(st.tuples(st.integers(1, 4), st.sampled_from(EDGE_K))))
def test_matches_reference_at_unit_boundaries(fmt, w):
    np.testing.assert_array_equal(pack(w, fmt), reference_pack(w, fmt))
    np.testing.assert_array_equal(unpack(pack(w, fmt), fmt, w.shape), w)


@pytest.mark.parametrize("fmt", FORMATS)
@given(w=ternary_arrays())
@settings(max_examples=25)
def test_torch_input_and_flat_buffer(fmt, w):
    packed = pack(torch.from_numpy(w), fmt)
    assert isinstance(packed, np.ndarray)
    np.testing.assert_array_equal(unpack(torch.from_numpy(packed.reshape(-1)), fmt, w.shape), w)


@pytest.mark.parametrize("fmt", FORMATS)
def test_exact_float_values_are_accepted(fmt):
    w = np.array([[-1.0, 0.0, 1.0], [-0.0, 1.0, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(unpack(pack(w, fmt), fmt, w.shape), w.astype(np.int8))
    t = torch.tensor(w, dtype=torch.bfloat16, requires_grad=True)
    np.testing.assert_array_equal(pack(t, fmt), pack(w, fmt))


def test_bitplane_accepts_its_little_endian_bytes():
    w = np.array([[-1, 0, 1] * 30], dtype=np.int8)
    raw = pack(w, "bitplane").astype("<u8").tobytes()
    np.testing.assert_array_equal(unpack(np.frombuffer(raw, np.uint8), "bitplane", w.shape), w)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_rows(fmt):
    w = np.zeros((3, 0), dtype=np.int8)
    assert pack(w, fmt).size == 0
    assert unpack(pack(w, fmt), fmt, w.shape).shape == (3, 0)


# --- hand-worked values -----------------------------------------------------------------


def test_2bit_known_bytes():
    assert pack(np.array([-1, 0, 1, 1]), "2bit").tolist() == [[0b10_10_01_00]]
    assert 0b10_10_01_00 == 0xA4
    # Each row pads on its own with code 1 (weight 0).
    assert pack(np.array([[1], [-1]]), "2bit").tolist() == [[0b01_01_01_10], [0b01_01_01_00]]


def test_base3_known_bytes():
    assert pack(np.ones(5), "base3").tolist() == [[242]]
    assert pack(-np.ones(5), "base3").tolist() == [[0]]
    assert pack(np.zeros(5), "base3").tolist() == [[121]]
    assert pack(np.array([1, -1, 0, 0, 0, 1]), "base3").tolist() == [[2 + 0 + 9 + 27 + 81, 2 + 3 + 9 + 27 + 81]]


def test_bitplane_known_words():
    packed = pack(np.array([-1, 0, 1]), "bitplane")
    assert packed.dtype == np.dtype("<u8")
    assert packed.tolist() == [[[0b101], [0b001]]]
    w = np.zeros(65, dtype=np.int8)
    w[64] = -1
    assert pack(w, "bitplane").tolist() == [[[0, 1], [0, 1]]]


def test_packed_bits():
    assert packed_bits((3, 10), "2bit") == 3 * 3 * 8
    assert packed_bits((3, 10), "base3") == 3 * 2 * 8
    assert packed_bits((3, 10), "bitplane") == 3 * 2 * 64
    assert packed_bits((64, 3, 3, 3), "2bit") == 64 * 7 * 8  # K = 27 -> 7 bytes per row


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_value_names_value_and_index(fmt):
    w = np.zeros((2, 3, 4))
    w[1, 2, 3] = 0.5
    with pytest.raises(PackError, match=r"index \(1, 2, 3\) is 0\.5"):
        pack(w, fmt)
    with pytest.raises(PackError, match=r"index \(4,\) is 2"):
        pack(np.array([0, 1, -1, 0, 2]), fmt)
    with pytest.raises(PackError, match=r"index \(0,\) is nan"):
        pack(np.array([np.nan]), fmt)


def test_length_mismatch_says_expected_and_got():
    msg = "2bit buffer for shape (3, 10) must be (3, 3) bytes, got (3, 2)"
    with pytest.raises(PackError, match=re.escape(msg)):
        unpack(np.zeros((3, 2), np.uint8), "2bit", (3, 10))
    with pytest.raises(PackError, match=re.escape("must be (2, 2) bytes, got (5,)")):
        unpack(np.zeros(5, np.uint8), "base3", (2, 6))
    with pytest.raises(PackError, match=re.escape("must be (1, 2, 2) uint64 words, got (1, 2, 1)")):
        unpack(np.zeros((1, 2, 1), np.uint64), "bitplane", (65,))


@pytest.mark.parametrize("fmt, dtype", [("2bit", np.int32), ("base3", np.uint16), ("bitplane", np.int64)])
def test_wrong_buffer_dtype(fmt, dtype):
    with pytest.raises(PackError, match=f"{fmt} buffer must be .*got dtype {np.dtype(dtype)}"):
        unpack(np.zeros(packed_shape((2, 8), fmt), dtype), fmt, (2, 8))


def test_2bit_code_3_names_row_and_column():
    packed = pack(np.zeros((2, 8)), "2bit")
    packed[1, 1] |= 0b11 << 4  # third trit of the second byte: column 6
    with pytest.raises(PackError, match="invalid code 3 at row 1, column 6"):
        unpack(packed, "2bit", (2, 8))


def test_base3_byte_243_names_row_and_byte():
    packed = pack(np.zeros((2, 10)), "base3")
    packed[1, 0] = 243
    with pytest.raises(PackError, match="invalid byte 243 at row 1, byte 0"):
        unpack(packed, "base3", (2, 10))


def test_bitplane_sign_without_nonzero():
    packed = pack(np.zeros((2, 70)), "bitplane")
    packed[0, 1, 1] = 1 << 3  # sign bit of column 64 + 3
    with pytest.raises(PackError, match="sign bit without a nonzero bit at row 0, column 67"):
        unpack(packed, "bitplane", (2, 70))


@pytest.mark.parametrize("fmt", FORMATS)
def test_nonzero_padding_is_rejected(fmt):
    # One full unit packed for K = 4/5/64, read back as K = 3: columns 3.. land in padding.
    w = np.zeros({"2bit": 4, "base3": 5, "bitplane": 64}[fmt], dtype=np.int8)
    w[3:] = 1
    with pytest.raises(PackError, match=f"{fmt} buffer row 0 encodes weight 1 in padding column 3"):
        unpack(pack(w, fmt), fmt, (1, 3))


@pytest.mark.parametrize("call", [
    lambda: pack(np.zeros(4), "3bit"),
    lambda: unpack(np.zeros(1, np.uint8), "ternary", (4,)),
    lambda: packed_bits((4,), "2-bit"),
])
def test_unknown_format_lists_valid_ones(call):
    with pytest.raises(PackError, match="unknown packed format .*valid formats: 2bit, bitplane, base3"):
        call()


def test_zero_dim_and_non_numeric():
    with pytest.raises(PackError, match="0-d tensor"):
        pack(np.int8(1), "2bit")
    with pytest.raises(PackError, match="must be numeric, got dtype <U1"):
        pack(np.array(["1"]), "2bit")


# --- block zero bitmaps -----------------------------------------------------------------


def direct_zero_blocks(w, bo, bi):
    rows = rows_of(w)
    o, k = rows.shape
    out = np.zeros((math.ceil(o / bo), math.ceil(k / bi)), dtype=bool)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = not rows[i * bo:(i + 1) * bo, j * bi:(j + 1) * bi].any()
    return out


@given(
    w=ternary_arrays(trits=(0,) * 12 + (-1, 1)),
    bo=st.integers(1, 9),
    bi=st.integers(1, 70),
)
def test_zero_block_bitmap_matches_direct_check(w, bo, bi):
    bitmap = zero_block_bitmap(w, block=(bo, bi))
    expected = direct_zero_blocks(w, bo, bi)
    np.testing.assert_array_equal(bitmap, expected)
    assert block_sparsity(bitmap) == pytest.approx(expected.mean())


def test_zero_block_bitmap_small_case():
    w = np.array([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, -1]])
    bitmap = zero_block_bitmap(torch.from_numpy(w), block=(2, 2))
    assert bitmap.tolist() == [[True, False, True], [True, True, False]]
    assert block_sparsity(bitmap) == pytest.approx(4 / 6)
    assert block_sparsity(np.zeros((0, 3), bool)) == 0.0


@pytest.mark.parametrize("block", [(0, 4), (4, -1), (4,), "ab", None])
def test_bad_block(block):
    with pytest.raises(PackError, match="block must be a pair"):
        zero_block_bitmap(np.zeros((4, 4)), block=block)
