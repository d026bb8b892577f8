"""Every simulator trap: a typed SimulatorError naming the instruction and the fault."""

import numpy as np
import pytest

from tvm_ternary.errors import SimulatorError
from vta_ext import HwConfig, isa, layout
from vta_ext.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store
from vta_ext.sim.fsim import simulate

from .builders import Builder, dense_program

TINY = HwConfig.load("tiny")
INT8 = HwConfig.load("int8")
TACT = HwConfig.load("tiny_tact")


def _dense(cfg=TINY, **kw):
    rng = np.random.default_rng(0)
    x = rng.integers(-1, 2, (2, 2 * cfg.block_in)) if cfg.act_bits == 2 else \
        rng.integers(-3, 4, (2, 2 * cfg.block_in))
    w = rng.integers(-1, 2, (2 * cfg.block_out, 2 * cfg.block_in)).astype(np.int8)
    prog, _ = dense_program(cfg, x, w, **kw)
    return prog


def _index(prog, cls, mem=None, nth=0):
    hits = [i for i, s in enumerate(prog.insns)
            if isinstance(s, cls) and (mem is None or s.mem == mem)]
    return hits[nth]


def _trap(prog, cfg, index, *words):
    before = prog.dram.data.copy() if hasattr(prog.dram, "data") else None
    with pytest.raises(SimulatorError) as err:
        simulate(prog, cfg)
    assert err.value.index == index, str(err.value)
    assert str(err.value).startswith("program" if index is None else f"instruction {index}:")
    for w in words:
        assert w in str(err.value), str(err.value)
    if before is not None:
        assert (prog.dram.data == before).all()


def _mutate(prog, i, **changes):
    prog.insns[i] = isa.replace(prog.insns[i], **changes)
    return i


def test_base_program_is_valid():
    simulate(_dense(), TINY)


def test_dram_read_out_of_range():
    prog = _dense()
    i = _mutate(prog, _index(prog, Load, MemType.INP), dram_base=10**6)
    _trap(prog, TINY, i, "LOAD INP", "beyond the image")


def test_dram_write_out_of_range():
    prog = _dense()
    i = _mutate(prog, _index(prog, Store), dram_base=10**6)
    _trap(prog, TINY, i, "STORE ACC", "beyond the image")


def test_sram_overflow_on_load():
    prog = _dense()
    i = _mutate(prog, _index(prog, Load, MemType.WGT), sram_base=TINY.wgt_depth - 1)
    _trap(prog, TINY, i, "LOAD WGT", "beyond the buffer", f"depth {TINY.wgt_depth}")


def test_gemm_index_out_of_range_through_loop_factor():
    prog = _dense()
    i = _mutate(prog, _index(prog, Gemm, nth=1), src_factor_out=TINY.inp_depth)
    _trap(prog, TINY, i, "GEMM src (inp)", "outside the inp buffer")


def test_store_reads_beyond_acc():
    prog = _dense()
    i = _mutate(prog, _index(prog, Store), sram_base=TINY.acc_depth - 1)
    _trap(prog, TINY, i, "STORE ACC", "beyond the buffer")


def test_malformed_word_in_byte_stream():
    prog = _dense(epilogue="requant", params=dict(mult_p=[2**14] * 8, shift=[15] * 8))
    i = _index(prog, Alu)  # ALU bits 127:125 are reserved (LOAD/STORE and GEMM have none left)
    data = bytearray(prog.stream())
    data[16 * i + 15] |= 0x80
    prog.insns = bytes(data)
    _trap(prog, TINY, i, "malformed instruction", "reserved bits")


def test_unencodable_instruction_object():
    prog = _dense()
    i = _mutate(prog, 0, x_size=2**16)
    _trap(prog, TINY, i, "malformed instruction", "x_size")


def test_truncated_stream():
    prog = _dense()
    prog.insns = prog.stream()[:-3]
    _trap(prog, TINY, None, "not a whole number")


def test_missing_finish_and_instruction_after_finish():
    prog = _dense()
    prog.insns = prog.insns[:-1]
    _trap(prog, TINY, len(prog.insns), "no FINISH")
    prog = _dense()
    prog.insns = prog.insns[:-1] + [Finish(), Finish()]
    _trap(prog, TINY, len(prog.insns) - 1, "after FINISH")


@pytest.mark.parametrize("cls, mem, bits, words", [
    (Load, MemType.INP, dict(pop_prev=True), "load module has no previous"),
    (Store, MemType.ACC, dict(push_next=True), "store module has no next"),
])
def test_tokens_to_missing_neighbours(cls, mem, bits, words):
    prog = _dense()
    i = _mutate(prog, _index(prog, cls, mem), **bits)
    _trap(prog, TINY, i, words)


def test_token_deadlock_names_the_blocked_instruction():
    prog = _dense()
    load = _index(prog, Load, MemType.WGT)
    _mutate(prog, load, push_next=False)  # compute's pop_prev now has nothing to take
    gemm = _index(prog, Gemm, nth=1)
    _trap(prog, TINY, gemm, "token deadlock", "compute waits at instruction", "l2c")


def test_deadlock_of_a_pop_before_any_push():
    prog = _dense()
    _mutate(prog, _index(prog, Store), push_prev=False)
    finish = len(prog.insns) - 1
    _trap(prog, TINY, finish, "token deadlock", "s2c", "store is done")


def test_invalid_ternary_weight_code():
    prog = _dense()
    r = prog.dram.regions["wgt"]
    prog.dram.data[r.offset + 1] = 0b11 << 4  # code 3 in the second byte
    _trap(prog, TINY, _index(prog, Load, MemType.WGT), "LOAD WGT", "invalid ternary code 3")


def test_invalid_ternary_activation_code():
    prog = _dense(cfg=TACT)
    r = prog.dram.regions["inp"]
    prog.dram.data[r.offset] = 0xFF
    _trap(prog, TACT, _index(prog, Load, MemType.INP), "LOAD INP", "invalid ternary code 3")


def test_uop_first_bit_on_a_reset_gemm():
    # bit 63 was reserved before the first bit took it; the dense program's first micro-op
    # belongs to its reset GEMM, which must not carry it
    prog = _dense()
    r = prog.dram.regions["uop"]
    prog.dram.data[r.offset + 7] |= 0x80
    _trap(prog, TINY, _index(prog, Gemm), "GEMM", "reset takes micro-ops without the first bit")


def test_par_reserved_bytes():
    prog = _dense(epilogue="requant", params=dict(mult_p=[2**14] * 8, shift=[15] * 8))
    r = prog.dram.regions["par"]
    prog.dram.data[r.offset + 30] = 1
    _trap(prog, TINY, _index(prog, Load, MemType.PAR), "LOAD PAR", "reserved bytes")


def test_read_of_never_written_sram():
    prog = _dense()
    i = _mutate(prog, _index(prog, Gemm, nth=1), src_factor_out=7)  # rows beyond the loaded inp
    _trap(prog, TINY, i, "reads inp[", "no instruction has written")


@pytest.mark.parametrize("mem, changes, words", [
    (MemType.UOP, dict(x_pad_0=1), "cannot pad"),
    (MemType.WGT, dict(y_pad_1=1, pad_value=1), "zero only"),
    (MemType.INP, dict(y_size=0), "empty rectangle"),
])
def test_load_padding_rules(mem, changes, words):
    prog = _dense()
    i = _mutate(prog, _index(prog, Load, mem), **changes)
    _trap(prog, TINY, i, words)


def test_ternary_activation_pad_value():
    prog = _dense(cfg=TACT)
    i = _mutate(prog, _index(prog, Load, MemType.INP), x_pad_0=1, pad_value=2)
    _trap(prog, TACT, i, "pad_value 2 is not a ternary activation")


def test_padded_load_out_and_store_inp_are_malformed():
    """LOAD OUT (v1.6: into the accumulators) takes no padding; STORE cannot write INP."""
    prog = _dense()
    i = _mutate(prog, _index(prog, Load, MemType.INP), mem=MemType.OUT, x_pad_0=1)
    _trap(prog, TINY, i, "LOAD OUT cannot pad")
    prog = _dense()
    i = _mutate(prog, _index(prog, Store), mem=MemType.INP)
    _trap(prog, TINY, i, "STORE writes ACC or OUT")


def test_store_rules():
    prog = _dense()
    i = _mutate(prog, _index(prog, Store), x_pad_0=1)
    _trap(prog, TINY, i, "zero pads")
    prog = _dense()
    st = prog.insns[_index(prog, Store)]
    i = _mutate(prog, _index(prog, Store), x_stride=st.x_size - 1)
    _trap(prog, TINY, i, "rows overlap")


def test_store_out_of_activation_range():
    prog = _dense(epilogue="requant", params=dict(mult_p=[2**14] * 8, shift=[1] * 8))
    alu = _index(prog, Alu)
    _mutate(prog, alu, imm=isa.alu_clamp_imm(-128, 127))
    prog.dram.data[prog.dram.regions["inp"].offset:][:16] = 100  # big accumulators
    simulate(prog, TINY)  # int8 range: fine
    prog = _dense(cfg=TACT, epilogue="requant", params=dict(mult_p=[2**14] * 16, shift=[1] * 16))
    _trap(prog, TACT, _index(prog, Store), "STORE OUT", "does not fit 2-bit activations")


def test_int32_overflow_in_gemm():
    bld = Builder(TINY)
    big = np.full((1, 1, 4), 2**31 - 1)
    ea = bld.region("acc", layout.pack_acc(big, TINY), MemType.ACC)
    ei = bld.region("inp", layout.pack_inp(np.ones((1, 1, 4), int), TINY), MemType.INP)
    ew = bld.region("wgt", layout.pack_wgt(np.ones((1, 4, 4), int), TINY), MemType.WGT)
    eu = bld.region("uop", isa.encode_uops([0], [0], [0]).view(np.uint8), MemType.UOP)
    bld.emit(Load(mem=MemType.INP, dram_base=ei))
    bld.emit(Load(mem=MemType.WGT, dram_base=ew, push_next=True))
    bld.emit(Load(mem=MemType.ACC, dram_base=ea))
    bld.emit(Load(mem=MemType.UOP, dram_base=eu))
    bld.emit(Gemm(pop_prev=True))
    bld.emit(Finish())
    _trap(bld.prog, TINY, 4, "GEMM", "left the int32 range")


def _alu_program(cfg, alu, uops, acc_entries=4, par=None):
    bld = Builder(cfg)
    ea = bld.region("acc", layout.pack_acc(np.ones((acc_entries, cfg.batch, cfg.block_out)), cfg),
                    MemType.ACC)
    words = isa.encode_uops(*zip(*uops))
    eu = bld.region("uop", words.view(np.uint8), MemType.UOP)
    bld.emit(Load(mem=MemType.ACC, dram_base=ea, x_size=acc_entries, x_stride=acc_entries))
    bld.emit(Load(mem=MemType.UOP, dram_base=eu, x_size=len(uops), x_stride=len(uops)))
    if par is not None:
        par = {k: np.broadcast_to(v, cfg.block_out) for k, v in par.items()}
        ep = bld.region("par", layout.pack_par(cfg, **par), MemType.PAR)
        bld.emit(Load(mem=MemType.PAR, dram_base=ep, push_next=True))  # load module (v1.4)
    i = bld.emit(isa.replace(alu, uop_end=len(uops), pop_prev=par is not None))
    bld.emit(Finish())
    return bld.prog, i


def test_alu_add_overflow():
    prog, i = _alu_program(TINY, Alu(op=AluOp.ADD, use_imm=True, imm=1), [(0, 0, 0)])
    prog.dram.data[:4] = [0xFF, 0xFF, 0xFF, 0x7F]  # acc[0][0][0] = 2**31 - 1
    _trap(prog, TINY, i, "ALU ADD", "int32")


def test_alu_hazards():
    prog, i = _alu_program(TINY, Alu(op=AluOp.ADD), [(0, 1, 0), (0, 2, 0)])
    _trap(prog, TINY, i, "writes acc[0] more than once")
    prog, i = _alu_program(TINY, Alu(op=AluOp.ADD), [(0, 1, 0), (1, 2, 0)])
    _trap(prog, TINY, i, "hazard", "reads acc[1]", "execution 1")


@pytest.mark.parametrize("alu, words", [
    (Alu(op=AluOp.SHR, use_imm=True, imm=32), "SHR needs"),
    (Alu(op=AluOp.SHR, use_imm=False, imm=3), "SHR needs"),
    (Alu(op=AluOp.REQUANT, use_imm=False), "use_imm must be 1"),
    (Alu(op=AluOp.THRESH, use_imm=True), "use_imm must be 0"),
    (Alu(op=AluOp.ADD, dual=True), "dual applies to REQUANT and THRESH only"),
    (Alu(op=AluOp.MOV, iter_out=0), "empty loop"),
    (Alu(op=AluOp.MOV, uop_bgn=1), "uop range [1, 1) is empty"),
])
def test_alu_malformed(alu, words):
    prog, i = _alu_program(TINY, alu, [(0, 1, 0)])
    if alu.uop_bgn:
        prog.insns[i] = isa.replace(prog.insns[i], uop_end=1)
    _trap(prog, TINY, i, words)


def test_requant_parameter_traps():
    par = dict(mult_p=2**14, mult_n=2**14, shift=[0, 1, 1, 1])
    prog, i = _alu_program(TINY, Alu(op=AluOp.REQUANT, use_imm=True, imm=isa.alu_clamp_imm(-1, 1)),
                           [(0, 0, 0)], par=par)
    _trap(prog, TINY, i, "shift 0 is outside [1, 46]")
    par = dict(mult_p=2**14, mult_n=2**14, shift=1, bias=[2**62 + 1, 0, 0, 0])
    prog, i = _alu_program(TINY, Alu(op=AluOp.REQUANT, use_imm=True, imm=isa.alu_clamp_imm(-1, 1)),
                           [(0, 0, 0)], par=par)
    _trap(prog, TINY, i, "bias exceeds")
    prog, i = _alu_program(TINY, Alu(op=AluOp.REQUANT, use_imm=True, imm=isa.alu_clamp_imm(5, 1)),
                           [(0, 0, 0)], par=dict(mult_p=1, mult_n=1, shift=1))
    _trap(prog, TINY, i, "lo=5 > hi=1")
    prog, i = _alu_program(TINY, Alu(op=AluOp.REQUANT, use_imm=True, imm=0), [(0, 0, 0)])
    _trap(prog, TINY, i, "reads par[0]", "no instruction has written")


def test_features_missing_from_the_config():
    prog, i = _alu_program(INT8, Alu(op=AluOp.THRESH), [(0, 0, 0)], par=dict(mult_p=1, mult_n=1, shift=1))
    _trap(prog, INT8, i, "THRESH needs a HwConfig with ternary_act", "'int8'")
    prog, i = _alu_program(INT8, Alu(op=AluOp.REQUANT, use_imm=True, dual=True), [(0, 0, 0)],
                           par=dict(mult_p=1, mult_n=1, shift=1))
    _trap(prog, INT8, i, "dual needs a HwConfig with dual_scale")
    prog, i = _alu_program(INT8, Gemm(dual=True, reset=True), [(0, 0, 0)])
    _trap(prog, INT8, i, "GEMM dual needs a HwConfig with dual_scale")


def test_dual_pair_must_fit_in_acc():
    prog, i = _alu_program(TINY, Gemm(dual=True, reset=True), [(TINY.acc_depth - 1, 0, 0)])
    _trap(prog, TINY, i, "GEMM dst (acc) index", str(TINY.acc_depth))


def test_store_out_of_int8_range():
    x = np.full((1, 8), 127)
    w = np.ones((4, 8), np.int8)  # every accumulator is 8 * 127 = 1016
    prog, _ = dense_program(TINY, x, w)
    i = _mutate(prog, _index(prog, Store), mem=MemType.OUT)
    _trap(prog, TINY, i, "STORE OUT", "= 1016 does not fit 8-bit activations")
