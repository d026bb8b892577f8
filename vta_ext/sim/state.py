"""The functional simulator's machine state: DRAM, the five on-chip buffers, and for each
buffer entry whether any instruction has written it (reading stale SRAM is a trap)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import HwConfig
from ..isa import UOP_BYTES, MemType
from ..layout import PAR_DTYPE
from .ordering import Ordering
from .trap import Trap

__all__ = ["InsnStats", "Machine", "Trap", "elem_bytes"]


@dataclass
class InsnStats:
    """What one instruction did, for the cycle and energy models."""

    index: int
    opcode: str
    module: str  # "load" | "compute" | "store"
    mem: str | None = None  # LOAD/STORE memory type
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    sram_write_elems: int = 0  # buffer entries written (LOAD: including padding)
    pad_elems: int = 0
    uop_execs: int = 0  # micro-op executions: iter_out * iter_in * (uop_end - uop_bgn)
    macs: int = 0  # multiply-accumulates issued (GEMM; dual counts each accumulator)
    alu_elems: int = 0  # accumulator elements an ALU op produced


class Machine:
    def __init__(self, cfg: HwConfig, dram: np.ndarray):
        self.cfg = cfg
        self.dram = dram
        b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
        # micro-ops are kept decoded (dst, src, wgt) and first: LOAD UOP checks them once
        self.uop = np.zeros((cfg.uop_depth, 3), dtype=np.int64)
        self.uop_first = np.zeros(cfg.uop_depth, dtype=bool)
        self.inp = np.zeros((cfg.inp_depth, b, bi), dtype=np.int8)
        self.wgt = np.zeros((cfg.wgt_depth, bo, bi), dtype=np.int8)
        self.acc = np.zeros((cfg.acc_depth, b, bo), dtype=np.int64)
        self.par = np.zeros((cfg.par_depth, bo), dtype=PAR_DTYPE)
        self.written = {m: np.zeros(self.depth(m), dtype=bool)
                        for m in (MemType.UOP, MemType.INP, MemType.WGT, MemType.ACC, MemType.PAR)}
        # buffers shared between modules (uop and par between the compute module and an
        # overlapped ALU on its epilogue unit)
        self.order = Ordering({m: self.depth(m) for m in (MemType.INP, MemType.WGT, MemType.ACC,
                                                          MemType.UOP, MemType.PAR)},
                              dram.size)

    def depth(self, mem: MemType) -> int:
        cfg = self.cfg
        return {MemType.UOP: cfg.uop_depth, MemType.INP: cfg.inp_depth,
                MemType.WGT: cfg.wgt_depth, MemType.ACC: cfg.acc_depth,
                MemType.PAR: cfg.par_depth}[mem]

    def buffer(self, mem: MemType) -> np.ndarray:
        return {MemType.UOP: self.uop, MemType.INP: self.inp, MemType.WGT: self.wgt,
                MemType.ACC: self.acc, MemType.PAR: self.par}[mem]

    def require_written(self, mem: MemType, idx: np.ndarray, what: str) -> None:
        """A read of buffer entries: each must have been written, in an order tokens enforce."""
        ok = self.written[mem][idx]
        if not ok.all():
            first = int(np.asarray(idx).reshape(-1)[np.flatnonzero(~ok.reshape(-1))[0]])
            raise Trap(f"{what} reads {mem.name.lower()}[{first}], which no instruction has written")
        self.order.read(mem, idx, what)

    def mark_written(self, mem: MemType, idx, what: str) -> None:
        self.order.write(mem, np.asarray(idx), what)
        self.written[mem][idx] = True

    def require_in_range(self, mem: MemType, idx: np.ndarray, what: str) -> None:
        if idx.size and (idx.min() < 0 or idx.max() >= self.depth(mem)):
            bad = int(idx.max()) if idx.max() >= self.depth(mem) else int(idx.min())
            raise Trap(f"{what} index {bad} is outside the {mem.name.lower()} buffer "
                       f"(depth {self.depth(mem)})")


def elem_bytes(cfg: HwConfig, mem: MemType) -> int:
    """Bytes of one DRAM element of ``mem`` (docs/isa.md, "DRAM layouts")."""
    return {MemType.UOP: UOP_BYTES, MemType.INP: cfg.inp_block_bytes,
            MemType.WGT: cfg.wgt_block_bytes, MemType.ACC: cfg.acc_block_bytes,
            MemType.PAR: cfg.par_block_bytes, MemType.OUT: cfg.out_block_bytes}[mem]
