"""vta_ext.runtime: regions behind global packed functions (as the Relax VM calls them), the
fsim backend bit-exact with the integer reference on random layers, and the error paths."""

import gc

import numpy as np
import pytest
import tvm
import tvm_ffi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_ternary.errors import BackendError, ShapeMismatchError
from tvm_ternary.quant.reference import quantize_multiplier
from vta_ext import HwConfig
from vta_ext.compiler.layer import LayerSpec
from vta_ext.runtime import ReferenceBackend, Session, get_backend

DEFAULT = HwConfig.load("default")


def random_spec(rng, kind, epilogue, dual, batch, cin, cout, size=5, k=3, stride=1, pad=1,
                sparsity=0.4, name="layer"):
    """A layer whose z lands in a sensible int8 range (multipliers from a target scale)."""
    wshape = (cout, cin) if kind == "dense" else (cout, cin, k, k)
    w = rng.choice([-1, 0, 1], size=wshape, p=[(1 - sparsity) / 2, sparsity, (1 - sparsity) / 2])
    fan_in = int(np.prod(wshape[1:]))
    shift = np.empty(cout, np.int64)
    mp, mn = np.empty(cout, np.int64), np.empty(cout, np.int64)
    for c in range(cout):
        m, s = quantize_multiplier(float(rng.uniform(0.5, 2.0)) / np.sqrt(fan_in) / 8)
        mp[c], shift[c] = m, s
        mn[c] = m if not dual else max(1 << 14, min((1 << 15) - 1, int(m * rng.uniform(0.6, 1.4))))
    bias = rng.integers(-(1 << 20), 1 << 20, cout)
    input_shape = (batch, cin) if kind == "dense" else (batch, cin, size, size)
    fields = dict(name=name, kind=kind, input_shape=input_shape, weight=w.astype(np.int8),
                  bias=bias.astype(np.int64), mult_p=mp, mult_n=mn, epilogue=epilogue)
    if epilogue == "requantize":
        fields.update(shift=shift, lo=int(rng.choice([-127, 0])), hi=127)
    else:
        t = rng.integers(0, 1 << 22, cout)
        fields.update(t_lo=-t, t_hi=t)
    if kind == "conv2d":
        fields.update(stride=(stride, stride), padding=(pad, pad))
    return LayerSpec(**fields)


def _call_packed(name, x, out_shape):
    """Call a registered function as the VM does: DLPack tensors in, destination last."""
    out = tvm.runtime.tensor(np.zeros(out_shape, np.int8))
    tvm_ffi.get_global_func(name)(tvm.runtime.tensor(x), out)
    return out.numpy()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["dense", "conv2d"]),
       epilogue=st.sampled_from(["requantize", "threshold"]), dual=st.booleans(),
       batch=st.integers(1, 3), cin=st.integers(1, 37), cout=st.integers(1, 37),
       size=st.integers(3, 7), stride=st.integers(1, 2))
def test_fsim_region_equals_reference(seed, kind, epilogue, dual, batch, cin, cout, size, stride):
    rng = np.random.default_rng(seed)
    spec = random_spec(rng, kind, epilogue, dual, batch, cin, cout, size=size, stride=stride)
    x = rng.integers(-127, 128, spec.input_shape).astype(np.int8)
    session = Session(DEFAULT, "fsim")
    name = session.offload(spec)
    want = spec.reference(x)
    got = _call_packed(name, x, want.shape)
    assert np.array_equal(got, want)
    region = session.region(name)
    assert region.calls == 1
    cost = region.cost
    assert cost.cycles > 0 and cost.dram_bytes > 0 and cost.energy_pj > 0
    # utilization is the layer's own MACs over the core's peak for the simulated cycles
    acc_p, _ = spec.accumulators(x)
    reduction = int(np.prod(spec.weight.shape[1:]))
    # (the layer's MACs, unless skipped all-zero weight blocks leave fewer MAC slots)
    assert cost.useful_macs <= acc_p.size * reduction
    if not DEFAULT.zero_block_skip or np.all(spec.weight != 0):
        assert cost.useful_macs == acc_p.size * reduction
    assert cost.gemm_utilization == pytest.approx(
        cost.useful_macs / (DEFAULT.macs_per_cycle * cost.cycles))
    assert 0 <= cost.gemm_utilization <= 1
    assert (cost.gemm_utilization > 0) == bool(np.any(spec.weight != 0))


def test_tiny_config_runs_layers_larger_than_its_buffers():
    rng = np.random.default_rng(11)
    hw = HwConfig.load("tiny")
    spec = random_spec(rng, "conv2d", "requantize", True, 2, 13, 19, size=9, name="big")
    x = rng.integers(-127, 128, spec.input_shape).astype(np.int8)
    session = Session(hw, "fsim")  # the packed function lives as long as its session
    name = session.offload(spec)
    assert np.array_equal(_call_packed(name, x, spec.reference(x).shape), spec.reference(x))


def test_reference_backend_is_not_reported_as_the_accelerator():
    backend = get_backend("reference")
    assert isinstance(backend, ReferenceBackend) and not backend.runs_accelerator
    rng = np.random.default_rng(3)
    spec = random_spec(rng, "dense", "threshold", False, 2, 20, 9)
    session = Session(DEFAULT, backend)
    name = session.offload(spec)
    x = rng.integers(-127, 128, spec.input_shape).astype(np.int8)
    assert np.array_equal(_call_packed(name, x, (2, 9)), spec.reference(x))
    assert session.region(name).cost is None


def test_unknown_and_unavailable_backends_are_named():
    with pytest.raises(BackendError, match="'gpu'.*fsim"):
        get_backend("gpu")
    spec = random_spec(np.random.default_rng(0), "dense", "requantize", False, 1, 8, 8, name="fc1")
    with pytest.raises(BackendError, match="(?s)rtl.*fc1.*Verilator.*fsim"):
        Session(DEFAULT, "rtl").offload(spec)


def test_wrong_input_shape_names_the_layer():
    spec = random_spec(np.random.default_rng(1), "dense", "requantize", False, 2, 8, 4, name="fc7")
    session = Session(DEFAULT, "reference")
    name = session.offload(spec)
    with pytest.raises(ShapeMismatchError, match=r"fc7.*\(3, 8\).*\(2, 8\)"):
        session.region(name)(np.zeros((3, 8), np.int8))
    # through the FFI (as the VM calls it) the error keeps its message
    with pytest.raises(Exception, match=r"fc7.*\(3, 8\)"):
        _call_packed(name, np.zeros((3, 8), np.int8), (2, 4))


def test_packed_functions_go_away_with_their_session():
    spec = random_spec(np.random.default_rng(2), "dense", "requantize", False, 1, 8, 4)
    session = Session(DEFAULT, "reference")
    name = session.offload(spec)
    assert tvm_ffi.get_global_func(name, allow_missing=True) is not None
    del session
    gc.collect()
    assert tvm_ffi.get_global_func(name, allow_missing=True) is None
