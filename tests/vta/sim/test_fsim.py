"""Functional simulator vs the integer reference (tvm_ternary.quant.reference), bit-exact."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tvm_ternary.quant import packing, reference
from vta_ext import HwConfig, isa, layout
from vta_ext.isa import Alu, AluOp, Finish, Load, MemType, Store
from vta_ext.sim.fsim import simulate

from .builders import Builder, conv_program, dense_program

CFG = {n: HwConfig.load(n) for n in ("tiny", "default", "int8", "tiny_tact")}
# no packaged config has batch > 1; the ISA and the simulator support it
CFG["tiny_b2"] = dataclasses.replace(CFG["tiny"], name="tiny_b2", batch=2)
SETTINGS = dict(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _acts(rng, cfg, shape):
    if cfg.act_bits == 2:
        return rng.integers(-1, 2, shape)
    return rng.integers(-127, 128, shape)


def _trits(rng, shape, p_zero=0.4):
    return rng.choice([-1, 0, 1], size=shape, p=[(1 - p_zero) / 2, p_zero, (1 - p_zero) / 2]).astype(np.int8)


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default", "tiny_tact", "tiny_b2"]), m=st.integers(1, 5),
       k=st.integers(1, 40), n=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_single_tile_dense_matches_linear_acc(cfg, m, k, n, seed):
    cfg = CFG[cfg]
    rng = np.random.default_rng(seed)
    x, w = _acts(rng, cfg, (m, k)), _trits(rng, (n, k))
    prog, read = dense_program(cfg, x, w)
    acc_p, acc_n = reference.linear_acc(x, w)
    assert (read(simulate(prog, cfg)) == acc_p - acc_n).all()


@settings(**SETTINGS)
@given(m=st.integers(1, 4), k=st.integers(1, 50), n=st.integers(1, 50), seed=st.integers(0, 2**31))
def test_int8_weight_config_matches_numpy_matmul(m, k, n, seed):
    cfg = CFG["int8"]
    rng = np.random.default_rng(seed)
    x, w = rng.integers(-128, 128, (m, k)), rng.integers(-128, 128, (n, k))
    prog, read = dense_program(cfg, x, w)
    assert (read(simulate(prog, cfg)) == x.astype(np.int64) @ w.T.astype(np.int64)).all()


def _requant_params(rng, n, symmetric):
    mp = rng.integers(2**14, 2**15, n)
    mn = mp.copy() if symmetric else rng.integers(2**14, 2**15, n)
    shift = rng.integers(1, 47, n)
    shift[: n // 2] = rng.integers(12, 22, n // 2)  # half of the channels in a useful range
    bias = rng.integers(-(2**40), 2**40, n)
    # a third of the channels multiply by 2**14 / 2**15..17 with a bias on that grid: many
    # exact ties (x.5), where round-half-away differs from every other rounding
    tie = rng.random(n) < 0.34
    mp[tie] = mn[tie] = 2**14
    shift[tie] = rng.integers(15, 18, int(tie.sum()))
    bias[tie] = rng.integers(-64, 64, int(tie.sum())) * 2**13
    return dict(mult_p=mp, mult_n=mn, shift=shift, bias=bias)


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default", "tiny_b2"]), m=st.integers(1, 6), k=st.integers(1, 60),
       n=st.integers(1, 60), tile=st.integers(1, 3), relu=st.booleans(), seed=st.integers(0, 2**31))
def test_multi_tile_dense_requantize_matches_reference(cfg, m, k, n, tile, relu, seed):
    cfg = CFG[cfg]
    rng = np.random.default_rng(seed)
    x, w = _acts(rng, cfg, (m, k)), _trits(rng, (n, k))
    par = _requant_params(rng, n, symmetric=True)
    lo, hi = (0, 127) if relu else (-127, 127)
    prog, read = dense_program(cfg, x, w, epilogue="requant", params=par, lo=lo, hi=hi,
                               tile_blocks=tile)
    acc_p, acc_n = reference.linear_acc(x, w)
    z = reference.scaled_acc(acc_p, acc_n, par["bias"], par["mult_p"], par["mult_n"])
    want = reference.requantize(z, par["shift"], lo, hi)
    assert (read(simulate(prog, cfg)) == want).all()


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default", "tiny_tact", "tiny_b2"]), m=st.integers(1, 5),
       k=st.integers(1, 40), n=st.integers(1, 40), tile=st.integers(1, 2), seed=st.integers(0, 2**31))
def test_dual_accumulators_match_acc_p_and_acc_n(cfg, m, k, n, tile, seed):
    cfg = CFG[cfg]
    rng = np.random.default_rng(seed)
    x, w = _acts(rng, cfg, (m, k)), _trits(rng, (n, k))
    prog, read = dense_program(cfg, x, w, dual=True, tile_blocks=tile)
    got_p, got_n = read(simulate(prog, cfg))
    acc_p, acc_n = reference.linear_acc(x, w)
    assert (got_p == acc_p).all() and (got_n == acc_n).all()


@settings(**SETTINGS)
@given(m=st.integers(1, 5), k=st.integers(1, 40), n=st.integers(1, 40), tile=st.integers(1, 2),
       seed=st.integers(0, 2**31))
def test_dual_scale_requantize_has_one_rounding(m, k, n, tile, seed):
    cfg = CFG["tiny"]
    rng = np.random.default_rng(seed)
    x, w = _acts(rng, cfg, (m, k)), _trits(rng, (n, k))
    par = _requant_params(rng, n, symmetric=False)
    prog, read = dense_program(cfg, x, w, epilogue="requant", params=par, dual=True, tile_blocks=tile)
    acc_p, acc_n = reference.linear_acc(x, w)
    z = reference.scaled_acc(acc_p, acc_n, par["bias"], par["mult_p"], par["mult_n"])
    assert (read(simulate(prog, cfg)) == reference.requantize(z, par["shift"])).all()


def _threshold_params(rng, n, z):
    centre = np.median(z, axis=0) if z.size else np.zeros(n)
    spread = rng.integers(0, 2**20, n)
    t_lo = (centre - spread).astype(np.int64)
    t_hi = (centre + rng.integers(0, 2**20, n)).astype(np.int64)
    return t_lo, t_hi


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default", "tiny_tact", "tiny_b2"]), dual=st.booleans(),
       m=st.integers(1, 6), k=st.integers(1, 40), n=st.integers(1, 40), tile=st.integers(1, 2),
       seed=st.integers(0, 2**31))
def test_threshold_matches_reference(cfg, dual, m, k, n, tile, seed):
    cfg = CFG[cfg]
    rng = np.random.default_rng(seed)
    x, w = _acts(rng, cfg, (m, k)), _trits(rng, (n, k))
    par = _requant_params(rng, n, symmetric=not dual)
    acc_p, acc_n = reference.linear_acc(x, w)
    z = reference.scaled_acc(acc_p, acc_n, par["bias"] * 0, par["mult_p"], par["mult_n"])
    par["bias"] = rng.integers(-(2**20), 2**20, n)
    z = z + par["bias"]
    par["t_lo"], par["t_hi"] = _threshold_params(rng, n, z)
    prog, read = dense_program(cfg, x, w, epilogue="thresh", params=par, dual=dual, tile_blocks=tile)
    want = reference.threshold(z, par["t_lo"], par["t_hi"])
    got = read(simulate(prog, cfg))
    assert (got == want).all()


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default"]), m=st.integers(1, 4), kb=st.integers(1, 4),
       nb=st.integers(1, 4), tile=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_zero_block_skipping_is_exact_and_saves_work(cfg, m, kb, nb, tile, seed):
    cfg = CFG[cfg]
    rng = np.random.default_rng(seed)
    k, n = kb * cfg.block_in - rng.integers(0, 2), nb * cfg.block_out - rng.integers(0, 2)
    x, w = _acts(rng, cfg, (m, k)), _trits(rng, (n, k))
    zero = rng.random((nb, kb)) < 0.5
    for i, j in zip(*np.nonzero(zero)):
        w[i * cfg.block_out:(i + 1) * cfg.block_out, j * cfg.block_in:(j + 1) * cfg.block_in] = 0
    bitmap = packing.zero_block_bitmap(w, (cfg.block_out, cfg.block_in))
    dense, read_dense = dense_program(cfg, x, w, tile_blocks=tile)
    sparse, read_sparse = dense_program(cfg, x, w, skip_zero=True, tile_blocks=tile)
    full, skipped = simulate(dense, cfg), simulate(sparse, cfg)
    acc_p, acc_n = reference.linear_acc(x, w)
    assert (read_sparse(skipped) == acc_p - acc_n).all()
    assert (read_dense(full) == acc_p - acc_n).all()
    nonzero_blocks = int((~bitmap).sum())
    mb = -(-m // cfg.batch)
    assert skipped.totals()["macs"] == nonzero_blocks * mb * cfg.macs_per_cycle
    assert full.totals()["macs"] == nb * kb * mb * cfg.macs_per_cycle
    assert skipped.totals().get("dram_bytes_wgt", 0) == nonzero_blocks * cfg.wgt_block_bytes


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default", "tiny_tact"]), c=st.integers(1, 12),
       o=st.integers(1, 12), hw=st.tuples(st.integers(1, 7), st.integers(1, 7)),
       k=st.sampled_from([1, 2, 3]), stride=st.sampled_from([1, 2]), padding=st.integers(0, 2),
       pad_value=st.sampled_from([0, -1]), dual=st.booleans(), seed=st.integers(0, 2**31))
def test_padded_conv_matches_conv2d_acc(cfg, c, o, hw, k, stride, padding, pad_value, dual, seed):
    cfg = CFG[cfg]
    h, wd = hw
    hp, wp = h + 2 * padding, wd + 2 * padding
    assume(hp >= k and wp >= k)
    oh, ow = (hp - k) // stride + 1, (wp - k) // stride + 1
    nc, no = -(-c // cfg.block_in), -(-o // cfg.block_out)
    assume(no * oh * ow * (2 if dual else 1) <= cfg.acc_depth and nc * hp * wp <= cfg.inp_depth)
    rng = np.random.default_rng(seed)
    x, w = _acts(rng, cfg, (c, h, wd)), _trits(rng, (o, c, k, k))
    prog, read = conv_program(cfg, x, w, stride=stride, padding=padding, pad_value=pad_value,
                              dual=dual)
    acc_p, acc_n = reference.conv2d_acc(x[None], w, (stride, stride), (padding, padding),
                                        pad_value=pad_value)
    got = read(simulate(prog, cfg))
    if dual:
        assert (got[0] == acc_p[0]).all() and (got[1] == acc_n[0]).all()
    else:
        assert (got == (acc_p - acc_n)[0]).all()


@settings(**SETTINGS)
@given(cfg=st.sampled_from(["tiny", "default", "int8"]), dual=st.booleans(), m=st.integers(1, 4),
       k=st.integers(1, 40), n=st.integers(1, 40), tile=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_gemm_with_weight_loop_factors(cfg, dual, m, k, n, tile, seed):
    """Weights that move with the loop take the simulator's general GEMM path."""
    cfg = CFG[cfg]
    dual = dual and cfg.dual_scale
    rng = np.random.default_rng(seed)
    x, w = _acts(rng, cfg, (m, k)), _trits(rng, (n, k))
    prog, read = dense_program(cfg, x, w, dual=dual, tile_blocks=tile, weight_loop=True)
    assert any(getattr(i, "wgt_factor_in", 0) for i in prog.insns)
    acc_p, acc_n = reference.linear_acc(x, w)
    got = read(simulate(prog, cfg))
    if dual:
        assert (got[0] == acc_p).all() and (got[1] == acc_n).all()
    else:
        assert (got == acc_p - acc_n).all()


def test_weights_from_foundation_2bit_packing():
    cfg = CFG["default"]
    rng = np.random.default_rng(7)
    x, w = _acts(rng, cfg, (3, 45)), _trits(rng, (37, 45))
    prog, read = dense_program(cfg, x, w, foundation_packing=True, tile_blocks=2)
    acc_p, acc_n = reference.linear_acc(x, w)
    assert (read(simulate(prog, cfg)) == acc_p - acc_n).all()


def _acc_program(cfg, a, b, ops):
    """LOAD two ACC tiles a, b ([n, batch, block_out]), apply ALU ops dst=a, src=b in order,
    STORE a. ops: list of (AluOp, use_imm, imm)."""
    bld = Builder(cfg)
    n = a.shape[0]
    ea = bld.region("a", layout.pack_acc(a, cfg), MemType.ACC)
    eb = bld.region("b", layout.pack_acc(b, cfg), MemType.ACC)
    eo = bld.output("out", n, MemType.ACC)
    bld.emit(Load(mem=MemType.ACC, sram_base=0, dram_base=ea, x_size=n, x_stride=n))
    bld.emit(Load(mem=MemType.ACC, sram_base=n, dram_base=eb, x_size=n, x_stride=n))
    eu = bld.region("uop", isa.encode_uops([0], [n], [0]).view(np.uint8), MemType.UOP)
    bld.emit(Load(mem=MemType.UOP, sram_base=0, dram_base=eu, x_size=1, x_stride=1))
    for op, use_imm, imm in ops:
        bld.emit(Alu(op=op, uop_bgn=0, uop_end=1, iter_out=n, dst_factor_out=1, src_factor_out=1,
                     use_imm=use_imm, imm=imm))
    bld.set_tokens(len(bld.prog.insns) - 1, push_next=True)
    bld.emit(Store(mem=MemType.ACC, sram_base=0, dram_base=eo, x_size=n, x_stride=n,
                   pop_prev=True, push_prev=True))
    bld.emit(Finish(pop_next=True))
    return bld.prog, lambda r: layout.unpack_acc(r.dram.read("out"), cfg)


@settings(**SETTINGS)
@given(seed=st.integers(0, 2**31), imm=st.integers(-(2**15), 2**15 - 1), sh=st.integers(0, 31))
def test_elementwise_alu_ops_match_numpy(seed, imm, sh):
    cfg = CFG["tiny"]
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**15), 2**15, (5, 1, cfg.block_out))
    b = rng.integers(-(2**15), 2**15, (5, 1, cfg.block_out))
    cases = [
        ([(AluOp.MIN, False, 0)], np.minimum(a, b)),
        ([(AluOp.MAX, True, imm)], np.maximum(a, imm)),
        ([(AluOp.ADD, False, 0), (AluOp.ADD, True, imm)], a + b + imm),
        ([(AluOp.MUL, False, 0)], a * b),
        ([(AluOp.MOV, False, 0)], b),
        ([(AluOp.MOV, True, imm)], np.full_like(a, imm)),
        ([(AluOp.SHR, True, sh)], np.floor(a / 2.0**sh).astype(np.int64)),
        ([(AluOp.MAX, True, 0), (AluOp.MIN, True, 127)], np.clip(a, 0, 127)),
    ]
    for ops, want in cases:
        prog, read = _acc_program(cfg, a, b, ops)
        assert (read(simulate(prog, cfg)) == want).all(), ops


def test_stats_hand_worked_and_input_untouched():
    cfg = CFG["tiny"]  # 1 x 4 x 4 block: 16 MACs per micro-op
    rng = np.random.default_rng(3)
    x, w = rng.integers(-5, 5, (3, 8)), _trits(rng, (8, 8), p_zero=0.0)
    prog, read = dense_program(cfg, x, w, epilogue="requant",
                               params=dict(mult_p=[2**14] * 8, mult_n=[2**14] * 8, shift=[14] * 8))
    before = prog.dram.data.copy()
    res = simulate(prog, cfg)
    assert (prog.dram.data == before).all()  # the program's own image is never written
    tot = res.totals()
    # 3 rows x 2 output blocks x 2 input blocks = 12 micro-op executions x 16 MACs
    assert tot["macs"] == 12 * 16
    assert tot["dram_bytes_inp"] == 3 * 2 * 4  # 6 int8 blocks of 4 bytes
    assert tot["dram_bytes_wgt"] == 4 * 4  # 4 ternary blocks of 4 x 4 / 4 bytes
    assert tot["dram_bytes_out"] == 3 * 2 * 4
    assert tot["dram_bytes_par"] == 2 * 4 * 32
    assert tot["alu_elems"] == 3 * 2 * 4
    gemms = [s for s in res.stats if s.opcode == "GEMM"]
    assert [g.uop_execs for g in gemms] == [6, 12] and gemms[0].macs == 0
    assert {s.module for s in res.stats if s.opcode == "LOAD"} == {"load", "compute"}
    assert res.leftover_tokens == {}
    # M / 2**shift = 2**14 / 2**14 = 1: the outputs are the clamped accumulators
    assert (read(res) == np.clip(x @ w.T.astype(np.int64), -127, 127)).all()


def test_byte_stream_runs_like_objects():
    cfg = CFG["tiny"]
    rng = np.random.default_rng(4)
    x, w = _acts(rng, cfg, (2, 9)), _trits(rng, (7, 9))
    prog, read = dense_program(cfg, x, w, dual=True)
    from_objects = read(simulate(prog, cfg))
    prog.insns = prog.stream()
    from_bytes = read(simulate(prog, cfg))
    assert all((a == b).all() for a, b in zip(from_objects, from_bytes))


def test_leftover_tokens_are_reported():
    cfg = CFG["tiny"]
    prog, _ = dense_program(cfg, np.ones((1, 4), int), np.ones((4, 4), np.int8))
    last_store = max(i for i, s in enumerate(prog.insns) if isinstance(s, Store))
    prog.insns[-1] = isa.replace(prog.insns[-1], pop_next=False)
    res = simulate(prog, cfg)
    assert res.leftover_tokens == {"s2c": 1} and last_store < len(prog.insns)


@pytest.mark.parametrize("cfg", ["default", "large"])
def test_larger_layer_fast_tier(cfg):
    """A multi-tile 200 x 300 layer with requantize: one representative of bigger sizes."""
    cfg = HwConfig.load(cfg)
    rng = np.random.default_rng(5)
    x, w = _acts(rng, cfg, (4, 300)), _trits(rng, (200, 300))
    par = _requant_params(rng, 200, symmetric=True)
    prog, read = dense_program(cfg, x, w, epilogue="requant", params=par, tile_blocks=3)
    acc_p, acc_n = reference.linear_acc(x, w)
    want = reference.requantize(reference.scaled_acc(acc_p, acc_n, par["bias"], par["mult_p"],
                                                     par["mult_n"]), par["shift"])
    assert (read(simulate(prog, cfg)) == want).all()


@settings(max_examples=6, deadline=None)
@given(dual=st.booleans(), k=st.integers(1, 500), n=st.integers(2, 40), tile=st.integers(1, 2),
       seed=st.integers(0, 2**31))
def test_requantize_at_the_top_of_the_16_bit_multiplier_range(dual, k, n, tile, seed):
    # PAR's u2 multipliers at [2**15, 2**16) (65535 on channel 0) times the extreme
    # accumulators: input row 0 all -127, channel 0's weights all +1, channel 1's all -1;
    # beyond k = 258 the product leaves int32 (two input rows fit the input buffer)
    cfg = CFG["tiny"]
    rng = np.random.default_rng(seed)
    x, w = _acts(rng, cfg, (2, k)), _trits(rng, (n, k))
    x[0] = -127
    w[0], w[1] = 1, -1
    mp = rng.integers(2**15, 2**16, n)
    mn = rng.integers(2**15, 2**16, n) if dual else mp.copy()
    mp[0] = mn[0] = 2**16 - 1
    par = dict(mult_p=mp, mult_n=mn, shift=rng.integers(16, 30, n), bias=rng.integers(-(2**40), 2**40, n))
    prog, read = dense_program(cfg, x, w, epilogue="requant", params=par, dual=dual, tile_blocks=tile)
    acc_p, acc_n = reference.linear_acc(x, w)
    z = reference.scaled_acc(acc_p, acc_n, par["bias"], mp, mn)
    assert (read(simulate(prog, cfg)) == reference.requantize(z, par["shift"])).all()
