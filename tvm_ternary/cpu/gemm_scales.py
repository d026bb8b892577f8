"""The tiled GEMM's per-channel constants: multipliers and the activation-bias correction.

The kernel computes ``z = mult acc + mult_p acc_p + corr + bias`` from the biased sums
``acc = sum w xu`` and ``acc_p = sum [w = +1] xu`` (``xu = x + 128``). The reference's
``Mp acc_p - Mn acc_n`` with ``acc_n = acc_p - acc`` is ``(Mp - Mn) acc_p + Mn acc``, so
``mult = Mn``, ``mult_p = Mp - Mn`` (zero for a symmetric layer, whose kernel never reads
it), and ``corr = -128 ((Mp - Mn) count_p + Mn sum w)`` removes the bias per channel.
"""

from __future__ import annotations

import numpy as np

from .gemm_kernel import X_BIAS
from .gemm_layout import pad_channels


def scale_pair(mult) -> tuple[np.ndarray, np.ndarray]:
    """``(Mp, Mn)`` as int64 from ``M [N]`` or ``[Mp, Mn]`` ``[2, N]``."""
    mult = np.asarray(mult, np.int64)
    return (mult, mult) if mult.ndim == 1 else (mult[0], mult[1])


def scale_operands(w_g: np.ndarray, mult_p, mult_n, rows_padded: int) -> dict:
    """``mult``, ``mult_p``, ``corr`` for weights ``w_g [groups, rows, k]`` (any trailing
    layout: only per-channel sums are taken), padded per group to ``rows_padded``."""
    groups, rows = w_g.shape[:2]
    w = w_g.reshape(groups, rows, -1).astype(np.int64)
    mn, dp = mult_n.reshape(groups, rows), (mult_p - mult_n).reshape(groups, rows)
    corr = -X_BIAS * (dp * (w == 1).sum(axis=2) + mn * w.sum(axis=2))
    return {"mult": pad_channels(mn, rows_padded), "mult_p": pad_channels(dp, rows_padded),
            "corr": pad_channels(corr, rows_padded)}
