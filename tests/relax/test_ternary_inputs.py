"""AnnotateTernaryInputs marks exactly the linears whose input values are in {-1, 0, 1}."""

import numpy as np
import pytest
from tvm import relax

from tvm_ternary.relax.ternary_inputs import annotate_ternary_inputs, has_ternary_input
from tvm_ternary.relax import ops as rops


def _linear(bb, x, n=3):
    k = int(x.ty.shape[-1])
    w = relax.const(np.ones((n, k), np.int8))
    return bb.emit(rops.call("tlinear", [x, w, relax.const(np.zeros(n, np.int64)),
                                         relax.const(np.ones((2, n), np.int32))], []))


def _marks(build):
    """Build ``main`` with ``build(bb, x_float, x_int8)`` and return each linear's mark, in order."""
    bb = relax.BlockBuilder()
    xf = relax.Var("xf", relax.TensorType([2, 8], "float32"))
    xi = relax.Var("xi", relax.TensorType([2, 8], "int8"))
    with bb.function("main", [xf, xi]):
        with bb.dataflow():
            out = bb.emit_output(build(bb, xf, xi))
        bb.emit_func_output(out)
    mod = annotate_ternary_inputs(bb.get())
    marks = []
    relax.analysis.post_order_visit(mod["main"], lambda e: marks.append(has_ternary_input(e)) if (
        isinstance(e, relax.Call) and getattr(e.op, "name", "") == "relax.tternary_tlinear") else None)
    return marks


def test_quantize_ternary_and_value_keeping_ops_are_ternary():
    def build(bb, xf, xi):
        t = bb.emit(rops.call("tquantize_ternary", [xf], [-0.5, 0.5]))
        r = bb.emit(relax.op.reshape(t, [2, 2, 4]))
        r = bb.emit(relax.op.reshape(bb.emit(relax.op.nn.relu(r)), [2, 8]))
        pair = bb.emit(relax.Tuple([r, xi]))
        a = _linear(bb, bb.emit(relax.TupleGetItem(pair, 0)))   # ternary field
        b = _linear(bb, bb.emit(relax.TupleGetItem(pair, 1)))   # int8 parameter field
        return bb.emit(relax.Tuple([a, b]))

    assert _marks(build) == [True, False]


def test_threshold_output_is_ternary_but_arithmetic_on_it_is_not():
    def build(bb, xf, xi):
        z = _linear(bb, xi)                                     # int8 input: not ternary
        t = bb.emit(rops.call("tthreshold", [z, relax.const(np.zeros(3, np.int64)),
                                              relax.const(np.zeros(3, np.int64))], [-1]))
        a = _linear(bb, t)                                      # threshold output: ternary
        doubled = bb.emit(relax.op.add(t, t))                   # values in {-2, 0, 2}
        b = _linear(bb, doubled)
        return bb.emit(relax.Tuple([a, b]))

    assert _marks(build) == [False, True, False]


@pytest.mark.parametrize("op", ["tquantize", "astype"])
def test_other_producers_are_not_ternary(op):
    def build(bb, xf, xi):
        if op == "tquantize":
            v = bb.emit(rops.call("tquantize", [xf], [0.1, -127, 127]))
        else:
            v = bb.emit(relax.op.astype(xi, "int8"))
        return _linear(bb, v)

    assert _marks(build) == [False]
