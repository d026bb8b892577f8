"""Weight layout of the register-tiled GEMM: output channels in vector lanes, 2 bits a trit.

``lanes_2bit`` with ``L`` lanes: channels are taken ``L`` at a time (one int32 lane each
in the accumulator), the reduction 16 at a time. Byte ``4 l + t`` of block ``(c, q)``
holds, in bits ``2j..2j+1`` (j = 0..3), the code ``u = w + 1`` of channel ``L c + l`` at
``k = 16 q + 4 j + t``. Shifting the ``4 L``-byte block right by ``2j``, masking and
subtracting 1 gives the int8 operand of ``vpdpbusd`` / ``pmaddubsw`` for reduction step
``4 q + j``: lane ``l`` holds channel ``l``'s four consecutive weights, which meet four
consecutive activation bytes broadcast to every lane. So the accumulator lanes are
output channels (no horizontal sums) and K pads only to 16. Padding holds code 1 (w = 0).
"""

from __future__ import annotations

import numpy as np

from tvm_ternary.errors import PackError

STEP_K = 4                   # reduction values per lane per multiply (4 bytes -> one int32 lane)
BLOCK_K = 4 * STEP_K         # reduction values per packed block (4 codes per byte)


def round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def lanes_2bit(w_t: np.ndarray, lanes: int, rows_multiple: int | None = None,
               what: str = "weight", k_padded: int | None = None) -> np.ndarray:
    """``w_t [G, N, K]`` in {-1, 0, 1} -> uint8 ``[G, Np / lanes, Kp / 16, 4 * lanes]``.

    ``Np`` is ``N`` rounded up to ``rows_multiple`` (a multiple of ``lanes``; default
    ``lanes``), ``Kp`` is ``k_padded`` (default: ``K`` rounded up to 16). ``what`` names
    the tensor in errors.
    """
    w_t = np.asarray(w_t)
    if w_t.ndim != 3 or not np.isin(w_t, (-1, 0, 1)).all():
        raise PackError(f"lanes_2bit: {what} must be a 3-D [groups, rows, k] ternary array, "
                        f"got shape {w_t.shape} with values {np.unique(w_t)[:8]}")
    rows_multiple = rows_multiple or lanes
    if lanes < 1 or rows_multiple % lanes:
        raise PackError(f"lanes_2bit: rows_multiple {rows_multiple} is not a multiple of lanes {lanes}")
    groups, n, k = w_t.shape
    n_pad, k_pad = round_up(n, rows_multiple), k_padded or round_up(k, BLOCK_K)
    if k_pad % BLOCK_K or k_pad < k:
        raise PackError(f"lanes_2bit: k_padded {k_pad} is not a multiple of {BLOCK_K} covering K = {k}")
    codes = np.ones((groups, n_pad, k_pad), np.uint8)
    codes[:, :n, :k] = (w_t + 1).astype(np.uint8)
    # [g, c, l, q, j, t] -> [g, c, q, j, l, t]
    codes = codes.reshape(groups, n_pad // lanes, lanes, k_pad // BLOCK_K, 4, STEP_K).transpose(0, 1, 3, 4, 2, 5)
    packed = codes[:, :, :, 0] | (codes[:, :, :, 1] << 2) | (codes[:, :, :, 2] << 4) | (codes[:, :, :, 3] << 6)
    return np.ascontiguousarray(packed.reshape(groups, n_pad // lanes, k_pad // BLOCK_K, lanes * STEP_K))


def pad_channels(v: np.ndarray, rows_padded: int) -> np.ndarray:
    """Per-channel int64 constants padded per group to the kernel's tile of channels."""
    v = np.asarray(v, np.int64)
    out = np.zeros(v.shape[:-1] + (rows_padded,), np.int64)
    out[..., :v.shape[-1]] = v
    return out.reshape(-1)


def unpack_lanes(packed: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of ``lanes_2bit`` (tests and debugging): ``[G, N, K]`` int8."""
    groups, n, k = shape
    p = np.asarray(packed, np.uint8)
    g, c, q, vb = p.shape
    lanes = vb // STEP_K
    codes = np.stack([(p >> (2 * j)) & 3 for j in range(4)], axis=3)      # [g, c, q, j, l*t]
    codes = codes.reshape(g, c, q, 4, lanes, STEP_K).transpose(0, 1, 4, 2, 3, 5)  # [g, c, l, q, j, t]
    codes = codes.reshape(g, c * lanes, q * BLOCK_K)
    return codes[:, :n, :k].astype(np.int8) - 1
