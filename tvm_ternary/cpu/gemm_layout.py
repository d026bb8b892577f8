"""Weight layout of the register-tiled GEMM: four rows interleaved, 2 bits per trit.

``row4_2bit``: rows are taken four at a time; byte ``i`` of block ``(q, kb)`` holds the
codes ``u = w + 1`` of rows ``4q + r`` (bits ``2r..2r+1``, r = 0..3) at
``k = 32 kb + i``. One 32-byte load therefore serves four rows, and shifting it right by
``2r`` and masking gives row ``r``'s codes for 32 *contiguous* k: K only needs padding to
32 (not 128 as ``layout.blocked_2bit``), which matters for convolutions whose reduction
is ``kh * kw * channels``. Padding rows and columns hold code 1 (weight 0).
"""

from __future__ import annotations

import numpy as np

from tvm_ternary.errors import PackError

BLOCK_K = 32     # trits of one row per 32-byte block
BLOCK_ROWS = 4   # rows sharing one block (2 bits each in a byte)


def round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def row4_2bit(w_t: np.ndarray, rows_multiple: int = BLOCK_ROWS, k_multiple: int = BLOCK_K,
              what: str = "weight") -> np.ndarray:
    """``w_t [G, N, K]`` in {-1, 0, 1} -> uint8 ``[G, Np/4, Kp/32, 32]``.

    ``Np`` is ``N`` rounded up to ``rows_multiple`` (a multiple of 4), ``Kp`` is ``K``
    rounded up to ``k_multiple`` (a multiple of 32). ``what`` names the tensor in errors.
    """
    w_t = np.asarray(w_t)
    if w_t.ndim != 3 or not np.isin(w_t, (-1, 0, 1)).all():
        raise PackError(f"row4_2bit: {what} must be a 3-D [groups, rows, k] ternary array, "
                        f"got shape {w_t.shape} with values {np.unique(w_t)[:8]}")
    if rows_multiple % BLOCK_ROWS or k_multiple % BLOCK_K:
        raise PackError(f"row4_2bit: rows_multiple {rows_multiple} / k_multiple {k_multiple} "
                        f"must be multiples of {BLOCK_ROWS} / {BLOCK_K}")
    groups, n, k = w_t.shape
    n_pad, k_pad = round_up(n, rows_multiple), round_up(k, k_multiple)
    codes = np.ones((groups, n_pad, k_pad), np.uint8)
    codes[:, :n, :k] = (w_t + 1).astype(np.uint8)
    codes = codes.reshape(groups, n_pad // BLOCK_ROWS, BLOCK_ROWS, k_pad // BLOCK_K, BLOCK_K)
    packed = codes[:, :, 0] | (codes[:, :, 1] << 2) | (codes[:, :, 2] << 4) | (codes[:, :, 3] << 6)
    return np.ascontiguousarray(packed)


def unpack_row4(packed: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of ``row4_2bit`` (tests and debugging): ``[G, N, K]`` int8."""
    groups, n, k = shape
    p = np.asarray(packed, np.uint8)
    codes = np.stack([(p >> (2 * r)) & 3 for r in range(BLOCK_ROWS)], axis=2)  # [g, q, r, kb, i]
    codes = codes.reshape(groups, p.shape[1] * BLOCK_ROWS, -1)
    return codes[:, :n, :k].astype(np.int8) - 1
