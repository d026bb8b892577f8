"""Program / DramImage: aligned regions, copies, and the program file format."""

import json

import numpy as np
import pytest

from tvm_ternary.errors import IsaError
from vta_ext.isa import Finish, Gemm, Load, MemType
from vta_ext.program import DramImage, Program


def test_regions_are_aligned_and_readable():
    d = DramImage()
    a = d.add("a", b"\x01\x02\x03", align=1)
    b = d.add("b", np.arange(5, dtype=np.int16), align=64)
    c = d.alloc("c", 7, align=16)
    assert (a.offset, a.size) == (0, 3)
    assert (b.offset, b.size) == (64, 10)
    assert (c.offset, c.size) == (80, 7) and d.data.size == 87
    assert d.read("a").tolist() == [1, 2, 3]
    assert d.read("b").view(np.int16).tolist() == [0, 1, 2, 3, 4]
    assert b.element(16) == 4 and b.element(64) == 1
    with pytest.raises(ValueError, match="'b' at byte 64 is not aligned to 128-byte"):
        b.element(128)
    with pytest.raises(ValueError, match="'a' already exists"):
        d.add("a", b"x")
    copy = d.copy()
    copy.data[0] = 9
    assert d.data[0] == 1 and copy.regions == d.regions


def test_program_file_round_trip_and_errors(tmp_path):
    d = DramImage()
    d.add("w", bytes(range(10)))
    prog = Program([Load(mem=MemType.WGT, x_size=2, push_next=True), Gemm(pop_prev=True), Finish()], d)
    prog.save(tmp_path / "p.npz")
    back = Program.load(tmp_path / "p.npz")
    assert back.insns == prog.insns and (back.dram.data == d.data).all()
    assert back.dram.regions == d.regions

    def write(name, **arrays):
        np.savez(tmp_path / name, **arrays)
        return tmp_path / name

    meta = lambda m: np.frombuffer(json.dumps(m).encode(), np.uint8)  # noqa: E731
    good = {"format": "tternary-vta-program/1", "regions": {"w": [0, 10]}}
    stream = np.frombuffer(prog.stream(), np.uint8)
    cases = {
        "nometa.npz": (dict(insns=stream, dram=d.data), "not a program file"),
        "format.npz": (dict(insns=stream, dram=d.data, meta=meta({"format": "x"})), "not a tternary"),
        "region.npz": (dict(insns=stream, dram=d.data[:5], meta=meta(good)), "region 'w' lies outside"),
        "word.npz": (dict(insns=np.full(16, 255, np.uint8), dram=d.data, meta=meta(good)),
                     "instruction 0: unknown opcode 7"),
    }
    for name, (arrays, words) in cases.items():
        with pytest.raises(IsaError, match=f"{name}.*{words}"):
            Program.load(write(name, **arrays))
    with pytest.raises(IsaError, match="missing.npz.*cannot read"):
        Program.load(tmp_path / "missing.npz")
