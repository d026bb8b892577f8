"""The things each workload runs: ours (the ternary model compiled by ``tt.compile``, whatever
kernels it selects) and the peers measured in the same run (torch fp32, torch int8 dynamic
quantization, ggml's ternary types). Each builder returns a no-argument callable."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from . import ggml_peer

# quantize_dynamic replaces Linear layers only: below this share of the MACs in Linear
# layers (a CNN), its "int8" row would time a mostly-fp32 model, so none is reported.
INT8_DYNAMIC_MIN_LINEAR_SHARE = 0.5


def torch_fp32(module: nn.Module, x: torch.Tensor):
    def run():
        with torch.no_grad():
            return module(x)
    return run


def torch_int8_dynamic(module: nn.Module, x: torch.Tensor, linear_mac_share: float):
    """``torch.ao.quantization.quantize_dynamic`` (qint8 Linear), or None for a CNN."""
    if linear_mac_share < INT8_DYNAMIC_MIN_LINEAR_SHARE:
        return None
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), {nn.Linear}, dtype=torch.qint8)
    return torch_fp32(quantized, x)


def ternarize_frozen(module: nn.Module, x: torch.Tensor, method: str = "twn"):
    """Our model: ternarized copy of ``module`` (int8 activations), calibrated on ``x``,
    and its frozen integer model. Returns (ternary module, frozen module)."""
    import tvm_ternary as tt

    qm = tt.quant.ternarize(copy.deepcopy(module), method)
    qm.eval()
    tt.quant.calibrate(qm, [x])
    return qm, tt.quant.freeze(qm)


def ours(frozen: nn.Module, x: torch.Tensor):
    """``tt.compile(frozen, target="cpu")``: returns (compiled model, callable)."""
    import tvm_ternary as tt

    cm = tt.compile(frozen, (x,), target="cpu")
    return cm, (lambda: cm(x))


def ternary_linear_weight(qm: nn.Module) -> np.ndarray | None:
    """The float weight ``w_t * alpha`` of the single ternary Linear of ``qm`` (what ggml
    quantizes, so it runs the same ternary layer as ours), or None if there is not one."""
    from tvm_ternary.quant.layers import TernaryLinear

    layers = [m for m in qm.modules() if isinstance(m, TernaryLinear)]
    if len(layers) != 1:
        return None
    w_t, alpha_p, alpha_n = layers[0].ternarize_weight()
    w = w_t.float()
    return torch.where(w > 0, w * alpha_p[:, None], w * alpha_n[:, None]).numpy()


def ggml_linear(weight: np.ndarray, x: torch.Tensor, type_name: str, threads: int):
    """ggml ``mul_mat`` of ``weight`` quantized to ``type_name``; None where ggml-python is
    not installed or the shape does not fit its 256-wide super-blocks."""
    if not ggml_peer.available() or not ggml_peer.supports(weight.shape[1]):
        return None
    layer = ggml_peer.GgmlLinear(weight, type_name, x.shape[0], threads)
    layer.set_input(x.numpy())
    return layer.run
