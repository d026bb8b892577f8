"""DRAM layouts of the accelerator's blocks: the bytes a LOAD reads and a STORE writes.

Every DRAM element is one block (docs/isa.md, "DRAM layouts"):

- INP  ``[batch][block_in]`` at act_bits: int8, or 2-bit codes ``t + 1`` 4 per byte, least
  significant first, each batch row on whole bytes (the ``2bit`` format of
  ``tvm_ternary.quant.packing`` applied to the block's rows).
- WGT  ``[block_out][block_in]`` at wgt_bits: int8, or the ``2bit`` format of the block's rows.
- ACC  ``[batch][block_out]`` int32 little-endian.
- OUT  ``[batch][block_out]`` at act_bits (int8, or 2-bit codes as INP).
- PAR  ``[block_out]`` records of PAR_CHANNEL_BYTES: bias int64, t_lo int64, t_hi int64,
  Mp uint16, Mn uint16, shift uint8, 3 zero bytes (all little-endian).

Decoders raise ``ValueError`` with the element and position of a bad value; the simulator
turns that into a trap naming the instruction.
"""

from __future__ import annotations

import numpy as np

from .config import PAR_CHANNEL_BYTES, HwConfig

_SHIFTS = np.arange(0, 8, 2, dtype=np.uint8)

PAR_DTYPE = np.dtype([("bias", "<i8"), ("t_lo", "<i8"), ("t_hi", "<i8"), ("mult_p", "<u2"),
                      ("mult_n", "<u2"), ("shift", "u1"), ("reserved", "u1", (3,))])
assert PAR_DTYPE.itemsize == PAR_CHANNEL_BYTES


# ---------------------------------------------------------------------------- 2-bit codes

def pack_trits(t: np.ndarray) -> np.ndarray:
    """``[..., n]`` trits in {-1,0,1} (n a multiple of 4) -> uint8 ``[..., n/4]``."""
    t = np.asarray(t)
    if not np.isin(t, (-1, 0, 1)).all():
        raise ValueError("2-bit elements must be -1, 0 or 1")
    codes = (t + 1).astype(np.uint8).reshape(*t.shape[:-1], t.shape[-1] // 4, 4)
    return np.bitwise_or.reduce(codes << _SHIFTS, axis=-1).astype(np.uint8)


def unpack_trits(b: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_trits`; ValueError naming the first invalid code 3."""
    b = np.asarray(b, dtype=np.uint8)
    codes = (b[..., None] >> _SHIFTS) & 3
    if (codes == 3).any():
        pos = tuple(int(i) for i in np.argwhere(codes == 3)[0])
        raise ValueError(f"invalid ternary code 3 at element {pos[0]}, byte {pos[-2]}, "
                         f"bit {2 * pos[-1]}")
    return codes.reshape(*b.shape[:-1], b.shape[-1] * 4).astype(np.int8) - 1


def _pack_values(v: np.ndarray, bits: int) -> np.ndarray:
    """``[n, rows, cols]`` int values -> uint8 ``[n, block_bytes]``."""
    v = np.asarray(v)
    if bits == 2:
        return pack_trits(v).reshape(v.shape[0], -1)
    if v.size and (v.min() < -128 or v.max() > 127):
        raise ValueError("int8 elements must be in [-128, 127]")
    return v.astype(np.int8).view(np.uint8).reshape(v.shape[0], -1)


def _unpack_values(b: np.ndarray, bits: int, rows: int, cols: int) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint8).reshape(-1, rows, cols * bits // 8)
    if bits == 2:
        return unpack_trits(b)
    return b.view(np.int8).reshape(-1, rows, cols)


# ---------------------------------------------------------------------------- per memory type

def pack_inp(blocks, cfg: HwConfig) -> np.ndarray:
    """int ``[n, batch, block_in]`` -> uint8 ``[n, inp_block_bytes]``."""
    return _pack_values(_shaped(blocks, (cfg.batch, cfg.block_in), "inp"), cfg.act_bits)


def unpack_inp(data, cfg: HwConfig) -> np.ndarray:
    return _unpack_values(data, cfg.act_bits, cfg.batch, cfg.block_in)


def pack_wgt(blocks, cfg: HwConfig) -> np.ndarray:
    """int ``[n, block_out, block_in]`` -> uint8 ``[n, wgt_block_bytes]``."""
    return _pack_values(_shaped(blocks, (cfg.block_out, cfg.block_in), "wgt"), cfg.wgt_bits)


def unpack_wgt(data, cfg: HwConfig) -> np.ndarray:
    return _unpack_values(data, cfg.wgt_bits, cfg.block_out, cfg.block_in)


def pack_out(blocks, cfg: HwConfig) -> np.ndarray:
    """int ``[n, batch, block_out]`` -> uint8 ``[n, out_block_bytes]``."""
    return _pack_values(_shaped(blocks, (cfg.batch, cfg.block_out), "out"), cfg.act_bits)


def unpack_out(data, cfg: HwConfig) -> np.ndarray:
    return _unpack_values(data, cfg.act_bits, cfg.batch, cfg.block_out)


def pack_acc(blocks, cfg: HwConfig) -> np.ndarray:
    """int32 ``[n, batch, block_out]`` -> uint8 ``[n, acc_block_bytes]``."""
    v = _shaped(blocks, (cfg.batch, cfg.block_out), "acc").astype(np.int64)
    if v.size and (v.min() < -(2**31) or v.max() > 2**31 - 1):
        raise ValueError("acc elements must fit int32")
    return v.astype("<i4").view(np.uint8).reshape(v.shape[0], -1)


def unpack_acc(data, cfg: HwConfig) -> np.ndarray:
    b = np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1, cfg.acc_block_bytes))
    return b.view("<i4").reshape(-1, cfg.batch, cfg.block_out).astype(np.int64)


def pack_par(cfg: HwConfig, *, mult_p, mult_n, shift, bias=0, t_lo=0, t_hi=0) -> np.ndarray:
    """Per-channel parameters (length a multiple of block_out, scalars broadcast) ->
    uint8 ``[n, par_block_bytes]``."""
    cols = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64).reshape(-1)
                                 for a in (bias, t_lo, t_hi, mult_p, mult_n, shift)))
    channels = cols[0].shape[0]
    if channels % cfg.block_out:
        raise ValueError(f"par: {channels} channels is not a multiple of block_out {cfg.block_out}")
    for name, v, lo, hi in (("mult_p", cols[3], 0, 2**16 - 1), ("mult_n", cols[4], 0, 2**16 - 1),
                            ("shift", cols[5], 0, 255)):
        if v.size and (v.min() < lo or v.max() > hi):
            raise ValueError(f"par.{name} must be in [{lo}, {hi}]")
    rec = np.zeros(channels, dtype=PAR_DTYPE)
    for name, v in zip(("bias", "t_lo", "t_hi", "mult_p", "mult_n", "shift"), cols):
        rec[name] = v
    return rec.view(np.uint8).reshape(-1, cfg.par_block_bytes)


def unpack_par(data, cfg: HwConfig) -> np.ndarray:
    """uint8 -> structured PAR_DTYPE ``[n, block_out]``; ValueError if reserved bytes are set."""
    b = np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1, cfg.par_block_bytes))
    rec = b.view(PAR_DTYPE).reshape(-1, cfg.block_out)
    if rec["reserved"].any():
        blk, ch = (int(i) for i in np.argwhere(rec["reserved"].any(axis=-1))[0])
        raise ValueError(f"par element {blk}, channel {ch} has reserved bytes set")
    return rec


# ---------------------------------------------------------------------------- whole tensors

def _shaped(blocks, tail, what) -> np.ndarray:
    v = np.asarray(blocks)
    if v.ndim == len(tail):
        v = v[None]
    if v.shape[1:] != tail:
        raise ValueError(f"{what} blocks must have shape [n, {tail[0]}, {tail[1]}], got {v.shape}")
    return v


def weight_blocks(w, cfg: HwConfig) -> np.ndarray:
    """Row view ``[O, K]`` of a weight tensor -> blocks ``[ceil(O/bo), ceil(K/bi), bo, bi]``,
    zero-padded; block ``(i, j)`` holds rows ``i*bo..`` and columns ``j*bi..``."""
    w = np.asarray(w)
    w = w.reshape(w.shape[0], -1)
    bo, bi = cfg.block_out, cfg.block_in
    no, nk = -(-w.shape[0] // bo), -(-w.shape[1] // bi)
    padded = np.zeros((no * bo, nk * bi), dtype=np.int8)
    padded[:w.shape[0], :w.shape[1]] = w
    return padded.reshape(no, bo, nk, bi).transpose(0, 2, 1, 3)


def wgt_image_from_2bit(packed, shape, cfg: HwConfig) -> np.ndarray:
    """The DRAM weight image (uint8 ``[no, nk, wgt_block_bytes]``, block (i, j) at element
    ``i * nk + j``) from ``packing.pack(w, "2bit")``, by byte moves only: the foundation's
    2-bit rows are re-cut into block rows (bi/4 bytes each), zero rows/columns padded."""
    # imported here: tvm_ternary.quant pulls in torch, which the simulator does not need
    from tvm_ternary.quant import packing

    if cfg.wgt_bits != 2:
        raise ValueError(f"HwConfig {cfg.name!r} has {cfg.wgt_bits}-bit weights, not 2-bit")
    rows, row_bytes = packing.packed_shape(shape, "2bit")
    k = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
    packed = np.asarray(packed, dtype=np.uint8).reshape(rows, row_bytes)
    bo, bi = cfg.block_out, cfg.block_in
    no, nk = -(-rows // bo), -(-k // bi)
    # packing's own row padding already encodes weight 0 (code 1); new padding does too
    out = np.full((no * bo, nk * bi // 4), np.uint8(0x55), dtype=np.uint8)
    out[:rows, :row_bytes] = packed
    return out.reshape(no, bo, nk, bi // 4).transpose(0, 2, 1, 3).reshape(no, nk, -1)
