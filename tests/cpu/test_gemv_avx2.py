"""The AVX2 ternary GEMV kernel equals the integer reference on odd shapes."""

import numpy as np
import pytest
import tvm

from tvm_ternary.cpu.gemv_avx2 import ROWS, make_gemv
from tvm_ternary.cpu.layout import blocked_2bit, padded_k
from tvm_ternary.quant import reference as ref
from tvm_ternary.target import cpu_info

pytestmark = pytest.mark.skipif("avx2" not in cpu_info()["flags"], reason="host has no AVX2")


@pytest.mark.parametrize("batch,n,k", [(1, 4, 128), (1, 5, 1), (3, 13, 200), (2, 8, 2048 + 129),
                                       (1, 64, 4096)])
def test_gemv_matches_reference(batch, n, k):
    rng = np.random.default_rng(batch * 1000 + n * 10 + k)
    w = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
    x = rng.integers(-127, 128, size=(batch, k)).astype(np.int8)
    x[0, : min(k, 8)] = -127  # extremes: pair sums reach the int16 bound argument
    packed = blocked_2bit(w, ROWS)
    x_pad = np.zeros((batch, padded_k(k)), np.int8)
    x_pad[:, :k] = x
    sx = x.astype(np.int32).sum(axis=1).astype(np.int32)
    lib = tvm.compile(make_gemv(batch, packed.shape[0], padded_k(k)),
                      target=tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}))
    out = tvm.runtime.tensor(np.zeros((batch, packed.shape[0]), np.int32))
    lib(*[tvm.runtime.tensor(a) for a in (x_pad, packed, sx)], out)
    acc_p, acc_n = ref.linear_acc(x, w)
    assert np.array_equal(out.numpy()[:, :n], acc_p - acc_n)


def test_all_ones_worst_case_does_not_saturate():
    n, k = 4, 128 * 16  # one full int16 chunk of 64 pmaddubsw per lane
    w = np.ones((n, k), np.int8)
    x = np.full((1, k), 127, np.int8)
    packed = blocked_2bit(w, ROWS)
    lib = tvm.compile(make_gemv(1, packed.shape[0], k),
                      target=tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}))
    out = tvm.runtime.tensor(np.zeros((1, packed.shape[0]), np.int32))
    lib(*[tvm.runtime.tensor(a) for a in (x, packed, np.array([127 * k], np.int32))], out)
    assert (out.numpy()[:, :n] == 127 * k).all()
