"""tternary hw disasm / config through the real command line."""

import json
import subprocess
import sys

from vta_ext import HwConfig, isa
from vta_ext.isa import AluOp, Finish, Gemm, Load, MemType


def _tternary(*args):
    return subprocess.run([sys.executable, "-m", "tvm_ternary.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_hw_disasm_prints_one_line_per_instruction(tmp_path):
    insns = [Load(mem=MemType.WGT, sram_base=4, dram_base=64, y_size=2, x_size=3, x_stride=3,
                  push_next=True),
             Gemm(uop_bgn=0, uop_end=5, iter_out=2, dual=True, pop_prev=True),
             isa.Alu(op=AluOp.THRESH, uop_end=2, dual=True),
             Finish()]
    path = tmp_path / "prog.bin"
    isa.write_stream_file(path, insns)
    out = _tternary("hw", "disasm", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].split()[:4] == ["0:", "LOAD", "WGT", "sram=4"] and "[push_next]" in lines[0]
    assert "GEMM" in lines[1] and "uop=[0,5)" in lines[1] and "dual" in lines[1]
    assert "THRESH" in lines[2] and lines[3].split() == ["3:", "FINISH"]
    hexed = _tternary("hw", "disasm", "--hex", str(path)).stdout.splitlines()
    assert hexed[3].split()[1] == f"{3:032x}"  # FINISH is opcode 3, nothing else set


def test_hw_disasm_bad_file_is_one_line_error(tmp_path):
    bad = tmp_path / "junk.bin"
    bad.write_bytes(b"hello world, not a stream")
    out = _tternary("hw", "disasm", str(bad))
    assert out.returncode == 2
    assert "junk.bin" in out.stderr and "magic" in out.stderr and "Traceback" not in out.stderr


def test_hw_help_lists_subcommands_without_heavy_imports():
    code = ("import sys; from tvm_ternary.cli import main\n"
            "for argv in (['hw', '--help'], ['hw', 'disasm', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules and 'tvm' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "disasm" in out.stdout and "config" in out.stdout and "--hex" in out.stdout


def test_hw_config_prints_hash_and_derived_sizes():
    out = _tternary("hw", "config", "tiny")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    cfg = HwConfig.load("tiny")
    assert data["hash"] == cfg.hash and data["config"] == cfg.to_dict()
    assert data["derived"]["wgt_block_bytes"] == 4  # 4 x 4 trits at 2 bits
    bad = _tternary("hw", "config", "nope")
    assert bad.returncode == 2 and "unknown HwConfig 'nope'" in bad.stderr


def test_hw_sim_runs_a_program_file(tmp_path):
    import numpy as np

    from vta_ext import layout
    from vta_ext.program import Program

    from .sim.builders import dense_program

    cfg = HwConfig.load("tiny")
    rng = np.random.default_rng(0)
    x, w = rng.integers(-9, 10, (3, 7)), rng.integers(-1, 2, (6, 7)).astype(np.int8)
    prog, _ = dense_program(cfg, x, w)
    prog.save(tmp_path / "p.npz")
    out = _tternary("hw", "sim", str(tmp_path / "p.npz"), "--hw", "tiny", "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["hw_hash"] == cfg.hash and summary["instructions"] == len(prog.insns)
    assert summary["totals"]["macs"] == 3 * 2 * 2 * 16  # rows x out blocks x in blocks x 4x4
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert len(report["per_instruction"]) == len(prog.insns)
    result = Program.load(tmp_path / "r" / "result.npz")
    acc = layout.unpack_acc(result.dram.read("out"), cfg).reshape(3, 2, 4).reshape(3, 8)[:, :6]
    assert (acc == x @ w.T.astype(np.int64)).all()


def test_hw_sim_trap_and_bad_file_are_one_line_errors(tmp_path):
    import numpy as np

    from .sim.builders import dense_program

    prog, _ = dense_program(HwConfig.load("tiny"), np.ones((1, 4), int), np.ones((4, 4), np.int8))
    prog.insns = prog.insns[:-1]  # no FINISH
    prog.save(tmp_path / "p.npz")
    out = _tternary("hw", "sim", str(tmp_path / "p.npz"), "--hw", "tiny")
    assert out.returncode == 2 and "no FINISH" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "junk.npz").write_bytes(b"junk")
    out = _tternary("hw", "sim", str(tmp_path / "junk.npz"))
    assert out.returncode == 2 and "junk.npz" in out.stderr and "not a program file" in out.stderr
