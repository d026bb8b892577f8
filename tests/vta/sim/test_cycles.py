"""Cycle model: hand-worked timelines, token deadlock, properties, and the static work
counts against the functional simulator's per-instruction statistics."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_ternary.errors import PerfModelError, SimulatorError
from vta_ext import HwConfig
from vta_ext.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store
from vta_ext.sim.cycles import (ALU_PIPELINE_CYCLES as A, DMA_LATENCY_CYCLES as L,
                                FINISH_CYCLES as F, GEMM_PIPELINE_CYCLES as G, cycle_report)
from vta_ext.sim.fsim import module_of, simulate
from vta_ext.sim.work import program_work

from .builders import conv_program, dense_program

CFG = {n: HwConfig.load(n) for n in ("tiny", "default", "int8", "tiny_tact")}
DEFAULT = CFG["default"]  # 8 bytes per cycle; inp block 16 B, out block 16 B, acc block 64 B
SETTINGS = dict(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def load_uop(n=1, **tok):
    return Load(mem=MemType.UOP, sram_base=0, dram_base=0, y_size=1, x_size=n, x_stride=n, **tok)


def load_inp(blocks, **tok):
    return Load(mem=MemType.INP, sram_base=0, dram_base=0, y_size=1, x_size=blocks,
                x_stride=blocks, **tok)


def gemm(iters, **tok):
    return Gemm(uop_bgn=0, uop_end=1, iter_out=iters, **tok)


def store_out(blocks, **tok):
    return Store(mem=MemType.OUT, sram_base=0, dram_base=0, y_size=1, x_size=blocks,
                 x_stride=blocks, **tok)


# ------------------------------------------------------------------ hand-worked timelines

def test_load_gemm_store_chain():
    # LOAD of 2 KiB (128 inp blocks of 16 B) at 8 B/cycle: L + 256 cycles. The GEMM waits
    # for it (l2c), 128 iterations take G + 128; the STORE of one 16-byte block waits for
    # the GEMM (c2s) and takes L + 2. The LOAD UOP (8 B: L + 1) runs in compute meanwhile.
    prog = [load_uop(),
            load_inp(128, push_next=True),
            gemm(128, pop_prev=True, push_next=True),
            store_out(1, pop_prev=True, push_prev=True),
            Finish(pop_next=True)]
    r = cycle_report(prog, DEFAULT)
    gemm_start = L + 256  # the LOAD INP finishes after the LOAD UOP (L + 1)
    gemm_end = gemm_start + G + 128
    store_end = gemm_end + L + 2
    assert r.start == [0, 0, gemm_start, gemm_end, store_end]
    assert r.finish == [L + 1, L + 256, gemm_end, store_end, store_end + F]
    assert r.total_cycles == 2 * L + 256 + G + 128 + 2 + F
    assert r.busy_cycles == {"load": L + 256, "compute": (L + 1) + (G + 128) + F,
                             "store": L + 2, "epilogue": 0}
    assert r.dram_read_bytes == {"uop": 8, "inp": 2048}
    assert r.dram_write_bytes == {"out": 16}
    assert r.dram_bound_cycles == 257  # 2056 bytes read at 8 B/cycle (16 written: 2)
    assert r.useful_macs == 128 * 16 * 16  # default: batch 1 x 16 x 16 per iteration
    assert r.gemm_utilization == pytest.approx(128 / r.total_cycles)
    assert r.leftover_tokens == {}


def _two_tiles(double_buffered: bool):
    """Two 1 KiB input tiles (64 blocks: L + 128 cycles each), 200 GEMM iterations each.
    Double buffered, the second LOAD overlaps the first GEMM; single buffered, it must
    wait until GEMM 0 has consumed the buffer (c2l token)."""
    return [load_uop(),
            load_inp(64, push_next=True),
            load_inp(64, push_next=True, pop_next=not double_buffered),
            gemm(200, pop_prev=True, push_prev=not double_buffered),
            gemm(200, pop_prev=True, push_next=True),
            store_out(1, pop_prev=True, push_prev=True),
            Finish(pop_next=True)]


def test_double_buffering_overlaps_load_and_compute():
    assert G + 200 > L + 128  # so the second load hides entirely behind the first GEMM
    gemm0_end = (L + 128) + G + 200
    db = cycle_report(_two_tiles(True), DEFAULT)
    assert db.start[2] == L + 128  # right after the first load, during GEMM 0
    assert db.start[4] == gemm0_end
    assert db.total_cycles == gemm0_end + (G + 200) + (L + 2) + F
    sb = cycle_report(_two_tiles(False), DEFAULT)
    assert sb.start[2] == gemm0_end  # waits for GEMM 0 to free the buffer
    assert sb.start[4] == gemm0_end + L + 128
    assert sb.total_cycles == gemm0_end + (L + 128) + (G + 200) + (L + 2) + F
    assert sb.total_cycles - db.total_cycles == L + 128  # exactly the hidden load


def test_padding_costs_sram_writes_not_dram():
    # 2 x 3 blocks with one pad row on top and one pad column each side: 3 x 5 = 15
    # entries, 6 from DRAM (96 B = 12 cycles), 9 padding entries (9 cycles).
    ld = Load(mem=MemType.INP, sram_base=0, dram_base=0, y_size=2, x_size=3, x_stride=3,
              y_pad_0=1, x_pad_0=1, x_pad_1=1)
    r = cycle_report([ld, Finish()], DEFAULT)
    assert r.finish[0] == L + 12 + 9
    assert r.dram_read_bytes == {"inp": 96}


def test_dram_bytes_round_up_to_whole_bus_beats():
    tiny = CFG["tiny"]  # inp block = 4 B, bus 8 B: 3 blocks = 12 B = 2 beats
    r = cycle_report([load_inp(3), Finish()], tiny)
    assert r.finish[0] == L + 2


def test_alu_and_dual_gemm_take_one_cycle_per_iteration():
    alu = Alu(op=AluOp.MAX, uop_bgn=0, uop_end=2, iter_out=3, use_imm=True, imm=0)
    dual = Gemm(uop_bgn=0, uop_end=2, iter_out=5, iter_in=2, dual=True)
    r = cycle_report([alu, dual, Finish()], DEFAULT)
    assert r.finish == [A + 6, A + 6 + G + 20, A + 6 + G + 20 + F]
    assert r.useful_macs == 20 * 256  # MAC slots; a dual GEMM does not double them


def test_useful_macs_passed_in_set_utilization():
    r = cycle_report([gemm(1000), Finish()], DEFAULT, useful_macs=100_000)
    assert r.total_cycles == G + 1000 + F
    assert r.gemm_utilization == pytest.approx(100_000 / (256 * (G + 1000 + F)))


@pytest.mark.parametrize("bad", [-1, 2.5, True, 1001 * 256])
def test_impossible_useful_macs_are_rejected(bad):
    # 1000 iterations issue 256000 MAC slots: more useful MACs than that cannot be true
    with pytest.raises(PerfModelError, match="useful_macs"):
        cycle_report([gemm(1000), Finish()], DEFAULT, useful_macs=bad)
    assert cycle_report([gemm(1000), Finish()], DEFAULT,
                        useful_macs=np.int64(1000 * 256)).gemm_utilization < 1


def test_reset_gemm_issues_no_macs():
    r = cycle_report([Gemm(uop_bgn=0, uop_end=4, reset=True), Finish()], DEFAULT)
    assert r.total_cycles == G + 4 + F and r.useful_macs == 0


def test_leftover_tokens_are_reported():
    r = cycle_report([load_inp(1, push_next=True), Finish()], DEFAULT)
    assert r.leftover_tokens == {"l2c": 1}


# ------------------------------------------------------------------ deadlock and bad input

def test_pop_without_push_is_a_deadlock_naming_the_instruction():
    with pytest.raises(SimulatorError, match="instruction 1: token deadlock") as err:
        cycle_report([load_uop(), gemm(4, pop_prev=True), Finish()], DEFAULT)
    assert err.value.index == 1


def test_circular_wait_is_a_deadlock_with_the_simulators_index():
    # LOAD waits for compute (c2l), which waits for the LOAD (l2c): neither can start.
    prog = [load_inp(1, pop_next=True, push_next=True),
            gemm(1, pop_prev=True, push_prev=True), Finish()]
    with pytest.raises(SimulatorError) as ours:
        cycle_report(prog, DEFAULT)
    with pytest.raises(SimulatorError) as fsim:
        simulate(_with_dram(prog), DEFAULT)
    assert ours.value.index == fsim.value.index == 0
    assert "token deadlock" in str(ours.value)


def _with_dram(insns):
    from vta_ext.program import Program
    p = Program(insns=list(insns))
    p.dram.alloc("zeros", 1 << 12)
    return p


def test_token_bit_towards_a_missing_module_is_rejected():
    with pytest.raises(SimulatorError, match="instruction 0:.*load module has no previous"):
        cycle_report([load_inp(1, pop_prev=True), Finish()], DEFAULT)


def test_program_without_finish_is_rejected():
    with pytest.raises(SimulatorError, match="no FINISH"):
        cycle_report([load_inp(1)], DEFAULT)


# ------------------------------------------------------------------ properties

_KINDS = ("load_inp", "load_uop", "gemm", "alu", "store")
_MODULE = {"load_inp": "load", "load_uop": "compute", "gemm": "compute", "alu": "compute",
           "store": "store"}
# token bit -> (queue it pops / pushes) per module, written from docs/isa.md
_POPS = {"load": {"pop_next": "c2l"}, "compute": {"pop_prev": "l2c", "pop_next": "s2c"},
         "store": {"pop_prev": "c2s"}}
_PUSHES = {"load": {"push_next": "l2c"}, "compute": {"push_prev": "c2l", "push_next": "c2s"},
           "store": {"push_prev": "s2c"}}


def _make(kind, size, bits):
    if kind == "load_inp":
        return load_inp(size, **bits)
    if kind == "load_uop":
        return load_uop(size, **bits)
    if kind == "gemm":
        return gemm(size, **bits)
    if kind == "alu":
        return Alu(op=AluOp.ADD, uop_bgn=0, uop_end=1, iter_out=size, use_imm=True, imm=1, **bits)
    return store_out(size, **bits)


@st.composite
def programs(draw):
    """Random deadlock-free programs: a pop is kept only if, executing one instruction
    at a time in program order, its queue already holds a token (so program order is a
    valid schedule and nothing can block forever)."""
    n = draw(st.integers(1, 14))
    tokens = {"l2c": 0, "c2l": 0, "c2s": 0, "s2c": 0}
    insns = []
    for _ in range(n):
        kind = draw(st.sampled_from(_KINDS))
        mod = _MODULE[kind]
        bits = {}
        for bit, q in _POPS[mod].items():
            if draw(st.booleans()) and tokens[q] > 0:
                bits[bit] = True
                tokens[q] -= 1
        for bit, q in _PUSHES[mod].items():
            if draw(st.booleans()):
                bits[bit] = True
                tokens[q] += 1
        insns.append(_make(kind, draw(st.integers(1, 300)), bits))
    return insns + [Finish()]


@settings(**SETTINGS)
@given(prog=programs(), cfg=st.sampled_from(["tiny", "default", "int8"]))
def test_total_bounds(prog, cfg):
    r = cycle_report(prog, CFG[cfg])
    assert all(r.total_cycles >= b for b in r.busy_cycles.values())
    assert r.total_cycles <= sum(r.busy_cycles.values())  # at worst fully serialized
    assert r.total_cycles == max(r.finish)


@settings(**SETTINGS)
@given(prog=programs(), drop=st.lists(st.integers(0, 100), max_size=6),
       cfg=st.sampled_from(["tiny", "default"]))
def test_removing_pops_never_increases_cycles(prog, drop, cfg):
    cfg = CFG[cfg]
    pops = [(i, b) for i, insn in enumerate(prog) for b in ("pop_prev", "pop_next")
            if getattr(insn, b)]
    fewer = list(prog)
    for k in drop:
        if pops:
            i, b = pops[k % len(pops)]
            fewer[i] = dataclasses.replace(fewer[i], **{b: False})
    assert cycle_report(fewer, cfg).total_cycles <= cycle_report(prog, cfg).total_cycles


@settings(**SETTINGS)
@given(prog=programs(), cfg=st.sampled_from(["tiny", "default", "int8"]))
def test_doubling_the_dram_bus_never_increases_cycles(prog, cfg):
    cfg = CFG[cfg]
    wide = dataclasses.replace(cfg, dram_bus_bytes=cfg.dram_bus_bytes * 2)
    assert cycle_report(prog, wide).total_cycles <= cycle_report(prog, cfg).total_cycles


@settings(**SETTINGS)
@given(prog=programs())
def test_every_pop_starts_after_its_matching_push(prog):
    r = cycle_report(prog, DEFAULT)
    pushes = {q: [] for q in ("l2c", "c2l", "c2s", "s2c")}
    pops = {q: [] for q in pushes}
    for i, insn in enumerate(prog[:-1]):
        mod = module_of(insn)
        for bit, q in _POPS[mod].items():
            if getattr(insn, bit):
                pops[q].append(i)
        for bit, q in _PUSHES[mod].items():
            if getattr(insn, bit):
                pushes[q].append(i)
    for q in pops:
        for k, i in enumerate(pops[q]):
            assert r.start[i] >= r.finish[pushes[q][k]]


# ------------------------------------------------------------------ vs the functional simulator

def _check_work_matches_fsim(prog, cfg):
    sim = simulate(prog, cfg)
    work = program_work(prog, cfg)
    for s, w in zip(sim.stats, work, strict=True):
        assert (s.module, s.opcode) == (w.module, w.opcode.name)
        assert s.dram_read_bytes == w.dram_read_bytes
        assert s.dram_write_bytes == w.dram_write_bytes
        assert s.pad_elems == w.pad_elems
        assert s.uop_execs == w.uop_execs
        assert s.macs == w.accumulations
        assert s.alu_elems == w.alu_elems
    r = cycle_report(prog, cfg)
    assert r.leftover_tokens == sim.leftover_tokens
    totals = sim.totals()
    assert r.dram_bytes == totals["dram_read_bytes"] + totals["dram_write_bytes"]
    return r


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=st.sampled_from(["tiny", "default", "tiny_tact"]), m=st.integers(1, 5),
       k=st.integers(1, 70), n=st.integers(1, 70), tile=st.integers(1, 3),
       epilogue=st.sampled_from(["acc", "requant", "thresh"]), dual=st.booleans(),
       skip=st.booleans(), seed=st.integers(0, 2**31))
def test_static_counts_match_the_simulator_dense(cfg, m, k, n, tile, epilogue, dual, skip, seed):
    cfg = CFG[cfg]
    rng = np.random.default_rng(seed)
    lo = -1 if cfg.act_bits == 2 else -127
    x = rng.integers(lo, -lo + 1, (m, k))
    w = rng.choice([-1, 0, 0, 0, 1], size=(n, k)).astype(np.int8)
    if epilogue == "thresh" and not cfg.ternary_act:
        epilogue = "requant"
    params = dict(mult_p=np.full(n, 1 << 14), mult_n=np.full(n, 1 << 14), shift=np.full(n, 24))
    prog, _ = dense_program(cfg, x, w, epilogue=epilogue, params=params, dual=dual,
                            skip_zero=skip, tile_blocks=tile)
    _check_work_matches_fsim(prog, cfg)


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_static_counts_match_the_simulator_conv(padding):
    cfg = CFG["tiny"]
    rng = np.random.default_rng(padding)
    x = rng.integers(-127, 128, (5, 5, 6))
    w = rng.integers(-1, 2, (6, 5, 3, 3)).astype(np.int8)
    prog, _ = conv_program(cfg, x, w, padding=padding)
    r = _check_work_matches_fsim(prog, cfg)
    assert r.total_cycles > 0


def _conv_spec(c, o, hw_, k, stride, padding, rng, zero_blocks=0.0, block=(16, 16), dual=False):
    from vta_ext.compiler.layer import LayerSpec
    w = rng.choice([-1, 0, 1], size=(o, c, k, k)).astype(np.int8)
    bo, bi = block
    for ob in range(-(-o // bo)):
        for cb in range(-(-c // bi)):
            if rng.random() < zero_blocks:
                w[ob * bo:(ob + 1) * bo, cb * bi:(cb + 1) * bi] = 0
    mult_n = np.full(o, (1 << 14) + 1 if dual else 1 << 14, np.int64)
    return LayerSpec(name="conv", kind="conv2d", input_shape=(1, c, hw_, hw_), weight=w,
                     bias=np.zeros(o, np.int64), mult_p=np.full(o, 1 << 14, np.int64),
                     mult_n=mult_n, epilogue="requantize", shift=np.full(o, 24, np.int64),
                     stride=(stride, stride), padding=(padding, padding))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=st.sampled_from(["tiny", "default"]), c=st.integers(1, 20), o=st.integers(1, 20),
       size=st.integers(3, 7), k=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
       zero=st.sampled_from([0.0, 0.5]), dual=st.booleans(), seed=st.integers(0, 2**31))
def test_static_counts_match_the_simulator_compiled_conv(cfg, c, o, size, k, stride, zero, dual,
                                                         seed):
    from vta_ext.compiler.lower import compile_layer
    cfg = CFG[cfg]
    rng = np.random.default_rng(seed)
    spec = _conv_spec(c, o, size, k, stride, k // 2, rng, zero, (cfg.block_out, cfg.block_in),
                      dual)
    cl = compile_layer(spec, cfg)
    prog = cl.bind(rng.integers(-127, 128, spec.input_shape))
    _check_work_matches_fsim(prog, cfg)


@pytest.mark.parametrize("kind", ["dequantize", "residual"])
@pytest.mark.parametrize("dual", [False, True])
def test_static_counts_match_the_simulator_v16_layers(kind, dual):
    """Float-output layers (STORE ACC, no ALU) and fused residual layers (LOAD OUT, REQUANT
    residual), compiled: the static counts equal the simulator's."""
    from dataclasses import replace

    from vta_ext.compiler.lower import compile_layer
    cfg = CFG["tiny"]
    rng = np.random.default_rng(3)
    spec = _conv_spec(6, 9, 6, 3, 1, 1, rng, dual=dual, block=(cfg.block_out, cfg.block_in))
    if kind == "dequantize":
        spec = replace(spec, epilogue="dequantize", dq_scale=np.ones(9, np.float32),
                       dq_bias=np.zeros(9, np.float32))
        r = None
    else:
        spec = replace(spec, residual_mult=np.full(9, 1 << 20, np.int64))
        r = rng.integers(-128, 128, spec.output_shape())
    prog = compile_layer(spec, cfg).bind(rng.integers(-127, 128, spec.input_shape), r)
    _check_work_matches_fsim(prog, cfg)


def test_v16_instructions_cost_by_hand():
    """LOAD OUT: int8 DRAM bytes, int32 SRAM entries; STORE ACC: 4x the bytes of STORE OUT;
    REQUANT residual: one more accumulator read and a multiply + 64-bit add per element."""
    from vta_ext.sim.energy import load_table
    from vta_ext.sim.cycles import insn_cycles
    from vta_ext.sim.work import insn_work

    cfg = CFG["default"]  # batch 1, block_out 16: out block 16 B, acc block 64 B
    load = insn_work(0, Load(mem=MemType.OUT, x_size=3, x_stride=3), cfg)
    assert load.module == "compute" and load.dram_read_bytes == 3 * 16
    assert load.sram_write == {"acc": 3 * 64}
    assert insn_cycles(load, cfg) == L + 6
    out = insn_work(0, Store(mem=MemType.OUT, x_size=5, x_stride=5), cfg)
    acc = insn_work(0, Store(mem=MemType.ACC, x_size=5, x_stride=5), cfg)
    assert (out.dram_write_bytes, acc.dram_write_bytes) == (80, 320)
    plain = insn_work(0, Alu(op=AluOp.REQUANT, use_imm=True, iter_out=2), cfg)
    fused = insn_work(0, Alu(op=AluOp.REQUANT, use_imm=True, iter_out=2, residual=True), cfg)
    assert fused.sram_read["acc"] - plain.sram_read["acc"] == 2 * 64
    t = load_table()
    assert t.alu_elem_pj(AluOp.REQUANT, False, True) - t.alu_elem_pj(AluOp.REQUANT, False) == \
        pytest.approx(t.mult32 + 2 * t.add32)
