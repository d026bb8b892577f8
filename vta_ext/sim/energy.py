"""The energy model: per-operation energies (energy_table.json, cited) times the counts of
each instruction (work.py). Dynamic energy only; docs/cycle_energy.md states the limits.

* GEMM: per accumulation, one add at accumulator width (32 bit); an int8 x int8 MAC adds
  an 8 x 8 multiply. With ternary weights or ternary activations the product is +-x or 0,
  so there is no multiplier: a ternary MAC is an add/subtract.
* ALU: per accumulator element, the ops in ``ALU_OPS`` below.
* SRAM: every byte read or written in a buffer, at a per-byte energy that depends on the
  buffer's capacity (``sram_pj_per_byte``, derived from the 64-bit access energies).
* DRAM: every byte a LOAD reads or a STORE writes (``dram_pj_per_byte``, derived).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tvm_ternary.errors import PerfModelError

from ..config import HwConfig
from ..isa import AluOp, Opcode
from .work import BUFFERS, InsnWork, program_work

TABLE_PATH = Path(__file__).parent / "energy_table.json"
BITS_PER_ACCESS = 64  # the table's memory energies are per 64-bit access
BYTES_PER_ACCESS = BITS_PER_ACCESS // 8

# (32-bit multiplies, 32-bit adds) per accumulator element, for a single (not dual) op.
# Derived counts, not cited: a compare, max, min or arithmetic shift costs about one add;
# a 64-bit add is two 32-bit adds; REQUANT's 16 x 32-bit multiply is charged as a full
# 32-bit multiply (an overestimate of at most the difference).
ALU_OPS = {
    AluOp.MIN: (0, 1), AluOp.MAX: (0, 1), AluOp.ADD: (0, 1), AluOp.SHR: (0, 1),
    AluOp.MOV: (0, 0),
    AluOp.MUL: (1, 0),
    AluOp.REQUANT: (1, 6),  # Mp*acc; + bias and + rounding half at 64 bit (2 + 2); clamp (2)
    AluOp.THRESH: (1, 6),  # Mp*acc; + bias at 64 bit (2); two 64-bit compares (4)
}
ALU_DUAL_EXTRA = (1, 2)  # dual REQUANT/THRESH: Mn*acc_n, and the 64-bit subtraction
ALU_RESIDUAL_EXTRA = (1, 2)  # REQUANT residual (v1.6): Mr*r, and the 64-bit addition


@dataclass(frozen=True)
class EnergyTable:
    """Per-operation energies in pJ; SRAM and DRAM per 64-bit access."""

    add8: float
    add32: float
    mult8: float
    mult32: float
    sram_points: tuple[tuple[int, float], ...]  # (capacity bytes, pJ per 64-bit access)
    dram_64bit: float

    @property
    def dram_pj_per_byte(self) -> float:
        """Derived: a 64-bit DRAM access divided by its 8 bytes."""
        return self.dram_64bit / BYTES_PER_ACCESS

    def sram_pj_per_byte(self, capacity_bytes: int) -> float:
        """Derived: the 64-bit access energy of an SRAM of this capacity, divided by 8.

        Between the cited capacities, interpolated linearly in log(energy) over
        log(capacity) (the cited points grow about as sqrt(capacity)); outside them,
        extrapolated with the nearest segment's slope.
        """
        pts = self.sram_points
        i = 0
        while i < len(pts) - 2 and capacity_bytes > pts[i + 1][0]:
            i += 1
        (c0, e0), (c1, e1) = pts[i], pts[i + 1]
        slope = math.log(e1 / e0) / math.log(c1 / c0)
        return e0 * (capacity_bytes / c0) ** slope / BYTES_PER_ACCESS

    def mac_pj(self, cfg: HwConfig) -> float:
        """One accumulation of the GEMM core: add at accumulator width, plus an 8 x 8
        multiply when neither operand is ternary."""
        needs_multiplier = cfg.wgt_bits > 2 and cfg.act_bits > 2
        return self.add32 + (self.mult8 if needs_multiplier else 0.0)

    def alu_elem_pj(self, op: AluOp, dual: bool, residual: bool = False) -> float:
        mults, adds = ALU_OPS[op]
        for used, (m, a) in ((dual, ALU_DUAL_EXTRA), (residual, ALU_RESIDUAL_EXTRA)):
            if used:
                mults, adds = mults + m, adds + a
        return mults * self.mult32 + adds * self.add32


def load_table(path=None) -> EnergyTable:
    """The energy table from JSON (default: the cited 45 nm table next to this file)."""
    path = Path(path) if path is not None else TABLE_PATH
    try:
        entries = json.loads(path.read_text())["entries"]
        v = {k: float(e["value"]) for k, e in entries.items()}
        return EnergyTable(
            add8=v["add8_pj"], add32=v["add32_pj"], mult8=v["mult8_pj"], mult32=v["mult32_pj"],
            sram_points=((8 << 10, v["sram_8kb_64bit_pj"]), (32 << 10, v["sram_32kb_64bit_pj"]),
                         (1 << 20, v["sram_1mb_64bit_pj"])),
            dram_64bit=v["dram_64bit_pj"])
    except OSError as err:
        raise PerfModelError(f"{path}: cannot read the energy table ({err.strerror})") from None
    except (ValueError, KeyError, TypeError) as err:
        raise PerfModelError(f"{path}: not a valid energy table (missing or bad entry "
                             f"{err})") from None


def buffer_capacity(cfg: HwConfig, buffer: str) -> int:
    return getattr(cfg, f"{buffer}_buffer_bytes")


def energy_report(program_or_work, cfg: HwConfig, table: EnergyTable | None = None) -> dict:
    """Dynamic energy in pJ: ``compute_pj`` (GEMM + ALU), ``sram_pj``, ``dram_pj``,
    ``total_pj``, and the parts (``gemm_pj``, ``alu_pj``, ``sram_pj_by_buffer``,
    ``dram_read_pj``, ``dram_write_pj``)."""
    table = table or load_table()
    work = program_or_work if _is_work(program_or_work) else program_work(program_or_work, cfg)
    gemm = sum(w.accumulations for w in work) * table.mac_pj(cfg)
    alu = sum(w.alu_elems * table.alu_elem_pj(w.alu_op, w.alu_dual, w.alu_residual)
              for w in work if w.opcode == Opcode.ALU)
    sram_by_buffer = {}
    for b in BUFFERS:
        moved = sum(w.sram_read.get(b, 0) + w.sram_write.get(b, 0) for w in work)
        sram_by_buffer[b] = moved * table.sram_pj_per_byte(buffer_capacity(cfg, b))
    dram_read = sum(w.dram_read_bytes for w in work) * table.dram_pj_per_byte
    dram_write = sum(w.dram_write_bytes for w in work) * table.dram_pj_per_byte
    out = {"gemm_pj": gemm, "alu_pj": alu, "compute_pj": gemm + alu,
           "sram_pj": sum(sram_by_buffer.values()), "sram_pj_by_buffer": sram_by_buffer,
           "dram_read_pj": dram_read, "dram_write_pj": dram_write,
           "dram_pj": dram_read + dram_write}
    out["total_pj"] = out["compute_pj"] + out["sram_pj"] + out["dram_pj"]
    return out


def _is_work(x) -> bool:
    return isinstance(x, list) and all(isinstance(w, InsnWork) for w in x) and bool(x)
