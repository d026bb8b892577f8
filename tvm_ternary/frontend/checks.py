"""Checks on a torch.export graph before and during its import, so bad input fails with
the op or layer at fault named (never an assertion from inside TVM's importer)."""

from __future__ import annotations

import re

import numpy as np

from tvm_ternary.errors import PackError, ShapeMismatchError, UnsupportedOpError

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def layer_name(node) -> str:
    """The torch module path of the layer that produced ``node`` (``layers.0.conv1``).

    A frozen model wraps its fx graph as ``graph_module``; that prefix is dropped so the
    name is the one the user's model has.
    """
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return node.name
    path, cls = list(stack.values())[-1]
    path = path.removeprefix("graph_module")
    return path.removeprefix(".") or f"top level of {str(cls).rsplit('.', 1)[-1]}"


def source_location(node) -> str:
    """``file:line in function: code`` of the innermost frame of the node's stack trace
    (the line of the user's model that called the op)."""
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    if not frames:
        return "unknown source location"
    file, line, func, code = frames[-1]
    return f"{file}:{line} in {func}: {code.strip()}"


def check_supported(graph, convert_map: dict) -> None:
    """Every ``call_function`` node has a converter; else name each missing op, its layer
    and the line of the model that called it."""
    missing = {}
    for node in graph.nodes:
        if node.op == "call_function" and node.target.__name__ not in convert_map:
            missing.setdefault(node.target.__name__, node)
    if missing:
        lines = [f"  {op} (layer {layer_name(n)!r}, {source_location(n)})" for op, n in missing.items()]
        raise UnsupportedOpError(
            "no Relax converter for these torch ops:\n" + "\n".join(lines)
            + "\nRewrite these lines with ops TVM's torch frontend converts, or run them outside "
            "the compiled model (tt.compile takes no custom converters).")


def _dims(expr) -> list[int]:
    return [int(d) for d in expr.ty.shape]


def _expect(layer: str, field: str, got: list[int], want: list[int]) -> None:
    if got != want:
        raise ShapeMismatchError(f"layer {layer!r}: {field} has shape {got}, expected {want} "
                                 "(inconsistent with the layer's packed weights)")


def check_layer_shapes(op: str, layer: str, tensors: list, scalars: list) -> None:
    """Shapes of a ternary op's tensors agree with its weights (``w [N, K]`` or
    ``w [N, C/groups, kh, kw]``) and its epilogue parameters with the channel count."""
    if op == "tlinear":
        x, w, bias, mult = (_dims(t) for t in tensors)
        n, k = w
        _expect(layer, "input (last dim)", x[-1:], [k])
    elif op == "tconv2d":
        x, w, bias, mult = (_dims(t) for t in tensors)
        n, groups = w[0], scalars[6]
        if len(x) != 4:
            raise ShapeMismatchError(f"layer {layer!r}: conv2d input must be NCHW, got shape {x}")
        if groups < 1 or n % groups:
            raise ShapeMismatchError(f"layer {layer!r}: {n} output channels do not split into "
                                     f"{groups} groups")
        _expect(layer, "input channels", [x[1]], [w[1] * groups])
    elif op in ("trequantize", "tthreshold", "tdequantize", "trequantize_residual"):
        z, *params = (_dims(t) for t in tensors)
        axis = scalars[-1]
        names = {"trequantize": ["shift"], "tthreshold": ["t_lo", "t_hi"],
                 "tdequantize": ["scale", "bias"],
                 "trequantize_residual": ["shift", "r", "mult_r"]}[op]
        for name, p in zip(names, params):
            _expect(layer, name, p, z if name == "r" else [z[axis]])
        return
    else:
        return
    _expect(layer, "bias", bias, [n])
    _expect(layer, "mult", mult, [2, n])


def _weight_tensors(ep):
    """``(node, weight tensor)`` of each ``tlinear`` / ``tconv2d`` in ``ep`` whose weight is
    a parameter, buffer or constant of the exported program."""
    sig = ep.graph_signature
    sources = {**sig.inputs_to_parameters, **sig.inputs_to_buffers,
               **sig.inputs_to_lifted_tensor_constants}
    values = {**ep.state_dict, **ep.constants}
    for node in ep.graph.nodes:
        if node.op == "call_function" and node.target.__name__ in ("tlinear.default", "tconv2d.default"):
            tensor = values.get(sources.get(node.args[1].name))
            if tensor is not None:
                yield node, tensor


def check_ternary_weights(ep) -> None:
    """Constant weights hold trits: a corrupted value would otherwise surface from a kernel's
    weight packing inside a TVM pass, as a RuntimeError without the layer's name (or, on
    the portable path, as wrong results)."""
    for node, tensor in _weight_tensors(ep):
        values = tensor.detach().cpu().numpy()
        bad = np.flatnonzero(~np.isin(values, (-1, 0, 1)))
        if bad.size:
            index = tuple(int(i) for i in np.unravel_index(bad[0], values.shape))
            raise PackError(f"layer {layer_name(node)!r}: weight at index {index} is "
                            f"{values.flat[bad[0]].item()!r}; ternary weights must be -1, 0 or 1")
