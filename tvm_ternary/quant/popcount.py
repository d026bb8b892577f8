"""Ternary x ternary inner products on bit planes: the reference for popcount kernels.

Two encodings of a ternary vector, both packed 64 trits per uint64 word:

* sign-magnitude bit planes (``pack(v, "bitplane")``: nonzero mask ``nz``, sign mask
  ``s``). For ``m = nz_x & nz_w`` the product is ``+1`` where the signs agree and ``-1``
  where they differ, so ``x . w = popcount(m) - 2 * popcount(m & (s_x ^ s_w))``: **two
  popcounts per word**.
* the generic 2-bit code ``u = v + 1`` in {0, 1, 2} (bits ``u0``, ``u1``), as a 2-bit x
  2-bit bit-serial product computes it:
  ``x . w = sum_ij 2**(i+j) popcount(xu_i & wu_j) - sum(xu) - sum(wu) + K``: **four
  popcounts per word** for the cross terms, plus the operand sums.

That 2x is the cost FATNN halves (our reading; see ``methods/fatnn.py``): it needs both
operands to be three equally spaced levels with zero as a level, which holds for ternary
weights and, after the offset fold in ``freeze``, for half-range {0, 1, 2} activations.
Each function returns the dot products and how many word popcounts it used.
"""

from __future__ import annotations

import numpy as np

from .packing import pack


def _planes(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    planes = pack(v, "bitplane")  # [rows, 2, words]
    return planes[:, 0], planes[:, 1]


def dot_sign_magnitude(x, w) -> tuple[np.ndarray, int]:
    """``x [B, K]`` . ``w [N, K]`` (ternary) with two popcounts per word pair."""
    nz_x, s_x = _planes(np.asarray(x))
    nz_w, s_w = _planes(np.asarray(w))
    m = nz_x[:, None, :] & nz_w[None, :, :]
    neg = m & (s_x[:, None, :] ^ s_w[None, :, :])
    acc = np.bitwise_count(m).sum(-1).astype(np.int64) - 2 * np.bitwise_count(neg).sum(-1).astype(np.int64)
    return acc, 2 * m.size


def _offset_bits(v: np.ndarray) -> list[np.ndarray]:
    """Bit planes of ``u = v + 1`` in {0, 1, 2}, packed 64 per word (via the bitplane packer)."""
    u = v.astype(np.int64) + 1
    return [_planes(((u >> i) & 1).astype(np.int8))[0] for i in (0, 1)]


def dot_generic_2bit(x, w) -> tuple[np.ndarray, int]:
    """The same dot products as a generic 2-bit x 2-bit bit-serial product."""
    x, w = np.asarray(x), np.asarray(w)
    xb, wb = _offset_bits(x), _offset_bits(w)
    acc = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    words = 0
    for i in (0, 1):
        for j in (0, 1):
            cross = xb[i][:, None, :] & wb[j][None, :, :]
            acc += (1 << (i + j)) * np.bitwise_count(cross).sum(-1).astype(np.int64)
            words += cross.size
    sum_x = (x.astype(np.int64) + 1).sum(-1)[:, None]
    sum_w = (w.astype(np.int64) + 1).sum(-1)[None, :]
    return acc - sum_x - sum_w + x.shape[-1], words
