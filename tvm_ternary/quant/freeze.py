"""``freeze(qm)``: turn a calibrated fake-quant model into the integer model.

The model is traced with ``torch.fx``. For each ternary layer, the chain of single-user
ops after it (an optional BatchNorm, then any of ReLU / MaxPool2d / Flatten, and the
eval-mode no-ops Dropout / Identity) is followed.
When every consumer at the end of the chain is a ternary layer (or a residual branch's
``ResidualQuant``) with the same input quantizer, the chain is folded into the layer's
epilogue:

* int8 consumers: BN and the scales become a per-channel fixed-point multiplier and shift
  (``requantize``), ReLU becomes the clamp ``[0, 127]``;
* ternary consumers: BN, scales and ReLU become two integer thresholds (``threshold``);

and the consumers read integers directly. A conv's chain may also hold a residual add
``[BN] -> add(., ResidualQuant(...)) -> [ReLU]``: with int8 consumers it folds into a
residual epilogue (``requantize(z + Mr * r)``, ``reference.add_residual``), and the
shortcut's producer requantizes at the residual quantizer's scale. MaxPool and Flatten stay in the graph (they
commute with a monotonic quantizer, so they run on the integers). Otherwise the layer
dequantizes to float (``dequantize``) and the following ops run on the host in float.

A negative BN gamma flips a channel: its weights are negated and its two scales swapped,
so every multiplier stays non-negative and every threshold compares the same way.
"""

from __future__ import annotations

import copy
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from tvm_ternary.errors import FreezeError

from . import reference
from .act import Int8Act, TernaryAct
from .frozen import FrozenModel, FrozenTernaryLayer
from .frozen import FrozenResidualQuant
from .layers import TERNARY_LAYERS
from .methods.base import dequantized
from .residual import ResidualQuant

_NEVER = -(2**62)  # a threshold no int64 scaled accumulator is below / above
_DUAL_BITS = 14   # resolution of the Mp:Mn ratio for dual-scale thresholds and floats


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (ResidualQuant, *TERNARY_LAYERS)) or super().is_leaf_module(m, qualname)


def _node_kind(node: fx.Node, modules: dict) -> str | None:
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return "bn"
        if isinstance(m, nn.ReLU):
            return "relu"
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return "identity"  # no-ops in an eval-mode integer model
        if isinstance(m, nn.MaxPool2d) and not m.return_indices:
            return "maxpool"
        if isinstance(m, nn.Flatten):
            return "flatten"
        if isinstance(m, TERNARY_LAYERS):
            return "ternary"
        if isinstance(m, ResidualQuant):
            return "residual"
    if node.op == "call_function" and node.target in (operator.add, torch.add) and not node.kwargs:
        return "add"
    if node.op == "call_function" and node.target in (F.relu, torch.relu):
        return "relu"
    if node.op == "call_function" and node.target is torch.flatten:
        return "flatten"
    if node.op == "call_method" and node.target in ("relu", "flatten"):
        return node.target
    return None


def _input_descriptor(name: str, layer) -> tuple[str, dict] | None:
    """How a ternary layer quantizes its input: ("int8", {scale}) / ("ternary", {...})."""
    q = layer.act_quant
    if q is None:
        return None
    if isinstance(q, Int8Act):
        if q.dynamic:
            raise FreezeError(f"layer {name!r}: dynamic per-token int8 activations cannot be frozen "
                              "to a fixed integer model yet; use act='int8'")
        if not q.calibrated:
            raise FreezeError(f"layer {name!r}: input quantizer is not calibrated; run "
                              "tt.quant.calibrate(model, batches) first")
        return "int8", q.descriptor()
    if isinstance(q, TernaryAct):
        if not q.calibrated:
            raise FreezeError(f"layer {name!r}: ternary activation thresholds are not calibrated; "
                              "run tt.quant.calibrate(model, batches) first")
        return "ternary", q.descriptor()
    raise FreezeError(f"layer {name!r}: unknown input quantizer {type(q).__name__}")


def _same_descriptor(a, b) -> bool:
    if a is None or b is None or a[0] != b[0] or a[1].keys() != b[1].keys():
        return False
    return all(torch.equal(torch.as_tensor(a[1][k]), torch.as_tensor(b[1][k])) for k in a[1])


class _Plan:
    """What freeze decided for one ternary layer."""

    def __init__(self, node: fx.Node, layer, descriptor):
        self.node = node
        self.layer = layer
        self.descriptor = descriptor  # its own input quantizer
        self.int_input = False        # a fused producer feeds it integers
        self.bn: nn.Module | None = None
        self.relu = False
        self.folded: list[fx.Node] = []  # BN / ReLU nodes to remove
        self.passthrough: list[str] = []  # maxpool / flatten kept on integers
        self.consumer: tuple | None = None  # descriptor of the consumers' input quantizer
        self.residual: fx.Node | None = None  # the ResidualQuant added in the epilogue
        self.residual_scale = 0.0             # ... its int8 scale
        self.add: fx.Node | None = None       # ... by this add node


class _ResidualPlan:
    """A ``ResidualQuant`` node: an int8 reader like a ternary layer's input quantizer."""

    def __init__(self, node: fx.Node, descriptor):
        self.node = node
        self.descriptor = descriptor
        self.int_input = False   # its producer emits integers at its scale
        self.fused = False       # its add runs in a layer's residual epilogue


def _residual_operand(add: fx.Node, chain: fx.Node, residuals: dict) -> fx.Node | None:
    """The other operand of ``add`` if it is a ResidualQuant with a static int8 quantizer."""
    if len(add.args) != 2 or chain not in add.args or add.args[0] is add.args[1]:
        return None
    other = add.args[1] if add.args[0] is chain else add.args[0]
    plan = residuals.get(other)
    if plan is None or plan.descriptor[0] != "int8" or len(other.users) != 1:
        return None  # (a branch feeding a second add must stay a tensor of its own)
    return other


def _plan_chain(plan: _Plan, plans: dict, modules: dict, residuals: dict) -> None:
    """Decide whether ``plan``'s output chain folds into its epilogue."""
    node, folded, passthrough, bn, relu = plan.node, [], [], None, False
    residual, add = None, None
    readers = {**plans, **residuals}
    while len(node.users) == 1:
        nxt = next(iter(node.users))
        kind = _node_kind(nxt, modules)
        # a residual add folds right after the conv or its BN (nothing else is in z)
        shortcut = (_residual_operand(nxt, node, residuals) if kind == "add" and add is None
                    and len(folded) == (bn is not None) and not passthrough
                    and isinstance(plan.layer, nn.Conv2d) else None)
        if kind == "bn" and not folded and not passthrough and not modules[nxt.target].training:
            bn = modules[nxt.target]
            folded.append(nxt)
        elif shortcut is not None:
            residual, add = shortcut, nxt
            folded.append(nxt)
        elif kind == "relu" and len(nxt.args) == 1:
            relu = True
            folded.append(nxt)
        elif kind == "identity":
            folded.append(nxt)
        elif kind in ("maxpool", "flatten"):
            passthrough.append(kind)
        else:
            break
        node = nxt
    consumers = list(node.users)
    if not consumers or any(c not in readers for c in consumers):
        return
    descs = [readers[c].descriptor for c in consumers]
    if not all(_same_descriptor(descs[0], d) for d in descs):
        return
    if descs[0][0] == "ternary" and descs[0][1]["t_lo"].numel() > 1 and "flatten" in passthrough:
        return  # per-channel thresholds no longer line up with channels after a flatten
    if residual is not None and descs[0][0] != "int8":
        return  # the residual epilogue requantizes; a thresholded sum stays in float
    plan.bn, plan.relu, plan.folded, plan.passthrough = bn, relu, folded, passthrough
    plan.consumer = descs[0]
    plan.residual, plan.add = residual, add
    if residual is not None:
        residuals[residual].fused = True
        plan.residual_scale = residuals[residual].descriptor[1]["scale"]
    for c in consumers:
        readers[c].int_input = True


# ----------------------------------------------------------------------------- arithmetic

def _folded_affine(name: str, layer, bn, input_unit: float):
    """``y = unit_p * acc_p - unit_n * acc_n + offset`` per channel, all units >= 0.

    Returns ``(w_t, unit_p, unit_n, offset)``; float64 numpy vectors.
    """
    w_t, ap, an = layer.ternarize_weight()
    w_t = w_t.clone()
    ap, an = ap.double().numpy().copy(), an.double().numpy().copy()
    out = w_t.shape[0]
    bias = layer.bias.detach().double().numpy() if layer.bias is not None else np.zeros(out)
    if bn is not None:
        var = bn.running_var.detach().double().numpy()
        gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones(out)
        beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros(out)
        g = gamma / np.sqrt(var + bn.eps)
        shift = beta - g * bn.running_mean.detach().double().numpy()
    else:
        g, shift = np.ones(out), np.zeros(out)
    for c in np.nonzero(g < 0)[0]:  # a negative gamma flips the channel
        w_t[c] = -w_t[c]
        ap[c], an[c] = an[c], ap[c]
        bias[c], g[c] = -bias[c], -g[c]
    offset = g * bias + shift
    for c in range(out):
        # A zero scale or a zero gamma makes a sign (or the channel) contribute nothing:
        # drop those weights and keep both units positive (the multipliers are ratios).
        if g[c] == 0:
            w_t[c] = 0
        if ap[c] == 0:
            w_t[c][w_t[c] == 1] = 0
        if an[c] == 0:
            w_t[c][w_t[c] == -1] = 0
        if g[c] == 0 or (ap[c] == 0 and an[c] == 0):
            g[c], ap[c], an[c] = 1.0, 1.0, 1.0
        elif ap[c] == 0:
            ap[c] = an[c]
        elif an[c] == 0:
            an[c] = ap[c]
    if not (np.isfinite(g).all() and np.isfinite(offset).all()):
        raise FreezeError(f"layer {name!r}: batch norm or bias is not finite")
    return w_t, g * input_unit * ap, g * input_unit * an, offset


def _requant_bias(name: str, offset, out_scale: float, shift) -> Tensor:
    """The folded offset in ``z`` units (``2**-shift`` output steps), one rounding."""
    b = reference.round_half_away(offset / out_scale * np.exp2(shift.astype(np.float64)))
    bad = np.nonzero(np.abs(b) >= 2**62)[0]
    if bad.size:
        raise FreezeError(f"layer {name!r} channel {bad[0]}: folded bias {offset[bad[0]]:.4g} "
                          f"is too large for the output scale {out_scale:.4g}")
    return torch.from_numpy(b.astype(np.int64))


def _ratio_mults(unit_p, unit_n):
    """Integer ``Mp, Mn`` with the ratio of the units and the unit of ``z`` they imply."""
    top = np.maximum(unit_p, unit_n)
    mp = reference.round_half_away(unit_p / top * 2**_DUAL_BITS)
    mn = reference.round_half_away(unit_n / top * 2**_DUAL_BITS)
    symmetric = unit_p == unit_n
    mp = np.where(symmetric, 1, mp)
    mn = np.where(symmetric, 1, mn)
    z_unit = np.where(symmetric, unit_p, top / 2**_DUAL_BITS)
    return mp, mn, z_unit


def _requant_params(name: str, unit_p, unit_n, out_scale: float):
    mp_real, mn_real = unit_p / out_scale, unit_n / out_scale
    mp, mn, shift = [], [], []
    for c, (a, b) in enumerate(zip(mp_real, mn_real)):
        try:
            big, s = reference.quantize_multiplier(max(a, b))
        except ValueError as err:
            raise FreezeError(f"layer {name!r} channel {c}: {err}") from None
        mp.append(big if a >= b else int(reference.round_half_away(a * 2**s)))
        mn.append(big if b >= a else int(reference.round_half_away(b * 2**s)))
        shift.append(s)
    return np.array(mp), np.array(mn), np.array(shift)


def _residual_mults(name: str, r_scale: float, out_scale: float, shift, mult_p, mult_n, bias,
                    k: int, max_in: int) -> Tensor:
    """``Mr[c] = round_half_away(r_scale / out_scale * 2**shift[c])``: the shortcut's unit
    in ``z`` units, so ``z + Mr * r`` shares the layer's shift and one rounding. Each
    channel's worst-case sum must stay inside the reference's int64 headroom (2**62)."""
    mr = reference.round_half_away(r_scale / out_scale * np.exp2(shift.astype(np.float64)))
    for c in range(len(mr)):
        worst = ((int(mult_p[c]) + int(mult_n[c])) * k * max_in + abs(int(bias[c]))
                 + int(mr[c]) * reference.INT8_MAX)
        if worst >= 2**62:
            raise FreezeError(
                f"layer {name!r} channel {c}: residual multiplier Mr = {int(mr[c])} (shortcut "
                f"scale {r_scale:.4g} / output scale {out_scale:.4g} * 2**{int(shift[c])}) makes "
                "z + Mr * r exceed the int64 range; the shortcut's scale is far above the output's")
    return torch.from_numpy(mr.astype(np.int64))


def _thresholds(t_lo, t_hi, z_unit, offset, relu: bool):
    t_lo = np.broadcast_to(t_lo.double().numpy(), z_unit.shape)
    t_hi = np.broadcast_to(t_hi.double().numpy(), z_unit.shape)
    # y = z * unit + offset with z integer and unit > 0, so
    # y > t  <=>  z > floor((t - offset) / unit);  y < t  <=>  z < ceil((t - offset) / unit)
    hi = np.floor((t_hi - offset) / z_unit)
    lo = np.ceil((t_lo - offset) / z_unit)
    if relu:  # relu(y) is never below a threshold <= 0, and always above one < 0
        lo = np.where(t_lo <= 0, _NEVER, lo)
        hi = np.where(t_hi < 0, _NEVER, hi)
    clip = float(2**62)
    return (torch.from_numpy(np.clip(lo, -clip, clip).astype(np.int64)),
            torch.from_numpy(np.clip(hi, -clip, clip).astype(np.int64)))


def _frozen_layer(name: str, plan: _Plan, input_unit: float) -> FrozenTernaryLayer:
    layer = plan.layer
    w_t, unit_p, unit_n, offset = _folded_affine(name, layer, plan.bn, input_unit)
    level_offset = plan.descriptor[1].get("offset", 0)
    if level_offset:  # inputs are scale * (t + offset) but the wire carries t
        dims = tuple(range(1, w_t.dim()))
        n_pos = (w_t == 1).sum(dims).double().numpy()
        n_neg = (w_t == -1).sum(dims).double().numpy()
        offset = offset + level_offset * (unit_p * n_pos - unit_n * n_neg)
    k = int(np.prod(w_t.shape[1:]))
    max_in = 127 if plan.descriptor[0] == "int8" else 1
    reference.check_accumulator_range(k, max_in, f"layer {name!r}")
    mult_p, mult_n, z_unit = _ratio_mults(unit_p, unit_n)
    bias = torch.zeros(w_t.shape[0], dtype=torch.int64)
    out_params: dict = {}
    if plan.consumer is None:
        kind = "float"
        out_params = {"scale": torch.from_numpy(z_unit.astype(np.float32)),
                      "out_bias": torch.from_numpy(offset.astype(np.float32))}
    elif plan.consumer[0] == "int8":
        kind = "requant"
        out_scale = plan.consumer[1]["scale"]
        mult_p, mult_n, shift = _requant_params(name, unit_p, unit_n, out_scale)
        bias = _requant_bias(name, offset, out_scale, shift)
        out_params = {"shift": torch.from_numpy(shift.astype(np.int32)),
                      "lo": 0 if plan.relu else reference.INT8_MIN, "hi": reference.INT8_MAX}
        if plan.residual is not None:
            kind = "requant_residual"
            r_scale = plan.residual_scale
            out_params["mult_r"] = _residual_mults(name, r_scale, out_scale, shift, mult_p,
                                                   mult_n, bias.numpy(), k, max_in)
    else:
        kind = "threshold"  # the offset folds into the thresholds exactly; no bias
        t_lo, t_hi = _thresholds(plan.consumer[1]["t_lo"], plan.consumer[1]["t_hi"], z_unit,
                                 offset, plan.relu)
        out_params = {"t_lo": t_lo, "t_hi": t_hi}
    mult = torch.from_numpy(np.stack([mult_p, mult_n]).astype(np.int32))
    conv = None
    if isinstance(layer, nn.Conv2d):
        conv = {"stride": list(layer.stride), "padding": list(layer.padding),
                "dilation": list(layer.dilation), "groups": layer.groups,
                "pad_value": -level_offset}  # the wire value of a real zero
    in_kind, in_params = plan.descriptor
    if plan.int_input:
        in_kind = "int"
    in_params = {k: (float(v) if not torch.is_tensor(v) or v.numel() == 1 else v)
                 for k, v in in_params.items() if k in ("t_lo", "t_hi") or
                 (k == "scale" and in_kind == "int8")}
    if in_kind == "ternary" and any(torch.is_tensor(v) for v in in_params.values()):
        raise FreezeError(f"layer {name!r}: per-channel ternary thresholds on a float input "
                          "cannot be frozen; they need an integer producer layer")
    return FrozenTernaryLayer(
        name=name, kind="conv2d" if conv else "linear", w_t=w_t, bias=bias, mult=mult,
        conv=conv, input_kind=in_kind, input_params=in_params, output_kind=kind,
        output_params=out_params)


def _float_layer(layer) -> nn.Module:
    """A ternary layer without an input quantizer runs on the host in float."""
    w_t, ap, an = layer.ternarize_weight()
    new = copy.deepcopy(layer)
    float_cls = nn.Conv2d if isinstance(layer, nn.Conv2d) else nn.Linear
    new.__class__ = float_cls
    for attr in ("weight_quant", "act_quant", "prune_mask"):
        delattr(new, attr)
    new.weight = nn.Parameter(dequantized(w_t, ap, an), requires_grad=False)
    return new


def _fuse_residual_add(graph: fx.Graph, plan: _Plan) -> None:
    """``relu(bn(layer(h)) + r)`` -> ``layer(h, r)``: the layer's epilogue adds ``Mr * r``.

    The new call sits where the add was: ``r`` (the shortcut) is computed after the layer
    in the traced order, and the call must follow both of its inputs.
    """
    at = plan.folded.index(plan.add)
    with graph.inserting_before(plan.add):
        fused = graph.call_module(plan.node.target, (plan.node.args[0], plan.residual))
    plan.add.replace_all_uses_with(fused)
    for node in plan.folded[at + 1:]:  # ReLU / no-ops after the add
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
    graph.erase_node(plan.add)
    for node in reversed(plan.folded[:at]):  # the batch norm
        graph.erase_node(node)
    graph.erase_node(plan.node)


def _freeze_residual(gm: fx.GraphModule, rplan: _ResidualPlan) -> None:
    """A residual branch's quantizer in the integer model: nothing when integers at its
    scale flow into a residual epilogue; else quantize a float input and / or dequantize
    for an add that stayed in float (the fake-quant model's value either way)."""
    node = rplan.node
    if rplan.int_input and rplan.fused:
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
        return
    gm.add_submodule(node.target, FrozenResidualQuant(
        node.target, rplan.descriptor[1]["scale"], quantize=not rplan.int_input,
        dequantize=not rplan.fused))


@torch.no_grad()
def freeze(qm: nn.Module) -> FrozenModel:
    """Freeze a calibrated fake-quant model into a ``FrozenModel`` (integer semantics)."""
    if getattr(qm, "is_frozen", False):
        return qm
    model = copy.deepcopy(qm).eval()
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # fx cannot trace data-dependent Python control flow
        raise FreezeError(
            f"freeze could not trace the model with torch.fx: {err}. Make the model's forward "
            "traceable: no Python control flow on tensor values (use torch.where), and no "
            "shapes that depend on the data") from err
    gm = fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())

    plans: dict[fx.Node, _Plan] = {}
    residuals: dict[fx.Node, _ResidualPlan] = {}
    host_layers: list[str] = []
    for node in gm.graph.nodes:
        kind = _node_kind(node, modules)
        if kind == "ternary":
            layer = modules[node.target]
            desc = _input_descriptor(node.target, layer)
            if desc is None:
                host_layers.append(node.target)
                gm.add_submodule(node.target, _float_layer(layer))
                continue
            plans[node] = _Plan(node, layer, desc)
        elif kind == "residual":
            desc = _input_descriptor(node.target, modules[node.target])
            if desc is not None:  # a float residual branch (act != "int8") stays as it is
                residuals[node] = _ResidualPlan(node, desc)
    for plan in plans.values():
        _plan_chain(plan, plans, modules, residuals)

    fused = {}
    for node, plan in plans.items():
        unit = plan.descriptor[1]["scale"]
        gm.add_submodule(node.target, _frozen_layer(node.target, plan, unit))
        fused[node.target] = [_node_kind(n, modules) for n in plan.folded] + plan.passthrough
        if plan.residual is not None:
            _fuse_residual_add(gm.graph, plan)
            continue
        for folded in plan.folded:
            folded.replace_all_uses_with(folded.args[0])
            gm.graph.erase_node(folded)
    for rplan in residuals.values():
        _freeze_residual(gm, rplan)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    host_layers += [n for n, m in gm.named_modules() if type(m) in (nn.Linear, nn.Conv2d)
                    and n not in host_layers]
    return FrozenModel(gm, host_layers, fused)

