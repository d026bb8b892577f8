"""ALU ``overlap`` (docs/isa.md, ISA v1.3): REQUANT/THRESH on the compute module's ALU unit
while the module issues the next instructions. Hand-built two-tile programs: results equal
the integer reference; a later compute instruction touching what the overlapped ALU uses
without ordering is a race trap; the cycle model lets the next GEMM start one cycle after
the ALU and makes the next ALU and FINISH wait for it."""

import numpy as np
import pytest

from tvm_ternary.errors import SimulatorError
from tvm_ternary.quant import reference as ref
from vta_ext import HwConfig, isa, layout
from vta_ext.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store
from vta_ext.sim.cycles import ALU_PIPELINE_CYCLES as A, GEMM_PIPELINE_CYCLES as G, \
    OVERLAP_ISSUE_CYCLES, cycle_report
from vta_ext.sim.fsim import simulate

from .builders import Builder

TINY = HwConfig.load("tiny")
SHIFT = 6


def _two_tiles(rng, overlap=True, second_dst=2, reload_uops_at=None, reload_par=False):
    """Tile 0 accumulates acc[0] and requantizes it into acc[1] (overlap), STORE acc[1];
    tile 1 accumulates acc[second_dst] and requantizes it into acc[3], STORE acc[3]."""
    cfg = TINY
    bld = Builder(cfg)
    x = rng.integers(-128, 128, (2, cfg.batch, cfg.block_in))
    w = rng.integers(-1, 2, (2, cfg.block_out, cfg.block_in)).astype(np.int8)
    mult = rng.integers(1, 2**8, cfg.block_out)
    bias = rng.integers(-2**10, 2**10, cfg.block_out)
    inp = bld.region("inp", layout.pack_inp(x, cfg), MemType.INP)
    wgt = bld.region("wgt", layout.pack_wgt(w, cfg), MemType.WGT)
    par = bld.region("par", layout.pack_par(cfg, mult_p=mult, mult_n=mult,
                                            shift=np.full(cfg.block_out, SHIFT), bias=bias),
                     MemType.PAR)
    out = bld.output("out", 2, MemType.OUT)
    words = np.concatenate([isa.encode_uops([0], [0], [0], [True]),             # GEMM tile 0
                            isa.encode_uops([1], [0], [0]),                     # ALU tile 0
                            isa.encode_uops([second_dst], [1], [1], [True]),    # GEMM tile 1
                            isa.encode_uops([3], [second_dst], [0])])           # ALU tile 1
    uop = bld.region("uop", words.view(np.uint8), MemType.UOP)
    requant = dict(op=AluOp.REQUANT, use_imm=True, imm=isa.alu_clamp_imm(-128, 127))
    bld.emit(Load(mem=MemType.INP, dram_base=inp, x_size=2, x_stride=2))
    bld.emit(Load(mem=MemType.PAR, dram_base=par, x_size=1, x_stride=1))  # load module
    bld.emit(Load(mem=MemType.WGT, dram_base=wgt, x_size=2, x_stride=2, push_next=True))
    bld.emit(Load(mem=MemType.UOP, dram_base=uop, x_size=4, x_stride=4))
    bld.emit(Gemm(uop_bgn=0, uop_end=1, pop_prev=True))
    bld.emit(Alu(uop_bgn=1, uop_end=2, overlap=overlap, push_next=True, **requant))
    if reload_uops_at is not None:  # rewrites the running ALU's micro-op (same word)
        bld.emit(Load(mem=MemType.UOP, sram_base=reload_uops_at, dram_base=uop + reload_uops_at,
                      x_size=1, x_stride=1))
    if reload_par:
        bld.emit(Load(mem=MemType.PAR, dram_base=par, x_size=1, x_stride=1))
    bld.emit(Gemm(uop_bgn=2, uop_end=3))
    bld.emit(Alu(uop_bgn=3, uop_end=4, overlap=overlap, push_next=True, **requant))
    bld.emit(Store(mem=MemType.OUT, sram_base=1, dram_base=out, x_size=1, x_stride=1,
                   pop_prev=True))
    bld.emit(Store(mem=MemType.OUT, sram_base=3, dram_base=out + 1, x_size=1, x_stride=1,
                   pop_prev=True))
    bld.emit(Finish())
    acc = [x[t].astype(np.int64) @ w[t].astype(np.int64).T for t in range(2)]
    want = [ref.requantize(ref.scaled_acc(a, np.zeros_like(a), bias, mult, mult),
                           np.full(TINY.block_out, SHIFT), -128, 127)
            for a in acc]
    return bld.prog, np.stack(want)


def _out(result):
    return layout.unpack_out(result.dram.read("out"), TINY).reshape(2, TINY.batch, -1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("overlap", [True, False])
def test_overlapped_epilogue_is_exact(seed, overlap):
    prog, want = _two_tiles(np.random.default_rng(seed), overlap=overlap)
    assert np.array_equal(_out(simulate(prog, TINY)), want)


def _race(prog, index, *words):
    with pytest.raises(SimulatorError) as err:
        simulate(prog, TINY)
    assert err.value.index == index, str(err.value)
    for w in words:
        assert w in str(err.value)


def _nth(prog, cls, n=0):
    return [i for i, s in enumerate(prog.insns) if isinstance(s, cls)][n]


def test_next_gemm_overwriting_the_alu_source_races():
    # tile 1 accumulates into acc[0], which tile 0's overlapped ALU may still be reading
    prog, _ = _two_tiles(np.random.default_rng(0), second_dst=0)
    _race(prog, _nth(prog, Gemm, 1), "race", "acc[0]")
    prog, _ = _two_tiles(np.random.default_rng(0), second_dst=0, overlap=False)
    simulate(prog, TINY)  # without overlap the compute module runs in order: no race


def test_uop_reload_under_a_running_alu_races():
    prog, _ = _two_tiles(np.random.default_rng(0), reload_uops_at=1)
    _race(prog, _nth(prog, Load, 4), "race", "uop[1]")
    prog, _ = _two_tiles(np.random.default_rng(0), reload_uops_at=2)  # not the ALU's: fine
    simulate(prog, TINY)


def test_par_reload_under_a_running_alu_races():
    prog, _ = _two_tiles(np.random.default_rng(0), reload_par=True)
    _race(prog, _nth(prog, Load, 4), "race", "par[0]")


def test_overlap_only_for_epilogue_ops():
    prog, _ = _two_tiles(np.random.default_rng(0))
    i = _nth(prog, Alu)
    prog.insns[i] = isa.replace(prog.insns[i], op=AluOp.MOV, use_imm=False, imm=0)
    _race(prog, i, "ALU MOV: overlap applies to REQUANT and THRESH only")


def test_cycle_model_overlaps_the_alu_with_the_next_gemm():
    prog, _ = _two_tiles(np.random.default_rng(0))
    r = cycle_report(prog.insns, TINY)
    alu0, gemm1, alu1 = _nth(prog, Alu), _nth(prog, Gemm, 1), _nth(prog, Alu, 1)
    fin = len(prog.insns) - 1
    assert r.finish[alu0] - r.start[alu0] == A + 1
    assert r.start[gemm1] == r.start[alu0] + OVERLAP_ISSUE_CYCLES  # does not wait for the ALU
    assert r.finish[gemm1] == r.start[gemm1] + G + 1
    assert r.start[alu1] == max(r.finish[gemm1], r.finish[alu0])  # one ALU unit
    assert r.start[fin] >= r.finish[alu1]
    assert r.busy_cycles["epilogue"] == 2 * (A + 1)
    serial, _ = _two_tiles(np.random.default_rng(0), overlap=False)
    s = cycle_report(serial.insns, TINY)
    assert s.start[_nth(serial, Gemm, 1)] == s.finish[_nth(serial, Alu)]
    assert s.busy_cycles["epilogue"] == 0
    # compute finishes earlier (here the STOREs of 32-cycle DMA latency bound the total)
    assert r.finish[alu1] < s.finish[_nth(serial, Alu, 1)]
    assert r.total_cycles <= s.total_cycles
