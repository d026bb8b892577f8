"""Block-sparse GEMV (compute + schedule + tensorize): the CSR-of-blocks layout keeps
exactly the nonzero blocks, the kernel equals the integer reference at every sparsity (0%
to 100% zero blocks), symmetric and dual-scale, batch > 1, for every knob value, and
tt.compile chooses it for weights with many zero blocks."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tvm_ternary as tt
from tvm_ternary.cpu import sparse_gemv as sp
from tvm_ternary.cpu.intrin_trit import AVX2, VNNI
from tvm_ternary.cpu.layout import blocked_2bit
from tvm_ternary.target import cpu_info

from .linear_helpers import expected_linear, run_linear_kernel, top_multiplier_layer

_FLAGS = cpu_info()["flags"]
pytestmark = pytest.mark.skipif("avx2" not in _FLAGS, reason="host has no AVX2")
# the AVX2 floor through Zen 3 (the CI machine), and AVX-512 VNNI where the host has it
ISAS = [pytest.param(AVX2, "znver3", id="avx2"),
        pytest.param(VNNI, "cascadelake", id="vnni", marks=pytest.mark.skipif(
            not {"avx512_vnni", "avx512bw"} <= _FLAGS, reason="no AVX-512 VNNI"))]


def _block_sparse(rng, n, k, zero_frac, rows, cols):
    """Random ternary weights with about ``zero_frac`` of the (rows x cols) blocks zeroed."""
    w = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
    for i in range(0, n, rows):
        for j in range(0, k, cols):
            if rng.random() < zero_frac:
                w[i:i + rows, j:j + cols] = 0
    return w


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 700), zero_frac=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
       isa=st.sampled_from([AVX2, VNNI]), rows=st.sampled_from([1, 4, 8, 16]), seed=st.integers(0, 2**31))
def test_csr_blocks_keep_exactly_the_nonzero_blocks(n, k, zero_frac, isa, rows, seed):
    cols = isa.group
    w = _block_sparse(np.random.default_rng(seed), n, k, zero_frac, rows, cols)
    csr = sp.csr_blocks(w, rows, isa.lanes)
    # rebuild the dense blocked layout from the kept blocks; skipped blocks are all code 1 (w = 0)
    dense = blocked_2bit(w, rows, isa.lanes)
    groups = dense.shape[1] // isa.lanes
    rebuilt = np.full_like(dense, 0b01010101)
    kept = 0
    for rb in range(len(csr.ptr) - 1):
        for e in range(csr.ptr[rb], csr.ptr[rb + 1]):
            g = csr.col[e]
            tile = csr.blocks[e]
            rebuilt[rb * rows:(rb + 1) * rows, g * isa.lanes:(g + 1) * isa.lanes] = tile
            assert w[rb * rows:(rb + 1) * rows, g * cols:(g + 1) * cols].any()  # only nonzero kept
            kept += 1
    assert np.array_equal(rebuilt, dense)
    assert kept == csr.nnz and csr.groups == groups
    n_blocks = (len(csr.ptr) - 1) * groups
    assert csr.zero_fraction == pytest.approx(1 - kept / n_blocks)


def _run(isa, mcpu, x, w, mult, bias, dual=False, rows=None, unroll_rows=True):
    n, k = w.shape
    rows = rows or sp.default_rows(isa, dual)
    csr = sp.csr_blocks(w, rows, isa.lanes)
    return run_linear_kernel(sp.make_sparse_gemv(x.shape[0], n, k, csr.nnz, isa, dual, rows, unroll_rows),
                             mcpu, x, [csr.ptr, csr.col, csr.blocks], mult, bias)


@pytest.mark.parametrize("isa,mcpu", ISAS)
@pytest.mark.parametrize("dual", [False, True])
@pytest.mark.parametrize("zero_frac", [0.0, 0.3, 0.7, 0.9, 1.0])
@settings(max_examples=4, deadline=None)
@given(batch=st.integers(1, 3), n=st.integers(1, 50), k=st.integers(1, 900), knob=st.integers(0, 5),
       seed=st.integers(0, 2**31))
def test_sparse_gemv_matches_reference(isa, mcpu, dual, zero_frac, batch, n, k, knob, seed):
    knobs = sp.KNOBS[isa]
    rows = knobs["dual_rows" if dual else "rows"][knob % len(knobs["dual_rows" if dual else "rows"])]
    unroll = knobs["unroll_rows"][knob % 2]
    rng = np.random.default_rng(seed)
    w = _block_sparse(rng, n, k, zero_frac, rows, isa.group)
    x = rng.integers(-128, 128, size=(batch, k)).astype(np.int8)
    mult = rng.integers(2**14, 2**15, size=(2, n)).astype(np.int32)
    if not dual:
        mult[1] = mult[0]
    bias = rng.integers(-2**40, 2**40, size=n).astype(np.int64)
    assert np.array_equal(_run(isa, mcpu, x, w, mult, bias, dual, rows, unroll),
                          expected_linear(x, w, mult, bias))


@pytest.mark.parametrize("isa,mcpu", ISAS)
@pytest.mark.parametrize("dual", [False, True])
def test_saturation_worst_case_and_all_zero_layer(isa, mcpu, dual):
    # worked by hand: all weights +1 and all inputs -128 give acc = acc_p = -128 k, so
    # z = Mp acc_p - Mn acc_n + bias = (2**15 - 1) (-128 k) + bias (acc_n = 0)
    rows = sp.default_rows(isa, dual)
    n, k = 20, 3 * isa.group + 7
    w = np.ones((n, k), np.int8)
    w[rows:] = 0                          # every block of the later row blocks is zero
    x = np.full((1, k), -128, np.int8)
    mult = np.full((2, n), 2**15 - 1, np.int32)
    if dual:
        mult[1] = 3
    bias = np.arange(n, dtype=np.int64)
    out = _run(isa, mcpu, x, w, mult, bias, dual)
    assert (out[0, :rows] == (2**15 - 1) * -128 * k + bias[:rows]).all()
    assert (out[0, rows:] == bias[rows:]).all()
    assert (_run(isa, mcpu, x, np.zeros_like(w), mult, bias, dual) == bias).all()  # 100%: no blocks


def _layer(k, n, zero_frac, seed):
    torch.manual_seed(seed)
    lin = nn.Linear(k, n)
    rng = np.random.default_rng(seed)
    with torch.no_grad():  # zero blocks of 16 rows x 256 columns (the VNNI block; 2x2 AVX2 blocks)
        for i in range(0, n, 16):
            for j in range(0, k, 256):
                if rng.random() < zero_frac:
                    lin.weight[i:i + 16, j:j + 256] = 0
    return nn.Sequential(lin)


@pytest.mark.parametrize("zero_frac,sparse,method,batch", [(0.9, True, "twn", 1), (0.0, False, "twn", 1),
                                                           (0.9, True, "ttq", 1), (0.9, True, "twn", 3)])
def test_compile_chooses_sparse_kernel_only_for_sparse_weights(zero_frac, sparse, method, batch):
    x = torch.randn(batch, 1000)
    qm = tt.quant.ternarize(_layer(1000, 70, zero_frac, 3), method)
    tt.quant.calibrate(qm, [x])
    frozen = tt.quant.freeze(qm)
    cm = tt.compile(frozen, (x,), target="cpu")
    assert any("sparse_gemv" in s for s in cm.stats["kernels"]) == sparse, cm.stats["kernels"]
    y = cm(x)
    assert torch.equal(y, frozen(x)) and torch.equal(y, tt.quant.run_reference(frozen, x))


def _zero_blocks_layer(zero_blocks: int, seed: int) -> nn.Sequential:
    """A 1024 -> 64 Linear with exactly ``zero_blocks`` of its 16 (16 rows x 256 columns)
    blocks zero: the same fraction of the AVX2 kernel's 8 x 128 blocks."""
    torch.manual_seed(seed)
    lin = nn.Linear(1024, 64)
    picked = np.random.default_rng(seed).permutation(16)[:zero_blocks]
    with torch.no_grad():
        for block in picked:
            i, j = divmod(int(block), 4)
            lin.weight[16 * i:16 * (i + 1), 256 * j:256 * (j + 1)] = 0
    return nn.Sequential(lin)


# The measured rule (cpu/strategy.py, SPARSE_MIN_ZERO_BLOCKS): from batch 8 the sparse kernel
# needs >= 20 % zero blocks, from 16 35 %, from 32 50 %, from 128 70 %; else the tiled GEMM.
@pytest.mark.parametrize("batch,zero_blocks,sparse", [(12, 14, True), (12, 0, False), (20, 6, True),
                                                      (40, 6, False), (40, 10, True), (130, 10, False)])
def test_batches_from_8_take_the_sparse_kernel_where_it_beats_the_gemm(batch, zero_blocks, sparse):
    x = torch.randn(batch, 1024)
    qm = tt.quant.ternarize(_zero_blocks_layer(zero_blocks, batch), "twn")
    tt.quant.calibrate(qm, [x])
    frozen = tt.quant.freeze(qm)
    cm = tt.compile(frozen, (x,), target="cpu")
    chosen = "sparse_gemv" if sparse else "gemm_tiled"
    assert any(k.endswith(chosen) for k in cm.stats["kernels"]), cm.stats["kernels"]
    y = cm(x)
    assert torch.equal(y, frozen(x)) and torch.equal(y, tt.quant.run_reference(frozen, x))


def test_bad_inputs_are_named():
    from tvm_ternary.errors import KernelConfigError, PackError

    with pytest.raises(KernelConfigError, match="sparse_gemv: out_features must be a positive int"):
        sp.make_sparse_gemv(1, 0, 64, 1, AVX2)
    with pytest.raises(KernelConfigError, match="sparse_gemv: rows per block must be a positive int, got 0"):
        sp.make_sparse_gemv(1, 4, 64, 1, AVX2, rows=0)
    with pytest.raises(KernelConfigError, match=r"sparse_gemv: nnz \(kept blocks\) must be an int >= 0, got -1"):
        sp.make_sparse_gemv(1, 4, 64, -1, AVX2)
    with pytest.raises(PackError, match="-2"):
        sp.csr_blocks(np.array([[0, -2]]), 8, 32)


@pytest.mark.parametrize("isa,mcpu", ISAS)
@pytest.mark.parametrize("dual", [False, True])
@settings(max_examples=4, deadline=None)
@given(batch=st.integers(2, 3), n=st.integers(2, 45), k=st.integers(1, 1500), seed=st.integers(0, 2**31))
def test_top_of_16_bit_multiplier_range_matches_reference(isa, mcpu, dual, batch, n, k, seed):
    # channels 0 and 1 dense at the accumulator extremes, the others block-sparse
    rng = np.random.default_rng(seed)
    x, w, mult, bias = top_multiplier_layer(rng, batch, n, k, dual)
    rows = sp.default_rows(isa, dual)
    w[2:] = (_block_sparse(rng, n, k, 0.6, rows, isa.group) != 0)[2:] * w[2:]
    assert np.array_equal(_run(isa, mcpu, x, w, mult, bias, dual), expected_linear(x, w, mult, bias))
