"""``tt.debug.compare(cm, qm, x)``: where does a compiled model leave the reference?

The compiled model's output is compared with the numpy integer reference of the frozen
model. If they differ, each frozen layer is compiled on its own (same target, same
pipeline) and fed the exact input the reference gave it, in execution order: the first
layer whose output differs is the one reported, with its first differing element. If
every layer agrees alone, the difference is in the host ops between them (reported as
layer ``"<host ops>"`` at the model output).

Integer tensors are compared with ``==``; float tensors (dequantized outputs, host ops)
within ``rtol`` / ``atol`` (TVM's and torch's float ops differ by ulps).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn


@dataclass(frozen=True)
class Mismatch:
    layer: str              # frozen layer name, or "<host ops>"
    index: tuple            # first differing element
    got: float
    expected: float
    n_different: int
    n_total: int

    def __str__(self) -> str:
        return (f"layer {self.layer!r}: first difference at {list(self.index)}: compiled "
                f"{self.got}, reference {self.expected} ({self.n_different} of {self.n_total} "
                "elements differ)")


def first_difference(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float):
    """(index, got, expected, count) of the first element that differs, or None."""
    if got.shape != expected.shape:
        raise ValueError(f"shapes differ: compiled {got.shape}, reference {expected.shape}")
    if np.issubdtype(expected.dtype, np.integer):
        bad = got != expected
    else:
        bad = ~np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return index, got[index].item(), expected[index].item(), int(bad.sum())


class _LayerTrace(fx.Interpreter):
    """Runs a frozen graph with the numpy reference, recording each frozen layer's
    (name, layer, input, output) in execution order."""

    def __init__(self, gm):
        super().__init__(gm)
        self.trace: list = []

    def call_module(self, target, args, kwargs):
        from tvm_ternary.quant.frozen import FrozenTernaryLayer

        module = self.fetch_attr(target)
        if not isinstance(module, FrozenTernaryLayer):
            return super().call_module(target, args, kwargs)
        xs = tuple(a.detach() for a in args)  # (x,) or, for a residual epilogue, (x, r)
        y = torch.from_numpy(np.ascontiguousarray(module.forward_reference(*(a.numpy() for a in xs))))
        self.trace.append((module.layer_name, module, xs, y))
        return y


class _SingleLayer(nn.Module):
    is_frozen = True

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, *xs):
        return self.layer(*xs)


def _reference_model(cm, qm):
    if getattr(qm, "is_frozen", False):
        return qm
    if cm.frozen is not None:
        return cm.frozen
    from tvm_ternary.quant import freeze

    return freeze(qm)


@torch.no_grad()
def compare(cm, qm, *inputs: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> Mismatch | None:
    """None if the compiled model ``cm`` agrees with the reference of ``qm`` (frozen, or
    the model ``cm`` was compiled from) on ``inputs``; else the first ``Mismatch``."""
    from tvm_ternary.pipeline import compile as compile_model

    frozen = _reference_model(cm, qm)
    tracer = _LayerTrace(frozen.graph_module)
    expected = tracer.run(*inputs)
    found = first_difference(cm(*inputs).numpy(), expected.numpy(), rtol, atol)
    if found is None:
        return None
    for name, layer, xs, y in tracer.trace:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            single = compile_model(_SingleLayer(layer), xs, target=cm.target)
        diff = first_difference(single(*xs).numpy(), y.numpy(), rtol, atol)
        if diff is not None:
            return Mismatch(name, diff[0], diff[1], diff[2], diff[3], y.numel())
    index, got, want, count = found
    return Mismatch("<host ops>", index, got, want, count, expected.numel())
