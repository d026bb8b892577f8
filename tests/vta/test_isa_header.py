"""The generated Verilog ISA header states exactly the field layout of vta_ext.isa."""

import re

from vta_ext import isa
from vta_ext.isa_header import verilog_isa_header


def _params(text):
    out = {}
    for m in re.finditer(r"localparam (?:integer|\[\d+:0\]) (\w+) = (?:\d+'d)?(\d+);", text):
        assert m.group(1) not in out, f"{m.group(1)} defined twice"
        out[m.group(1)] = int(m.group(2))
    return out


def test_header_is_marked_generated_and_complete():
    text = verilog_isa_header()
    assert text.startswith("// GENERATED") and "Do not edit" in text
    p = _params(text)
    body = [ln for ln in text.splitlines() if ln and not ln.startswith("//")]
    assert len(body) == len(p)  # every line is one parsed localparam
    # hand-checked against docs/isa.md
    assert p["OP_ALU"] == 4 and p["MEM_PAR"] == 4 and p["ALU_THRESH"] == 7
    assert (p["GEMMI_UOP_BGN_LSB"], p["GEMMI_UOP_BGN_W"]) == (9, 13)
    assert (p["MEMI_PAD_VALUE_LSB"], p["MEMI_PAD_VALUE_W"]) == (118, 8)
    assert (p["ALUI_IMM_LSB"], p["ALUI_IMM_W"]) == (108, 16)
    assert (p["UOP_WGT_LSB"], p["UOP_WGT_W"]) == (42, 21)
    for prefix, opcode in (("MEMI", isa.Opcode.STORE), ("GEMMI", isa.Opcode.GEMM),
                           ("ALUI", isa.Opcode.ALU)):
        for f in isa.fields_of(opcode):
            assert p[f"{prefix}_{f.name.upper()}_LSB"] == f.lsb
            assert p[f"{prefix}_{f.name.upper()}_W"] == f.width
