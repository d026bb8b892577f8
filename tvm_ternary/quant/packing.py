"""Packed ternary weight formats and block zero bitmaps.

Every format views a tensor as rows ``[out, prod(rest)]`` (a 1-D tensor is one row) and
pads each row on its own, so a kernel can address row ``r`` without knowing the others.

- ``2bit``: code ``w + 1`` in {0, 1, 2}, 4 codes per byte, least significant first.
  Packed: uint8 ``[rows, ceil(K/4)]``.
- ``bitplane``: nonzero mask and sign mask (bit set = negative) as little-endian uint64
  words; bit ``i`` of word ``j`` is column ``64*j + i``. Packed: uint64
  ``[rows, 2, ceil(K/64)]``, plane 0 = nonzero, plane 1 = sign.
- ``base3``: byte ``sum((w_i + 1) * 3**i)`` over 5 trits (1.6 bits per weight).
  Packed: uint8 ``[rows, ceil(K/5)]``.

Padding always encodes weight 0. ``unpack`` rejects a buffer whose padding encodes
anything else: such a buffer was packed for another shape or is corrupt, and a kernel
that sums over the padded width would silently read those weights.
"""

import math

import numpy as np

from ..errors import PackError

FORMATS = ("2bit", "bitplane", "base3")

_TRITS_PER_UNIT = {"2bit": 4, "bitplane": 64, "base3": 5}
_BITS_PER_UNIT = {"2bit": 8, "bitplane": 2 * 64, "base3": 8}  # bitplane: one word per plane
_WORD = np.dtype("<u8")
_SHIFTS_2BIT = np.arange(0, 8, 2, dtype=np.uint8)
_POW3 = 3 ** np.arange(5, dtype=np.uint16)
_MAX_BASE3_BYTE = 3**5 - 1


def pack(w_t, fmt):
    """Pack a ternary tensor (numpy array or torch tensor, values in {-1, 0, 1})."""
    _check_format(fmt)
    w = _validated_trits(w_t)
    rows, k = _row_view(w.shape)
    padded = np.zeros((rows, _units(k, fmt) * _TRITS_PER_UNIT[fmt]), dtype=np.int8)
    padded[:, :k] = w.reshape(rows, k)
    return _PACKERS[fmt](padded)


def unpack(packed, fmt, shape):
    """Inverse of :func:`pack`: int8 tensor of ``shape`` with values in {-1, 0, 1}.

    ``packed`` has the exact shape :func:`packed_shape` gives, or is the same data
    flattened to 1-D (as read from a file). A ``bitplane`` buffer may also be given as its
    little-endian bytes (uint8).
    """
    _check_format(fmt)
    shape = tuple(int(d) for d in shape)
    rows, k = _row_view(shape)
    buf = _checked_buffer(packed, fmt, shape)
    trits = _UNPACKERS[fmt](buf)
    _check_padding(trits, k, fmt)
    return np.ascontiguousarray(trits[:, :k]).reshape(shape)


def packed_shape(shape, fmt):
    """Shape of the array :func:`pack` returns for a tensor of ``shape``."""
    _check_format(fmt)
    rows, k = _row_view(tuple(int(d) for d in shape))
    units = _units(k, fmt)
    return (rows, 2, units) if fmt == "bitplane" else (rows, units)


def packed_bits(shape, fmt):
    """Total bits a packed tensor of ``shape`` occupies, row padding included."""
    _check_format(fmt)
    rows, k = _row_view(tuple(int(d) for d in shape))
    return rows * _units(k, fmt) * _BITS_PER_UNIT[fmt]


def zero_block_bitmap(w_t, block):
    """Bool ``[ceil(O/bo), ceil(K/bi)]``: True where a block of the row view is all zero.

    The row view ``[O, K]`` is padded with zeros to whole blocks, so an edge block is
    zero when its real part is.
    """
    bo, bi = _checked_block(block)
    w = _validated_trits(w_t)
    rows, k = _row_view(w.shape)
    nblk_o, nblk_k = -(-rows // bo), -(-k // bi)
    nonzero = np.zeros((nblk_o * bo, nblk_k * bi), dtype=bool)
    nonzero[:rows, :k] = w.reshape(rows, k) != 0
    return ~nonzero.reshape(nblk_o, bo, nblk_k, bi).any(axis=(1, 3))


def block_sparsity(bitmap):
    """Fraction of blocks that are all zero (0.0 for an empty bitmap)."""
    bitmap = np.asarray(bitmap, dtype=bool)
    return float(bitmap.mean()) if bitmap.size else 0.0


# --- validation -------------------------------------------------------------------------


def _check_format(fmt):
    if fmt not in FORMATS:
        raise PackError(f"unknown packed format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def _to_numpy(x):
    if hasattr(x, "detach"):  # a torch tensor; duck-typed so this module never imports torch
        x = x.detach().cpu()
        try:
            return x.numpy()
        except TypeError:  # bfloat16 and friends have no numpy dtype
            return x.float().numpy()
    return np.asarray(x)


def _validated_trits(w_t):
    arr = _to_numpy(w_t)
    if arr.ndim == 0:
        raise PackError("cannot pack a 0-d tensor; give it at least one dimension")
    if arr.dtype.kind not in "biuf":
        raise PackError(f"ternary weights must be numeric, got dtype {arr.dtype}")
    ok = (arr == -1) | (arr == 0) | (arr == 1)
    if not ok.all():
        flat = int(np.argmax(~ok.reshape(-1)))
        index = tuple(int(i) for i in np.unravel_index(flat, arr.shape))
        value = arr.reshape(-1)[flat].item()
        raise PackError(f"ternary weight at index {index} is {value!r}; values must be -1, 0 or 1")
    return arr.astype(np.int8)


def _row_view(shape):
    if len(shape) == 0:
        raise PackError("cannot pack a 0-d tensor; give it at least one dimension")
    if any(d < 0 for d in shape):
        raise PackError(f"shape {tuple(shape)} has a negative dimension")
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def _units(k, fmt):
    return -(-k // _TRITS_PER_UNIT[fmt])


def _checked_block(block):
    try:
        bo, bi = (int(b) for b in block)
    except (TypeError, ValueError):
        raise PackError(f"block must be a pair (rows, cols) of positive ints, got {block!r}") from None
    if bo < 1 or bi < 1:
        raise PackError(f"block must be a pair (rows, cols) of positive ints, got {block!r}")
    return bo, bi


def _checked_buffer(packed, fmt, shape):
    arr = _to_numpy(packed)
    expected = packed_shape(shape, fmt)
    if fmt != "bitplane":
        if arr.dtype != np.uint8:
            raise PackError(f"{fmt} buffer must be uint8, got dtype {arr.dtype}")
        return _reshaped(arr, expected, fmt, shape, "bytes")
    if arr.dtype == np.uint8:
        as_bytes = expected[:-1] + (expected[-1] * _WORD.itemsize,)
        return _reshaped(arr, as_bytes, fmt, shape, "bytes").view(_WORD)
    if arr.dtype.kind != "u" or arr.dtype.itemsize != _WORD.itemsize:
        raise PackError(f"bitplane buffer must be uint64 words (or their uint8 bytes), got dtype {arr.dtype}")
    return _reshaped(arr.astype(_WORD, copy=False), expected, fmt, shape, "uint64 words")


def _reshaped(arr, expected, fmt, shape, unit):
    if arr.shape == expected or (arr.ndim == 1 and arr.size == math.prod(expected)):
        return np.ascontiguousarray(arr).reshape(expected)
    raise PackError(f"{fmt} buffer for shape {shape} must be {expected} {unit}, got {arr.shape}")


def _check_padding(trits, k, fmt):
    padding = trits[:, k:]
    if padding.any():
        row, col = (int(i) for i in np.argwhere(padding)[0])
        raise PackError(
            f"{fmt} buffer row {row} encodes weight {int(padding[row, col])} in padding column "
            f"{k + col} (the shape has {k} columns per row); padding must encode 0"
        )


def _first(mask):
    return tuple(int(i) for i in np.argwhere(mask)[0])


# --- formats ----------------------------------------------------------------------------


def _pack_2bit(trits):
    codes = (trits + 1).astype(np.uint8).reshape(trits.shape[0], -1, 4)
    return np.bitwise_or.reduce(codes << _SHIFTS_2BIT, axis=-1).astype(np.uint8)


def _unpack_2bit(buf):
    codes = ((buf[..., None] >> _SHIFTS_2BIT) & 3).reshape(buf.shape[0], -1)
    if (codes == 3).any():
        row, col = _first(codes == 3)
        raise PackError(f"2bit buffer has invalid code 3 at row {row}, column {col} (byte {col // 4})")
    return codes.astype(np.int8) - 1


def _pack_bitplane(trits):
    nonzero = np.packbits(trits != 0, axis=-1, bitorder="little")
    sign = np.packbits(trits < 0, axis=-1, bitorder="little")
    return np.stack([nonzero, sign], axis=1).view(_WORD)


def _unpack_bitplane(buf):
    bits = np.unpackbits(buf.view(np.uint8), axis=-1, bitorder="little").astype(bool)
    nonzero, sign = bits[:, 0], bits[:, 1]
    orphan = sign & ~nonzero
    if orphan.any():
        row, col = _first(orphan)
        raise PackError(
            f"bitplane buffer has a sign bit without a nonzero bit at row {row}, column {col} "
            f"(word {col // 64}, bit {col % 64})"
        )
    return nonzero.astype(np.int8) - 2 * sign.astype(np.int8)


def _pack_base3(trits):
    codes = (trits + 1).astype(np.uint16).reshape(trits.shape[0], -1, 5)
    return (codes * _POW3).sum(axis=-1).astype(np.uint8)


def _unpack_base3(buf):
    if (buf > _MAX_BASE3_BYTE).any():
        row, col = _first(buf > _MAX_BASE3_BYTE)
        raise PackError(
            f"base3 buffer has invalid byte {int(buf[row, col])} at row {row}, byte {col} "
            f"(at most {_MAX_BASE3_BYTE})"
        )
    codes = (buf[..., None] // _POW3) % 3
    return codes.reshape(buf.shape[0], -1).astype(np.int8) - 1


_PACKERS = {"2bit": _pack_2bit, "bitplane": _pack_bitplane, "base3": _pack_base3}
_UNPACKERS = {"2bit": _unpack_2bit, "bitplane": _unpack_bitplane, "base3": _unpack_base3}
