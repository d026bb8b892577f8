"""What each instruction does, counted from its fields alone (no DRAM image, no data).

The cycle model and the energy model both read these counts. They are static: the tuner
and the design-space explorer estimate a program without running the functional
simulator, and a test checks the counts against the simulator's per-instruction
statistics (``InsnStats``) on real programs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import HwConfig
from ..isa import UOP_BYTES, AluOp, MemType, Opcode
from .dma import sram_of_load
from .fsim import decode_program, module_of
from .state import elem_bytes

BUFFERS = ("uop", "inp", "wgt", "acc", "par")
_BUFFER_OF_MEM = {MemType.UOP: "uop", MemType.INP: "inp", MemType.WGT: "wgt",
                  MemType.ACC: "acc", MemType.PAR: "par", MemType.OUT: "acc"}
_EPILOGUE_OPS = (AluOp.REQUANT, AluOp.THRESH)


@dataclass
class InsnWork:
    """Counts for one instruction. SRAM traffic is in bytes per on-chip buffer."""

    index: int
    opcode: Opcode
    module: str  # "load" | "compute" | "store"
    mem: MemType | None = None
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    pad_elems: int = 0  # LOAD entries filled with pad_value (SRAM writes, no DRAM)
    uop_execs: int = 0  # GEMM/ALU loop iterations: iter_out * iter_in * (uop_end - uop_bgn)
    mac_slots: int = 0  # batch * block_in * block_out per non-reset GEMM iteration
    accumulations: int = 0  # adds into accumulators (dual GEMM: two per MAC slot)
    alu_op: AluOp | None = None
    alu_elems: int = 0  # accumulator elements an ALU instruction produces
    alu_dual: bool = False
    alu_residual: bool = False  # REQUANT with the residual operand (v1.6)
    sram_read: dict[str, int] = field(default_factory=dict)
    sram_write: dict[str, int] = field(default_factory=dict)


def _add(d: dict, buffer: str, nbytes: int) -> None:
    d[buffer] = d.get(buffer, 0) + nbytes


def _uop_execs(insn) -> int:
    return insn.iter_out * insn.iter_in * max(insn.uop_end - insn.uop_bgn, 0)


def _load(w: InsnWork, insn, cfg: HwConfig) -> None:
    rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
    cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
    eb = elem_bytes(cfg, insn.mem)
    w.dram_read_bytes = insn.y_size * insn.x_size * eb
    w.pad_elems = rows * cols - insn.y_size * insn.x_size
    # a LOAD OUT widens each element into an accumulator entry (v1.6)
    _add(w.sram_write, _BUFFER_OF_MEM[insn.mem],
         rows * cols * elem_bytes(cfg, sram_of_load(insn.mem)))


def _store(w: InsnWork, insn, cfg: HwConfig) -> None:
    elems = insn.y_size * insn.x_size
    w.dram_write_bytes = elems * elem_bytes(cfg, insn.mem)
    _add(w.sram_read, "acc", elems * cfg.acc_block_bytes)


def _gemm(w: InsnWork, insn, cfg: HwConfig) -> None:
    n = w.uop_execs = _uop_execs(insn)
    accs = 2 if insn.dual else 1  # a dual GEMM updates the pair (acc_p, acc_n)
    _add(w.sram_read, "uop", n * UOP_BYTES)
    _add(w.sram_write, "acc", n * accs * cfg.acc_block_bytes)
    if insn.reset:
        return
    w.mac_slots = n * cfg.macs_per_cycle
    w.accumulations = w.mac_slots * accs
    _add(w.sram_read, "inp", n * cfg.inp_block_bytes)
    _add(w.sram_read, "wgt", n * cfg.wgt_block_bytes)
    _add(w.sram_read, "acc", n * accs * cfg.acc_block_bytes)


def _alu_acc_reads(insn) -> int:
    """Accumulator blocks one ALU iteration reads (docs/isa.md, ALU semantics)."""
    if insn.op in _EPILOGUE_OPS:  # acc[s] (and acc[s + 1]), and the residual acc[d]
        return (2 if insn.dual else 1) + (1 if insn.residual else 0)
    if insn.op == AluOp.MOV:
        return 0 if insn.use_imm else 1  # b only
    return 1 if insn.use_imm else 2  # a = acc[d], and b = acc[s] unless immediate


def _alu(w: InsnWork, insn, cfg: HwConfig) -> None:
    n = w.uop_execs = _uop_execs(insn)
    w.alu_op, w.alu_dual, w.alu_residual = insn.op, bool(insn.dual), bool(insn.residual)
    w.alu_elems = n * cfg.batch * cfg.block_out
    _add(w.sram_read, "uop", n * UOP_BYTES)
    _add(w.sram_read, "acc", n * _alu_acc_reads(insn) * cfg.acc_block_bytes)
    _add(w.sram_write, "acc", n * cfg.acc_block_bytes)
    if insn.op in _EPILOGUE_OPS:
        _add(w.sram_read, "par", n * cfg.par_block_bytes)


_COUNT = {Opcode.LOAD: _load, Opcode.STORE: _store, Opcode.GEMM: _gemm, Opcode.ALU: _alu,
          Opcode.FINISH: lambda w, insn, cfg: None}


def insn_work(index: int, insn, cfg: HwConfig) -> InsnWork:
    w = InsnWork(index=index, opcode=insn.opcode, module=module_of(insn),
                 mem=getattr(insn, "mem", None))
    _COUNT[insn.opcode](w, insn, cfg)
    return w


def instructions_of(program) -> list:
    """Decoded instructions of a Program, an instruction list or an encoded stream (so an
    instruction that could not be encoded fails here as it would in the simulator)."""
    insns = getattr(program, "insns", program)
    return decode_program(insns)


def program_work(program, cfg: HwConfig) -> list[InsnWork]:
    return [insn_work(i, insn, cfg) for i, insn in enumerate(instructions_of(program))]
