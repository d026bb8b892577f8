"""The micro-op ``first`` bit (docs/isa.md, GEMM): a flagged micro-op execution writes its
product into the accumulator instead of adding it. Hand-built programs checked against a
numpy integer matmul; misuse traps."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tvm_ternary.errors import SimulatorError
from vta_ext import HwConfig, isa, layout
from vta_ext.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store
from vta_ext.sim.fsim import simulate

from .builders import Builder

TINY = HwConfig.load("tiny")


def _program(x_blocks, w_blocks, passes, dual=False, alu_first=False):
    """acc block 0 (pair 0, 1 with dual) after GEMM passes over the K blocks; each pass is
    a list of (k, first) micro-ops. Then a STORE ACC of the block (pair)."""
    cfg = TINY
    bld = Builder(cfg)
    k = len(x_blocks)
    inp = bld.region("inp", layout.pack_inp(np.asarray(x_blocks), cfg), MemType.INP)
    wgt = bld.region("wgt", layout.pack_wgt(np.asarray(w_blocks, dtype=np.int8), cfg), MemType.WGT)
    pairs = 2 if dual else 1
    out = bld.output("out", pairs, MemType.ACC)
    segs = [isa.encode_uops([0] * len(p), [u for u, _ in p], [u for u, _ in p],
                            [f for _, f in p]) for p in passes]
    segs.append(isa.encode_uops([pairs], [0], [0], [alu_first]))  # a MOV acc[pairs] = acc[0]
    words = np.concatenate(segs)
    uop = bld.region("uop", words.view(np.uint8), MemType.UOP)
    bld.emit(Load(mem=MemType.INP, dram_base=inp, x_size=k, x_stride=k))
    bld.emit(Load(mem=MemType.WGT, dram_base=wgt, x_size=k, x_stride=k, push_next=True))
    bld.emit(Load(mem=MemType.UOP, dram_base=uop, x_size=words.size, x_stride=words.size))
    top = 0
    for i, seg in enumerate(segs[:-1]):
        bld.emit(Gemm(uop_bgn=top, uop_end=top + seg.size, dual=dual, pop_prev=i == 0))
        top += seg.size
    bld.emit(Alu(op=AluOp.MOV, uop_bgn=top, uop_end=top + 1, push_next=True))
    bld.emit(Store(mem=MemType.ACC, dram_base=out, x_size=pairs, x_stride=pairs, pop_prev=True))
    bld.emit(Finish())
    return bld.prog


def _acc(prog, pairs=1):
    result = simulate(prog, TINY)
    return layout.unpack_acc(result.dram.read("out"), TINY).reshape(pairs, TINY.batch, -1)


def _x_w(rng, k):
    cfg = TINY
    x = rng.integers(-128, 128, (k, cfg.batch, cfg.block_in))
    w = rng.integers(-1, 2, (k, cfg.block_out, cfg.block_in)).astype(np.int8)
    return x, w


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_first_overwrites_what_earlier_gemms_accumulated(k, junk_passes, seed):
    rng = np.random.default_rng(seed)
    x, w = _x_w(rng, k)
    # earlier passes leave something (nonzero) in the accumulator; the flagged pass replaces it
    passes = [[(0, True)]] + [[(j % k, False)] for j in range(junk_passes)]
    passes.append([(j, j == 0) for j in range(k)])
    got = _acc(_program(x, w, passes))[0]
    want = sum(x[j].astype(np.int64) @ w[j].astype(np.int64).T for j in range(k))
    assert np.array_equal(got, want)


def test_first_dual_writes_both_accumulators():
    rng = np.random.default_rng(3)
    x, w = _x_w(rng, 3)
    passes = [[(0, True), (1, False)], [(j, j == 0) for j in range(3)]]
    got = _acc(_program(x, w, passes, dual=True), pairs=2)
    pos = sum(x[j].astype(np.int64) @ (w[j] == 1).astype(np.int64).T for j in range(3))
    neg = sum(x[j].astype(np.int64) @ (w[j] == -1).astype(np.int64).T for j in range(3))
    assert np.array_equal(got[0], pos) and np.array_equal(got[1], neg)


def test_first_reads_no_uninitialized_accumulator():
    # without a flag (and no reset), the first GEMM reads acc[0] that nothing wrote
    rng = np.random.default_rng(4)
    x, w = _x_w(rng, 2)
    with pytest.raises(SimulatorError, match="reads acc\\[0\\], which no instruction has written"):
        simulate(_program(x, w, [[(0, False), (1, False)]]), TINY)
    assert _acc(_program(x, w, [[(0, True), (1, False)]])).any()


def _gemm_index(prog, nth=0):
    return [i for i, s in enumerate(prog.insns) if isinstance(s, Gemm)][nth]


def test_first_after_an_update_in_the_same_instruction_traps():
    rng = np.random.default_rng(5)
    x, w = _x_w(rng, 2)
    prog = _program(x, w, [[(0, True)], [(0, False), (1, True)]])
    with pytest.raises(SimulatorError, match="has first set but acc\\[0\\] was already updated") \
            as err:
        simulate(prog, TINY)
    assert err.value.index == _gemm_index(prog, 1)


def test_first_on_a_reset_gemm_traps():
    rng = np.random.default_rng(6)
    x, w = _x_w(rng, 1)
    prog = _program(x, w, [[(0, True)]])
    i = _gemm_index(prog)
    prog.insns[i] = isa.replace(prog.insns[i], reset=True)
    with pytest.raises(SimulatorError, match="reset takes micro-ops without the first bit") as err:
        simulate(prog, TINY)
    assert err.value.index == i


def test_first_on_an_alu_micro_op_traps():
    rng = np.random.default_rng(7)
    x, w = _x_w(rng, 1)
    prog = _program(x, w, [[(0, True)]], alu_first=True)
    alu = next(i for i, s in enumerate(prog.insns) if isinstance(s, Alu))
    with pytest.raises(SimulatorError, match="ALU MOV: micro-op first bit is a GEMM bit") as err:
        simulate(prog, TINY)
    assert err.value.index == alu
