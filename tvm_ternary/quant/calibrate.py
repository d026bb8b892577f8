"""``calibrate(qm, batches)``: fix activation scales and thresholds from sample data."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .act import ActQuantizer


def act_quantizers(model: nn.Module) -> list[ActQuantizer]:
    return [m for m in model.modules() if isinstance(m, ActQuantizer)]


@torch.no_grad()
def calibrate(qm: nn.Module, batches: Iterable, force: bool = False) -> nn.Module:
    """Run ``batches`` (tensors, or tuples whose first item is the input) through ``qm`` in
    eval mode and set the scales / thresholds of every activation quantizer that has none
    yet; ``force=True`` recalibrates all of them.

    Quantizers set during training (a moving-average int8 scale, thresholds fixed or learned
    by the method) are kept by default: the integer model must be the model that was
    trained. Observing quantizers pass their input through unquantized, so each layer is
    calibrated on float activations, as PyTorch's observers do. Returns ``qm``.
    """
    quantizers = [q for q in act_quantizers(qm) if force or not q.calibrated]
    was_training = qm.training
    qm.eval()
    for q in quantizers:
        q.begin_observe()
    seen = 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        qm(x)
        seen += 1
    if not seen:
        raise ValueError("calibrate() got no batches")
    for q in quantizers:
        q.end_observe()
    qm.train(was_training)
    return qm
