"""One call for both models: what ``cm.stats``, the benchmark, the tuner and the
design-space explorer ask of a program (docs/cycle_energy.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import HwConfig
from .cycles import CycleReport, cycle_report
from .energy import EnergyTable, energy_report
from .work import InsnWork, program_work


@dataclass
class PerfReport:
    cycles: CycleReport
    energy: dict  # energy.energy_report
    work: list[InsnWork]
    clock_mhz: float

    @property
    def seconds(self) -> float:
        return self.cycles.total_cycles / (self.clock_mhz * 1e6)

    def stats(self) -> dict:
        """Flat, JSON-ready summary (the ``cm.stats`` keys of docs/cycle_energy.md)."""
        c = self.cycles
        return {
            "cycles": c.total_cycles,
            "seconds": self.seconds,
            "busy_cycles": dict(c.busy_cycles),
            "useful_macs": c.useful_macs,
            "gemm_utilization": c.gemm_utilization,
            "dram_bytes": c.dram_bytes,
            "dram_read_bytes": dict(c.dram_read_bytes),
            "dram_write_bytes": dict(c.dram_write_bytes),
            "dram_bound_cycles": c.dram_bound_cycles,
            "energy_pj": self.energy["total_pj"],
            "energy_breakdown_pj": {k: self.energy[k] for k in
                                    ("compute_pj", "sram_pj", "dram_pj", "gemm_pj", "alu_pj")},
        }


def estimate(program, cfg: HwConfig, useful_macs: int | None = None,
             table: EnergyTable | None = None) -> PerfReport:
    """Cycle and energy reports of ``program`` (a Program, instruction list or stream).

    ``useful_macs``: the layer's unpadded MACs, for GEMM-core utilization; by default the
    MAC slots the program issues.
    """
    work = program_work(program, cfg)
    cycles = cycle_report(program, cfg, useful_macs=useful_macs, work=work)
    return PerfReport(cycles=cycles, energy=energy_report(work, cfg, table), work=work,
                      clock_mhz=cfg.clock_mhz)
