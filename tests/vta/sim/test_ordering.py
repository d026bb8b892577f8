"""Race detection: cross-module accesses that no token chain orders are traps."""

import numpy as np
import pytest

from tvm_ternary.errors import SimulatorError
from vta_ext import HwConfig, isa
from vta_ext.isa import Finish, Gemm, Load, MemType, Store
from vta_ext.sim.fsim import simulate

from .builders import dense_program

TINY = HwConfig.load("tiny")


def _prog(tile_blocks=None):
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (2, 8))
    w = rng.integers(-1, 2, (8, 8)).astype(np.int8)
    return dense_program(TINY, x, w, tile_blocks=tile_blocks)[0]


def _where(prog, cls, mem=None, nth=0):
    return [i for i, s in enumerate(prog.insns)
            if isinstance(s, cls) and (mem is None or s.mem == mem)][nth]


def _set(prog, i, **bits):
    prog.insns[i] = isa.replace(prog.insns[i], **bits)


def _race(prog, index, *words):
    with pytest.raises(SimulatorError) as err:
        simulate(prog, TINY)
    assert err.value.index == index and "race" in str(err.value), str(err.value)
    for w in words:
        assert w in str(err.value)


def test_correct_tokens_have_no_race():
    simulate(_prog(), TINY)
    simulate(_prog(tile_blocks=1), TINY)


def test_compute_reads_weights_before_a_token_orders_the_load():
    prog = _prog()
    gemm = _where(prog, Gemm, nth=1)
    _set(prog, gemm, pop_prev=False)
    _race(prog, gemm, "GEMM", "reads", "written by instruction")


def test_load_overwrites_weights_compute_may_still_read():
    prog = _prog(tile_blocks=1)
    second_wgt = _where(prog, Load, MemType.WGT, nth=1)
    _set(prog, second_wgt, pop_next=False)
    first_gemm = _where(prog, Gemm, nth=1)
    _race(prog, second_wgt, "LOAD WGT overwrites wgt[0]", f"instruction {first_gemm} may still read")


def test_store_reads_accumulators_without_token():
    prog = _prog()
    store = _where(prog, Store)
    _set(prog, store, pop_prev=False)
    _race(prog, store, "STORE ACC reads acc[0]")


def test_compute_overwrites_accumulators_the_store_may_still_read():
    prog = _prog(tile_blocks=1)
    reset = _where(prog, Gemm, nth=2)  # the second tile's reset GEMM
    assert prog.insns[reset].reset and prog.insns[reset].pop_next
    _set(prog, reset, pop_next=False)
    _set(prog, len(prog.insns) - 1, pop_next=False)
    _race(prog, reset, "overwrites acc[0]", "may still read")


def _read_back(prog, ordered):
    """Append a LOAD INP of the stored output, ordered by store -> compute -> load or not."""
    out = prog.dram.regions["out"]
    assert TINY.acc_block_bytes % TINY.inp_block_bytes == 0
    base = out.offset // TINY.inp_block_bytes
    finish = prog.insns.pop()
    if ordered:
        # a compute instruction takes the store's token and hands one to the load module
        prog.insns.append(Load(mem=MemType.UOP, sram_base=0, dram_base=prog.dram.regions["uop"].offset // 8,
                               pop_next=True, push_prev=True))
    prog.insns.append(Load(mem=MemType.INP, sram_base=0, dram_base=base, pop_next=ordered))
    prog.insns.append(isa.replace(finish, pop_next=False))
    return len(prog.insns) - 2


def test_load_reads_dram_a_store_wrote_only_after_a_token_chain():
    prog = _prog()
    _read_back(prog, ordered=True)
    simulate(prog, TINY)
    prog = _prog()
    i = _read_back(prog, ordered=False)
    _race(prog, i, "LOAD INP reads DRAM byte", "stored by instruction")
