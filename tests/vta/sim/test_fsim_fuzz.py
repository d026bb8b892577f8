"""Random instruction streams on random DRAM: the simulator either runs them or raises a
SimulatorError naming an instruction; never another exception, never a hang."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_ternary.errors import SimulatorError
from vta_ext import HwConfig, isa, layout
from vta_ext.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store
from vta_ext.program import Program
from vta_ext.sim.fsim import simulate

CFGS = {n: HwConfig.load(n) for n in ("tiny", "tiny_tact", "int8")}


def _small(hi):
    return st.integers(0, hi)


def _rarely(strategy, default):
    return st.one_of(st.just(default), st.just(default), st.just(default), strategy)


rare = _rarely(st.just(True), False)
deps = dict(pop_prev=rare, pop_next=rare, push_prev=rare, push_next=rare)
mem = dict(sram_base=_small(40), dram_base=_small(40), y_size=st.integers(1, 5),
           x_size=st.integers(1, 9), x_stride=_small(12), y_pad_0=_rarely(_small(2), 0),
           y_pad_1=_rarely(_small(2), 0), x_pad_0=_rarely(_small(2), 0),
           x_pad_1=_rarely(_small(2), 0), pad_value=_rarely(st.integers(-2, 2), 0), **deps)
loop = dict(uop_bgn=_small(6), uop_end=st.integers(1, 10), iter_out=st.integers(1, 4),
            iter_in=st.integers(1, 4),
            dst_factor_out=_small(5), dst_factor_in=_small(5), src_factor_out=_small(5),
            src_factor_in=_small(5), **deps)
insns = st.one_of(
    st.builds(Load, mem=st.sampled_from(list(MemType)), **mem),
    st.builds(Store, mem=st.sampled_from(list(MemType)), **mem),
    st.builds(Gemm, wgt_factor_out=_small(3), wgt_factor_in=_small(3), reset=st.booleans(),
              dual=st.booleans(), **loop),
    st.builds(Alu, op=st.sampled_from(list(AluOp)), use_imm=st.booleans(),
              imm=st.integers(-300, 300), dual=st.booleans(), **loop),
)


def _dram(rng, cfg):
    """Mostly valid content: uops with small indices, legal codes, sane parameters."""
    d = Program().dram
    d.add("uop", isa.encode_uops(np.r_[0, rng.integers(0, 30, 63)], rng.integers(0, 30, 64),
                                 rng.integers(0, 6, 64)).view(np.uint8), align=512)
    d.add("inp", layout.pack_inp(rng.integers(-1, 2, (64, cfg.batch, cfg.block_in)), cfg), align=512)
    d.add("wgt", layout.pack_wgt(rng.integers(-1, 2, (64, cfg.block_out, cfg.block_in)), cfg), align=512)
    d.add("par", layout.pack_par(cfg, mult_p=rng.integers(0, 2**15, 64 * cfg.block_out),
                                 mult_n=2**14, shift=rng.integers(0, 48, 64 * cfg.block_out),
                                 t_lo=-5, t_hi=5), align=512)
    d.data[rng.integers(0, d.data.size, 3)] = rng.integers(0, 256, 3)  # a few corrupt bytes
    return d


def _prologue(cfg, dram):
    """Fill the buffers (so random instructions get past never-written reads)."""
    at = {n: r.offset for n, r in dram.regions.items()}
    par = min(cfg.par_depth, 8)
    return [
        Load(mem=MemType.INP, dram_base=at["inp"] // cfg.inp_block_bytes, x_size=64, x_stride=64),
        # PAR is a load-module LOAD (v1.4): before the push the first GEMM pops
        Load(mem=MemType.PAR, dram_base=at["par"] // cfg.par_block_bytes, x_size=par, x_stride=par),
        Load(mem=MemType.WGT, dram_base=at["wgt"] // cfg.wgt_block_bytes, x_size=64, x_stride=64,
             push_next=True),
        Load(mem=MemType.UOP, dram_base=at["uop"] // 8, x_size=64, x_stride=64),
        Gemm(uop_bgn=0, uop_end=1, iter_out=64, dst_factor_out=1, reset=True, pop_prev=True),
    ]


def _legal_tokens(insn, keep_pops):
    """Token bits the instruction's module has (so most programs get past the structure
    check); pops only sometimes (else most programs deadlock at once)."""
    from vta_ext.sim.fsim import module_of

    mod = module_of(insn)
    bits = {}
    if mod == "load":
        bits.update(pop_prev=False, push_prev=False)
    if mod == "store":
        bits.update(pop_next=False, push_next=False)
    if not keep_pops:
        bits.update(pop_prev=False, pop_next=False)
    return isa.replace(insn, **bits)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=st.sampled_from(list(CFGS)), body=st.lists(insns, max_size=12),
       finish=st.booleans(), legal=st.integers(0, 9), seed=st.integers(0, 2**31))
def test_random_programs_run_or_trap_cleanly(cfg, body, finish, legal, seed):
    cfg = CFGS[cfg]
    if legal:  # 9 in 10 programs: only tokens their modules have, rarely a pop
        body = [_legal_tokens(i, keep_pops=legal == 1) for i in body]
    rng = np.random.default_rng(seed)
    dram = _dram(rng, cfg)
    prog = Program(insns=_prologue(cfg, dram) + body + ([Finish()] if finish else []), dram=dram)
    before = prog.dram.data.copy()
    try:
        result = simulate(prog, cfg)
    except SimulatorError as err:
        assert err.index is None or 0 <= err.index <= len(prog.insns)
    else:
        assert len(result.stats) == len(prog.insns)
    assert (prog.dram.data == before).all()
