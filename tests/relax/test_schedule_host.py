"""Host float ops get real CPU schedules (DLight rules + our injective rule), not the
unscheduled default, and stay numerically equal to torch."""

import numpy as np
import pytest
import torch
import tvm
import tvm_ffi
from torch import nn

import tvm_ternary as tt
from tvm_ternary.frontend import from_frozen
from tvm_ternary.relax import passes
from tvm_ternary.relax.schedule_host import already_scheduled
from tvm_ternary.target import host_target


def _host_funcs(model: nn.Module, x: torch.Tensor) -> dict:
    target = host_target()
    mod, _ = passes.run(from_frozen(model, (x,)), target)
    tvm_target = tvm.target.Target(target)
    with tvm_target:
        mod = tvm.transform.Sequential(passes.host_passes(tvm_target))(mod)
    return {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}


def _ffn(d: int = 64, hidden: int = 128) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d),
                         nn.Softmax(dim=-1)).eval()


def test_host_linears_are_scheduled():
    funcs = _host_funcs(_ffn(), torch.randn(3, 16, 64))
    linears = {n: f for n, f in funcs.items() if "matmul" in n}
    assert len(linears) == 2
    unscheduled = [name for name, f in linears.items() if not already_scheduled(f)]
    assert not unscheduled, f"left unscheduled: {unscheduled}"


@pytest.mark.parametrize("rows,k,n", [(1, 300, 1001), (1, 64, 48), (5, 33, 7)])
def test_matrix_vector_and_odd_widths_are_scheduled_and_exact(rows, k, n):
    torch.manual_seed(n)
    model = nn.Sequential(nn.Linear(k, n)).eval()
    x = torch.randn(rows, k)
    funcs = _host_funcs(model, x)
    assert all(already_scheduled(f) for name, f in funcs.items() if "matmul" in name)
    cm = tt.compile(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(cm(x), model(x), rtol=1e-5, atol=1e-5)


def test_without_the_pass_they_would_be_unscheduled():
    """The check above can fail: TVM's default legalization leaves serial loop nests."""
    target = host_target()
    mod = from_frozen(_ffn(), (torch.randn(3, 16, 64),))
    mod, _ = passes.run(mod, target)
    funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert funcs and not any(already_scheduled(f) for f in funcs)


@pytest.mark.parametrize("shape", [(3, 16, 64), (1, 7, 64), (5, 1, 64), (2, 33, 64)])
def test_scheduled_host_ops_match_torch(shape):
    model = _ffn()
    x = torch.randn(shape)
    cm = tt.compile(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(cm(x), model(x), rtol=1e-5, atol=1e-6)


def test_strategy_kernels_are_left_alone():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def already(a: T.Buffer((64,), "float32"), b: T.Buffer((64,), "float32")):
        for i in T.parallel(64):
            with T.sblock("b"):
                vi = T.axis.spatial(64, i)
                b[vi] = a[vi] * T.float32(2)

    @T.prim_func(s_tir=True)
    def plain(a: T.Buffer((64, 48), "float32"), w: T.Buffer((48, 32), "float32"),
              b: T.Buffer((64, 32), "float32")):
        for i, j, k in T.grid(64, 32, 48):
            with T.sblock("b"):
                vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                with T.init():
                    b[vi, vj] = T.float32(0)
                b[vi, vj] = b[vi, vj] + a[vi, vk] * w[vk, vj]

    assert already_scheduled(already) and not already_scheduled(plain)
    target = tvm.target.Target(host_target())
    mod = tvm.IRModule({"already": already, "plain": plain})
    out = passes.schedule_host_ops(target)(mod)
    assert tvm_ffi.structural_equal(out["already"].body, already.body)
    assert already_scheduled(out["plain"])
    # and the scheduled function still computes the same thing
    f = tvm.compile(out["plain"].with_attr("global_symbol", "plain"), target=target)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 48)).astype("float32")
    w = rng.standard_normal((48, 32)).astype("float32")
    b = tvm.runtime.tensor(np.zeros((64, 32), "float32"))
    f(tvm.runtime.tensor(a), tvm.runtime.tensor(w), b)
    np.testing.assert_allclose(b.numpy(), a.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride,groups,size", [(1, 1, 16), (2, 2, 15), (1, 3, 9)])
def test_float_convolutions_are_scheduled_and_match_torch(stride, groups, size):
    torch.manual_seed(stride * 10 + groups)
    model = nn.Sequential(nn.Conv2d(6, 12, 3, stride=stride, padding=1, groups=groups), nn.ReLU(),
                          nn.MaxPool2d(2)).eval()
    x = torch.randn(2, 6, size, size)
    funcs = _host_funcs(model, x)
    convs = {n: f for n, f in funcs.items() if "conv2d" in n}
    assert convs
    out_width = (size + 2 - 3) // stride + 1
    if out_width % 4 == 0:  # the rule vectorizes output columns in groups of 4, 8 or 16
        assert all(already_scheduled(f) for f in convs.values()), list(convs)
    cm = tt.compile(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(cm(x), model(x), rtol=1e-5, atol=1e-5)
