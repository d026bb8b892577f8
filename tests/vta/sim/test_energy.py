"""Energy model: hand-computed breakdowns from the cited 45 nm table (Horowitz, ISSCC
2014), no multiplier energy with ternary operands, and int8 vs ternary on one layer."""

import dataclasses
import json

import numpy as np
import pytest

from tvm_ternary.errors import PerfModelError
from vta_ext import HwConfig
from vta_ext.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store
from vta_ext.sim.energy import TABLE_PATH, energy_report, load_table
from vta_ext.sim.perf import estimate

from .builders import dense_program

# The cited numbers, typed here from the paper's table (not read from the code):
ADD32, MULT8, MULT32 = 0.1, 0.2, 3.1  # pJ
SRAM_8KB, SRAM_32KB = 10.0 / 8, 20.0 / 8  # pJ per byte (64-bit access / 8 bytes)
DRAM = 1300.0 / 8  # pJ per byte (low end of 1.3-2.6 nJ per 64-bit access)

# tiny's 4 x 4 blocks, with buffers sized at the table's cited capacities (8 KB, 32 KB)
# so that every SRAM energy per byte is a cited point: inp 4 B, wgt 4 B (ternary) or 16 B
# (int8), acc 16 B, par 128 B per block.
TERNARY = dataclasses.replace(HwConfig.load("tiny"), name="tiny_cited", uop_buffer_bytes=8192,
                              inp_buffer_bytes=8192, wgt_buffer_bytes=8192,
                              acc_buffer_bytes=32768, par_buffer_bytes=8192)
INT8 = dataclasses.replace(TERNARY, name="tiny_cited_int8", wgt_bits=8, dual_scale=False)


def _one_block_program():
    def load(mem):
        return Load(mem=mem, sram_base=0, dram_base=0, y_size=1, x_size=1, x_stride=1)
    return [load(MemType.UOP), load(MemType.INP), load(MemType.WGT),
            Gemm(uop_bgn=0, uop_end=1, reset=True), Gemm(uop_bgn=0, uop_end=1),
            Store(mem=MemType.ACC, sram_base=0, dram_base=0, y_size=1, x_size=1, x_stride=1),
            Finish()]


def test_one_block_gemm_ternary_by_hand():
    e = energy_report(_one_block_program(), TERNARY)
    # DRAM: uop 8 + inp 4 + wgt 4 bytes read, one 16-byte acc block written
    assert e["dram_read_pj"] == pytest.approx(16 * DRAM)
    assert e["dram_write_pj"] == pytest.approx(16 * DRAM)
    # SRAM: uop written 8, read by both GEMMs 8 + 8; inp and wgt written 4 and read 4;
    # acc: reset writes 16, GEMM reads 16 and writes 16, STORE reads 16.
    assert e["sram_pj_by_buffer"] == pytest.approx(
        {"uop": 24 * SRAM_8KB, "inp": 8 * SRAM_8KB, "wgt": 8 * SRAM_8KB,
         "acc": 64 * SRAM_32KB, "par": 0.0})
    # 16 ternary MACs: 16 adds at 32 bit, no multiply
    assert e["gemm_pj"] == pytest.approx(16 * ADD32)
    assert e["alu_pj"] == 0
    assert e["total_pj"] == pytest.approx(32 * DRAM + 40 * SRAM_8KB + 64 * SRAM_32KB + 1.6)


def test_one_block_gemm_int8_by_hand():
    e = energy_report(_one_block_program(), INT8)
    assert e["gemm_pj"] == pytest.approx(16 * (MULT8 + ADD32))
    # an int8 weight block is 16 bytes instead of 4: 12 more DRAM bytes, 24 more SRAM bytes
    assert e["dram_read_pj"] == pytest.approx(28 * DRAM)
    assert e["sram_pj_by_buffer"]["wgt"] == pytest.approx(32 * SRAM_8KB)


def test_ternary_gemm_uses_no_multiply_energy(tmp_path):
    table = json.loads(TABLE_PATH.read_text())
    table["entries"]["mult8_pj"]["value"] = 1e6  # a multiply would now dominate everything
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    heavy = load_table(path)
    prog = _one_block_program()
    assert energy_report(prog, TERNARY, heavy) == energy_report(prog, TERNARY)
    tact = dataclasses.replace(TERNARY, wgt_bits=8, act_bits=2, ternary_act=True,
                               dual_scale=False)  # ternary activations x int8 weights
    assert energy_report(prog, tact, heavy)["gemm_pj"] == pytest.approx(16 * ADD32)
    assert energy_report(prog, INT8, heavy)["gemm_pj"] == pytest.approx(16 * (1e6 + ADD32))


def test_alu_requant_and_dual_by_hand():
    # 3 iterations x 4 elements; REQUANT per element: one 32-bit multiply and six 32-bit
    # adds (64-bit bias add, 64-bit rounding add, two clamp compares); dual adds Mn*acc_n
    # and a 64-bit subtraction (one multiply, two adds).
    single = Alu(op=AluOp.REQUANT, uop_bgn=0, uop_end=1, iter_out=3, use_imm=True)
    dual = dataclasses.replace(single, dual=True)
    e1 = energy_report([single, Finish()], TERNARY)
    e2 = energy_report([dual, Finish()], TERNARY)
    assert e1["alu_pj"] == pytest.approx(12 * (MULT32 + 6 * ADD32))
    assert e2["alu_pj"] == pytest.approx(12 * (2 * MULT32 + 8 * ADD32))
    # SRAM per iteration: uop 8 B, par 4 x 32 = 128 B, acc read 16 (dual: 32) + write 16
    assert e1["sram_pj_by_buffer"]["par"] == pytest.approx(3 * 128 * SRAM_8KB)
    assert e1["sram_pj_by_buffer"]["acc"] == pytest.approx(3 * 32 * SRAM_32KB)
    assert e2["sram_pj_by_buffer"]["acc"] == pytest.approx(3 * 48 * SRAM_32KB)


def test_alu_simple_ops_by_hand():
    def alu(op, **kw):
        return energy_report([Alu(op=op, uop_bgn=0, uop_end=1, iter_out=2, **kw), Finish()],
                             TERNARY)
    assert alu(AluOp.MAX, use_imm=True)["alu_pj"] == pytest.approx(8 * ADD32)
    assert alu(AluOp.MUL)["alu_pj"] == pytest.approx(8 * MULT32)
    assert alu(AluOp.MOV)["alu_pj"] == 0
    # ADD reads acc[d] and acc[s]: 2 x 16 B read + 16 B written per iteration
    assert alu(AluOp.ADD)["sram_pj_by_buffer"]["acc"] == pytest.approx(2 * 48 * SRAM_32KB)


def test_sram_energy_between_cited_capacities_is_log_log_interpolated():
    t = load_table()
    assert t.sram_pj_per_byte(8 << 10) == pytest.approx(SRAM_8KB)
    assert t.sram_pj_per_byte(32 << 10) == pytest.approx(SRAM_32KB)
    assert t.sram_pj_per_byte(1 << 20) == pytest.approx(100 / 8)
    # 256 KB is 3/5 of the way from 32 KB to 1 MB in log capacity: 20 * 5**(3/5) per access
    assert t.sram_pj_per_byte(256 << 10) == pytest.approx(20 * 5 ** 0.6 / 8)
    # below 8 KB the 8-32 KB slope (energy ~ sqrt(capacity)) continues: 2 KB -> 10 / 2
    assert t.sram_pj_per_byte(2 << 10) == pytest.approx(5 / 8)


def test_bad_energy_table_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"entries": {"add8_pj": {"value": 0.03}}}')
    with pytest.raises(PerfModelError, match="bad.json.*energy table"):
        load_table(path)
    with pytest.raises(PerfModelError, match="missing.json"):
        load_table(tmp_path / "missing.json")


def test_int8_vs_ternary_on_one_layer():
    """A ResNet-18-style 3x3 conv as a GEMM (K = 64 * 9 = 576 inputs, N = 64 outputs, 16
    output pixels), the same program shape on `default` (ternary weights) and `int8`.

    By hand: weight DRAM bytes are exactly 4x fewer (2 vs 8 bits), and the GEMM energy
    per MAC is add32 = 0.1 pJ vs mult8 + add32 = 0.3 pJ, exactly 3x. Everything else
    (inputs, outputs, parameters, micro-ops, accumulators) is identical, so the total ratio
    lies between 1 and 4 and is set by how much of the energy is weight traffic.
    """
    rng = np.random.default_rng(7)
    x = rng.integers(-127, 128, (16, 576))
    w = rng.integers(-1, 2, (64, 576)).astype(np.int8)
    params = dict(mult_p=np.full(64, 1 << 14), shift=np.full(64, 24))
    reports = {}
    for name in ("default", "int8"):
        cfg = HwConfig.load(name)
        prog, _ = dense_program(cfg, x, w, epilogue="requant", params=params, tile_blocks=2)
        reports[name] = estimate(prog, cfg, useful_macs=16 * 576 * 64)
    t, i = reports["default"], reports["int8"]
    assert i.cycles.dram_read_bytes["wgt"] == 4 * t.cycles.dram_read_bytes["wgt"]
    for mem in ("inp", "uop", "par"):
        assert i.cycles.dram_read_bytes[mem] == t.cycles.dram_read_bytes[mem]
    assert i.energy["gemm_pj"] == pytest.approx(3 * t.energy["gemm_pj"])
    assert i.energy["alu_pj"] == pytest.approx(t.energy["alu_pj"])
    ratio = i.energy["total_pj"] / t.energy["total_pj"]
    assert 1 < ratio < 4
    # the weight stream costs 4x the DRAM time too: the ternary layer is never slower
    assert t.cycles.total_cycles <= i.cycles.total_cycles
