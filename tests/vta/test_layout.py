"""DRAM block layouts: the weight image from packing's 2bit format, block round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_ternary.quant import packing
from vta_ext import HwConfig, layout

CONFIGS = {n: HwConfig.load(n) for n in ("tiny", "default", "tiny_tact", "int8")}


def _naive_block_bytes(block):
    """Independent 2-bit packing of one [rows, cols] block: byte j of row r holds the codes
    w+1 of columns 4j..4j+3, column 4j+i in bits 2i+1:2i."""
    rows, cols = block.shape
    out = []
    for r in range(rows):
        for j in range(cols // 4):
            out.append(sum(int(block[r, 4 * j + i] + 1) << (2 * i) for i in range(4)))
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(o=st.integers(1, 40), k=st.integers(1, 70), cfg=st.sampled_from(["tiny", "default"]),
       seed=st.integers(0, 2**31))
def test_weight_image_from_2bit_is_the_blocked_layout(o, k, cfg, seed):
    cfg = CONFIGS[cfg]
    w = np.random.default_rng(seed).integers(-1, 2, (o, k)).astype(np.int8)
    img = layout.wgt_image_from_2bit(packing.pack(w, "2bit"), w.shape, cfg)
    bo, bi = cfg.block_out, cfg.block_in
    no, nk = -(-o // bo), -(-k // bi)
    assert img.shape == (no, nk, cfg.wgt_block_bytes)
    padded = np.zeros((no * bo, nk * bi), dtype=np.int8)
    padded[:o, :k] = w
    for i in range(no):
        for j in range(nk):
            blk = padded[i * bo:(i + 1) * bo, j * bi:(j + 1) * bi]
            assert img[i, j].tobytes() == _naive_block_bytes(blk)
            assert (layout.unpack_wgt(img[i, j], cfg)[0] == blk).all()


def test_weight_image_of_conv_weights_uses_packing_row_view():
    cfg = CONFIGS["tiny"]
    w = np.random.default_rng(1).integers(-1, 2, (6, 3, 3, 3)).astype(np.int8)
    img = layout.wgt_image_from_2bit(packing.pack(w, "2bit"), w.shape, cfg)
    blocks = layout.weight_blocks(w, cfg)
    assert (layout.unpack_wgt(img.reshape(-1, cfg.wgt_block_bytes), cfg)
            == blocks.reshape(-1, 4, 4)).all()
    with pytest.raises(ValueError, match="8-bit weights"):
        layout.wgt_image_from_2bit(packing.pack(w, "2bit"), w.shape, CONFIGS["int8"])


def test_trit_codes_and_invalid_code():
    assert layout.pack_trits(np.array([[-1, 0, 1, 1]])).tolist() == [[0 | 1 << 2 | 2 << 4 | 2 << 6]]
    with pytest.raises(ValueError, match="invalid ternary code 3 at element 1, byte 0, bit 2"):
        layout.unpack_trits(np.array([[0x55], [0b1101]], dtype=np.uint8))
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        layout.pack_trits(np.array([[2, 0, 0, 0]]))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_block_round_trips(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(2)
    act = (-1, 2) if cfg.act_bits == 2 else (-128, 128)
    wgt = (-1, 2) if cfg.wgt_bits == 2 else (-128, 128)
    x = rng.integers(*act, (5, cfg.batch, cfg.block_in))
    assert layout.pack_inp(x, cfg).shape == (5, cfg.inp_block_bytes)
    assert (layout.unpack_inp(layout.pack_inp(x, cfg), cfg) == x).all()
    w = rng.integers(*wgt, (3, cfg.block_out, cfg.block_in))
    assert (layout.unpack_wgt(layout.pack_wgt(w, cfg), cfg) == w).all()
    y = rng.integers(*act, (4, cfg.batch, cfg.block_out))
    assert (layout.unpack_out(layout.pack_out(y, cfg), cfg) == y).all()
    a = rng.integers(-(2**31), 2**31, (4, cfg.batch, cfg.block_out))
    data = layout.pack_acc(a, cfg)
    assert data[0, :4].tobytes() == int(a[0, 0, 0]).to_bytes(4, "little", signed=True)
    assert (layout.unpack_acc(data, cfg) == a).all()
    with pytest.raises(ValueError, match="int32"):
        layout.pack_acc(a + 2**31, cfg)


def test_par_records_hand_worked_and_reserved():
    cfg = CONFIGS["tiny"]
    data = layout.pack_par(cfg, mult_p=[16384, 1, 2, 3], mult_n=7, shift=20, bias=-5,
                           t_lo=-(2**40), t_hi=9)
    assert data.shape == (1, 4 * 32)
    rec0 = data[0, :32].tobytes()
    assert rec0[0:8] == (-5).to_bytes(8, "little", signed=True)
    assert rec0[8:16] == (-(2**40)).to_bytes(8, "little", signed=True)
    assert rec0[16:24] == (9).to_bytes(8, "little", signed=True)
    assert rec0[24:26] == (16384).to_bytes(2, "little") and rec0[26:28] == (7).to_bytes(2, "little")
    assert rec0[28] == 20 and rec0[29:32] == b"\0\0\0"
    rec = layout.unpack_par(data, cfg)
    assert rec["mult_p"].tolist() == [[16384, 1, 2, 3]]
    bad = data.copy()
    bad[0, 32 + 30] = 1
    with pytest.raises(ValueError, match="element 0, channel 1 has reserved bytes"):
        layout.unpack_par(bad, cfg)
    with pytest.raises(ValueError, match="multiple of block_out"):
        layout.pack_par(cfg, mult_p=[1, 2, 3], mult_n=1, shift=1)
    with pytest.raises(ValueError, match="shift"):
        layout.pack_par(cfg, mult_p=1, mult_n=1, shift=[1, 2, 3, 256])
