"""Kernel weight layout: an explicit transform of ternary weights (not a packed format).

``blocked_2bit``: per output row, K is padded to a multiple of 128 and cut into groups of
128 trits stored in 32 bytes. Byte ``i`` of group ``g`` holds the codes ``u = w + 1`` of
``k = 128 g + 32 j + i`` in bits ``2j..2j+1`` (j = 0..3), so shifting the 32-byte group
right by ``2j`` and masking gives the codes of 32 *contiguous* activations: one vector
load of ``x`` per ``pmaddubsw``. Rows are padded to a multiple of ``rows`` with zero
weights (code 1).
"""

from __future__ import annotations

import numpy as np

GROUP = 128  # trits per 32-byte group


def padded_k(k: int) -> int:
    return (k + GROUP - 1) // GROUP * GROUP


def blocked_2bit(w_t: np.ndarray, rows: int = 1) -> np.ndarray:
    """``w_t [N, K]`` in {-1, 0, 1} -> uint8 ``[N padded to rows, padded_k(K) / 4]``."""
    w_t = np.asarray(w_t)
    if w_t.ndim != 2 or not np.isin(w_t, (-1, 0, 1)).all():
        raise ValueError("blocked_2bit needs a 2-D ternary weight")
    n, k = w_t.shape
    n_pad = (n + rows - 1) // rows * rows
    codes = np.ones((n_pad, padded_k(k)), np.uint8)
    codes[:n, :k] = (w_t + 1).astype(np.uint8)
    codes = codes.reshape(n_pad, -1, 4, 32)  # [row, group, j, i]
    packed = codes[:, :, 0] | (codes[:, :, 1] << 2) | (codes[:, :, 2] << 4) | (codes[:, :, 3] << 6)
    return packed.reshape(n_pad, -1)


def unblock_2bit(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of ``blocked_2bit`` (tests and debugging)."""
    n, k = shape
    p = np.asarray(packed, np.uint8).reshape(packed.shape[0], -1, 32)
    codes = np.stack([(p >> (2 * j)) & 3 for j in range(4)], axis=2)  # [row, group, j, i]
    return codes.reshape(packed.shape[0], -1)[:n, :k].astype(np.int8) - 1
