"""ISA: hand-worked encodings, round trips over all fields, malformed words, stream files."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_ternary.errors import IsaError
from vta_ext import isa
from vta_ext.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Opcode, Store

DOC = Path(__file__).resolve().parents[2] / "docs" / "isa.md"


def _u(bits):
    return st.integers(0, 2**bits - 1)


def _s(bits):
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


deps = dict(pop_prev=st.booleans(), pop_next=st.booleans(), push_prev=st.booleans(),
            push_next=st.booleans())
mem_fields = dict(sram_base=_u(16), dram_base=_u(32), y_size=_u(12), x_size=_u(16),
                  x_stride=_u(16), y_pad_0=_u(4), y_pad_1=_u(4), x_pad_0=_u(4), x_pad_1=_u(4),
                  pad_value=_s(8), x_skip=_u(2), **deps)
loop = dict(uop_bgn=_u(13), uop_end=_u(14), iter_out=_u(10), iter_in=_u(10),
            dst_factor_out=_u(12), dst_factor_in=_u(12), src_factor_out=_u(12),
            src_factor_in=_u(12), **deps)
any_insn = st.one_of(
    st.builds(Load, mem=st.sampled_from(list(MemType)), **mem_fields),
    st.builds(Store, mem=st.sampled_from(list(MemType)), **mem_fields),
    st.builds(Gemm, wgt_factor_out=_u(12), wgt_factor_in=_u(12), reset=st.booleans(),
              dual=st.booleans(), **loop),
    st.builds(Alu, op=st.sampled_from(list(AluOp)), use_imm=st.booleans(), imm=_s(16),
              dual=st.booleans(), overlap=st.booleans(), **loop),
    st.builds(Finish, **deps),
)


@settings(max_examples=400, deadline=None)
@given(any_insn)
def test_round_trip_every_field(insn):
    word = isa.encode(insn)
    assert 0 <= word < 2**128
    assert isa.decode(word) == insn
    assert isa.decode_stream(isa.encode_stream([insn, insn])) == [insn, insn]


def test_hand_worked_words():
    # FINISH = opcode 3 in bits 2:0, pop_prev is bit 3
    assert isa.encode(Finish(pop_prev=True)) == 3 | 1 << 3
    # GEMM opcode 2, reset bit 7, uop_bgn at bit 9, uop_end at bit 22, iter_out at 36
    assert isa.encode(Gemm(uop_bgn=5, uop_end=9, iter_out=2, iter_in=0, reset=True)) == \
        2 | 1 << 7 | 5 << 9 | 9 << 22 | 2 << 36
    # LOAD WGT (mem 2 at bit 7), sram 1 (bit 10), dram 7 (bit 26), pad_value -1 at 125:118
    word = isa.encode(Load(mem=MemType.WGT, sram_base=1, dram_base=7, y_size=0, x_size=0,
                           x_stride=0, pad_value=-1))
    assert word == 0 | 2 << 7 | 1 << 10 | 7 << 26 | 0xFF << 118
    # ALU ADD (op 2 at bit 7), use_imm bit 11, imm -2 in bits 123:108
    assert isa.encode(Alu(op=AluOp.ADD, uop_bgn=0, uop_end=0, iter_out=0, iter_in=0,
                          use_imm=True, imm=-2)) == 4 | 2 << 7 | 1 << 11 | 0xFFFE << 108
    assert isa.encode_stream([Finish()]) == (3).to_bytes(16, "little")
    # LOAD x_skip is bits 127:126 (v1.5)
    assert isa.encode(Load(mem=MemType.INP, y_size=0, x_size=0, x_stride=0, x_skip=3)) == \
        1 << 7 | 3 << 126
    assert "skip=1" in isa.disasm(Load(x_skip=1))
    # ALU overlap is bit 124 (v1.3)
    assert isa.encode(Alu(op=AluOp.REQUANT, uop_bgn=0, uop_end=0, iter_out=0, iter_in=0,
                          overlap=True)) == 4 | 6 << 7 | 1 << 124
    assert "overlap" in isa.disasm(Alu(op=AluOp.REQUANT, overlap=True, use_imm=True))
    # ALU residual is bit 125, LOAD OUT is mem 5 (v1.6); a v1.5 word is unchanged
    assert isa.encode(Alu(op=AluOp.REQUANT, uop_bgn=0, uop_end=0, iter_out=0, iter_in=0,
                          residual=True)) == 4 | 6 << 7 | 1 << 125
    assert isa.decode(4 | 6 << 7 | 1 << 125).residual is True
    assert isa.decode(4 | 6 << 7 | 1 << 124).residual is False
    assert "residual" in isa.disasm(Alu(op=AluOp.REQUANT, residual=True, use_imm=True))
    assert isa.encode(Load(mem=MemType.OUT, y_size=0, x_size=0, x_stride=0)) == 5 << 7
    assert isa.ISA_VERSION == "1.6"


@pytest.mark.parametrize("insn, field", [
    (Load(sram_base=2**16), "sram_base"),
    (Load(dram_base=-1), "dram_base"),
    (Store(pad_value=128), "pad_value"),
    (Gemm(iter_out=1024), "iter_out"),
    (Gemm(wgt_factor_in=4096), "wgt_factor_in"),
    (Alu(imm=2**15), "imm"),
    (Alu(uop_end=2**14), "uop_end"),
    (Load(x_size=1.5), "x_size"),
    (Load(mem=6), "mem = 6 is not a valid MemType"),
    (Alu(op=9), "op = 9 is not a valid AluOp"),
])
def test_encode_rejects_fields_that_do_not_fit(insn, field):
    with pytest.raises(IsaError, match=field):
        isa.encode(insn)


def test_encode_rejects_non_instruction():
    with pytest.raises(IsaError, match="not an instruction"):
        isa.encode("LOAD")


def _reserved_bits(opcode):
    used = 0
    for f in isa.fields_of(opcode):
        used |= ((1 << f.width) - 1) << f.lsb
    return [b for b in range(128) if not used >> b & 1]


@pytest.mark.parametrize("opcode", list(Opcode))
def test_reserved_bits_are_rejected(opcode):
    cls = isa.FORMATS[opcode][0]
    base = isa.encode(cls())
    bits = _reserved_bits(opcode)
    # GEMM uses all 128 bits; LOAD/STORE too since x_skip (v1.5)
    assert bits or opcode in (Opcode.GEMM, Opcode.LOAD, Opcode.STORE)
    for b in bits:
        with pytest.raises(IsaError, match="reserved bits"):
            isa.decode(base | 1 << b)


def test_malformed_words():
    for code in (5, 6, 7):
        with pytest.raises(IsaError, match=f"unknown opcode {code}"):
            isa.decode(code)
    for mem in (6, 7):
        with pytest.raises(IsaError, match="mem = .* not a valid MemType"):
            isa.decode(mem << 7)  # LOAD is opcode 0
    for op in range(8, 16):
        with pytest.raises(IsaError, match="op = .* not a valid AluOp"):
            isa.decode(4 | op << 7)
    for bad in (-1, 2**128, 1.0):
        with pytest.raises(IsaError, match="128-bit"):
            isa.decode(bad)
    with pytest.raises(IsaError, match="not a whole number"):
        isa.decode_stream(b"\x03" * 17)
    with pytest.raises(IsaError, match="instruction 1: unknown opcode"):
        isa.decode_stream(isa.encode_stream([Finish()]) + (7).to_bytes(16, "little"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_u(21), _u(21), _u(21), st.booleans()), min_size=0, max_size=20))
def test_uop_round_trip(quads):
    dst, src, wgt, first = (np.array([t[i] for t in quads], dtype=np.int64) for i in range(4))
    words = isa.encode_uops(dst, src, wgt, first)
    # docs: dst 20:0, src 41:21, wgt 62:42, first 63
    expected = [d | s << 21 | w << 42 | int(f) << 63 for d, s, w, f in quads]
    assert [int(x) for x in words] == expected
    for got, want in zip(isa.decode_uops(words), (dst, src, wgt)):
        assert (got == want).all()
    assert (isa.decode_uop_first(words) == first.astype(bool)).all()
    uops = [isa.Uop(int(d), int(s), int(w), bool(f)) for d, s, w, f in quads]
    assert [int(x) for x in isa.encode_uop_list(uops)] == expected


def test_uop_errors():
    with pytest.raises(IsaError, match="uop.src = 2097152"):
        isa.encode_uops([0], [2**21], [0])
    with pytest.raises(IsaError, match="uop.dst = -1"):
        isa.encode_uops([-1], [0], [0])
    with pytest.raises(IsaError, match="uop.first = 2"):
        isa.encode_uops([0], [0], [0], [2])
    assert isa.disasm_uop(int(isa.encode_uop_list([isa.Uop(3, 4, 5)])[0])) == "uop dst=3 src=4 wgt=5"
    assert isa.disasm_uop((1 << 63) | 3) == "uop dst=3 src=0 wgt=0 first"


def test_clamp_immediate_round_trip_all_pairs():
    for lo in range(-128, 128):
        for hi in range(-128, 128, 7):
            imm = isa.alu_clamp_imm(lo, hi)
            assert -(2**15) <= imm < 2**15
            assert isa.alu_clamp_bounds(imm) == (lo, hi)
            assert (imm & 0xFF) == (lo & 0xFF) and ((imm >> 8) & 0xFF) == (hi & 0xFF)
    with pytest.raises(IsaError, match="hi=128"):
        isa.alu_clamp_imm(0, 128)


def test_disasm_text():
    text = isa.disasm_stream([
        Load(mem=MemType.INP, sram_base=2, dram_base=10, y_size=3, x_size=4, x_stride=8,
             y_pad_0=1, x_pad_1=1, pad_value=-1, push_next=True),
        Gemm(uop_bgn=0, uop_end=9, iter_out=4, iter_in=2, dst_factor_out=8, dual=True, pop_prev=True),
        Alu(op=AluOp.REQUANT, use_imm=True, imm=isa.alu_clamp_imm(0, 127)),
        Alu(op=AluOp.MAX, use_imm=True, imm=0),
        Store(mem=MemType.OUT, y_size=2, x_size=2, x_stride=2),
        Finish(),
    ])
    lines = text.splitlines()
    assert lines[0].split(":", 1)[1].split() == [
        "LOAD", "INP", "sram=2", "dram=10", "y=3", "x=4", "stride=8", "pad=(1,0,0,1)",
        "pad_value=-1", "[push_next]"]
    assert "GEMM" in lines[1] and "uop=[0,9)" in lines[1] and "iter=4x2" in lines[1] \
        and "dual" in lines[1] and "[pop_prev]" in lines[1]
    assert "REQUANT" in lines[2] and "clamp=[0,127]" in lines[2]
    assert "MAX" in lines[3] and "imm=0" in lines[3]
    assert lines[4].split()[1:3] == ["STORE", "OUT"]
    assert lines[5].endswith("FINISH")


def test_stream_file_round_trip_and_errors(tmp_path):
    insns = [Load(mem=MemType.UOP, x_size=3), Gemm(uop_end=3), Finish()]
    p = tmp_path / "prog.bin"
    isa.write_stream_file(p, insns)
    data = p.read_bytes()
    assert data[:8] == b"TTVTAISA" and int.from_bytes(data[8:12], "little") == 1
    assert int.from_bytes(data[12:16], "little") == 3 and len(data) == 16 + 3 * 16
    assert isa.read_stream_file(p) == insns
    cases = {
        "short.bin": (data[:-1], "truncated"),
        "long.bin": (data + b"\0", "trailing"),
        "magic.bin": (b"XXXXXXXX" + data[8:], "magic"),
        "version.bin": (data[:8] + (2).to_bytes(4, "little") + data[12:], "version 2"),
        "bad.bin": (data[:16] + (6).to_bytes(16, "little") + data[32:], "instruction 0: unknown opcode 6"),
    }
    for name, (content, words) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(IsaError, match=f"{name}.*{words}"):
            isa.read_stream_file(tmp_path / name)
    with pytest.raises(IsaError, match="none.bin.*cannot read"):
        isa.read_stream_file(tmp_path / "none.bin")


def test_docs_field_tables_are_current():
    doc = DOC.read_text()
    start = doc.index("<!-- BEGIN FIELD TABLES")
    body = doc[doc.index("\n", start) + 1:doc.index("<!-- END FIELD TABLES -->")]
    assert body.strip() == isa.field_table_markdown().strip()


def test_formats_fit_128_bits_without_overlap():
    for opcode in Opcode:
        used = 0
        for f in isa.fields_of(opcode):
            mask = ((1 << f.width) - 1) << f.lsb
            assert not used & mask, f"{opcode.name}.{f.name} overlaps"
            used |= mask
        assert used < 2**128
