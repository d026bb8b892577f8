"""The cycle model: per-module timing with dependency tokens and DRAM bandwidth.

Three modules (load, compute, store; docs/isa.md "Token protocol") each run their own
instructions in program order and overlap with each other, as in VTA. An instruction
starts when its module has finished the previous one and every token it pops is
available; a token becomes available when the instruction pushing it finishes. The k-th
pop of a queue takes the k-th push (a queue is a counter). Durations (docs/cycle_energy.md):

* LOAD / STORE: ``DMA_LATENCY_CYCLES + ceil(DRAM bytes / dram_bus_bytes)``, plus one
  cycle per padding entry a LOAD writes (padding costs SRAM writes, no DRAM traffic);
* GEMM: ``GEMM_PIPELINE_CYCLES`` + one cycle per micro-op iteration (one
  ``batch x block_in x block_out`` block; a dual GEMM updates both accumulators at once);
* ALU: ``ALU_PIPELINE_CYCLES`` + one cycle per micro-op iteration (one accumulator block);
  an ALU with the ``overlap`` bit runs on the compute module's ALU unit while the module
  issues its next instructions after ``OVERLAP_ISSUE_CYCLES``; the next ALU and FINISH
  wait for the unit;
* FINISH: ``FINISH_CYCLES``.

Each module has its own DMA engine at ``dram_bus_bytes`` per cycle; concurrent transfers
of different modules do not slow each other down. STOREs use an AXI port's write channel,
independent of its read channel, so this is optimistic only where compute-module loads
(UOP/ACC/PAR) overlap load-module loads; ``dram_bound_cycles`` is the floor one AXI port
would impose (reads or writes at the bus width), reported so the gap is visible.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from tvm_ternary.errors import PerfModelError, SimulatorError

from ..config import HwConfig
from ..isa import Opcode, disasm
# The token protocol's single source is the functional simulator (private names there;
# asked to be made public).
from .fsim import MODULES, _check_structure, _pops, _pushes, overlapped
from .work import InsnWork, instructions_of, insn_work

# Cycles from a DMA request to its first beat (AXI read latency of a Zynq HP port at the
# fabric clock is a few tens of cycles); paid once per LOAD/STORE, bursts are pipelined.
# An assumption until the RTL's DMA is measured: the one place to change it.
DMA_LATENCY_CYCLES = 32
# Pipeline fill of the GEMM core: uop fetch, index computation, SRAM read, multiply /
# adder tree, accumulator write.
GEMM_PIPELINE_CYCLES = 5
# Pipeline fill of the ALU: uop fetch, index computation, SRAM read, op (REQUANT's
# multiply-and-shift included), accumulator write.
ALU_PIPELINE_CYCLES = 5
FINISH_CYCLES = 1
# Cycles the compute module spends handing an overlapped ALU to the epilogue unit before
# it issues its next instruction.
OVERLAP_ISSUE_CYCLES = 1

QUEUES = ("l2c", "c2l", "c2s", "s2c")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def insn_cycles(w: InsnWork, cfg: HwConfig) -> int:
    """Cycles one instruction occupies its module."""
    if w.opcode in (Opcode.LOAD, Opcode.STORE):
        moved = w.dram_read_bytes + w.dram_write_bytes
        return DMA_LATENCY_CYCLES + _ceil_div(moved, cfg.dram_bus_bytes) + w.pad_elems
    if w.opcode == Opcode.GEMM:
        return GEMM_PIPELINE_CYCLES + w.uop_execs
    if w.opcode == Opcode.ALU:
        return ALU_PIPELINE_CYCLES + w.uop_execs
    return FINISH_CYCLES


@dataclass
class CycleReport:
    total_cycles: int
    busy_cycles: dict[str, int]  # per module, and "epilogue" (overlapped ALUs)
    useful_macs: int
    gemm_utilization: float  # useful MACs / (batch * block_in * block_out * total cycles)
    dram_read_bytes: dict[str, int]  # per memory type (lower-case name)
    dram_write_bytes: dict[str, int]
    dram_bound_cycles: int  # max(read, write bytes) / dram_bus_bytes: one AXI port's floor
    start: list[int] = field(default_factory=list)  # per instruction
    finish: list[int] = field(default_factory=list)
    leftover_tokens: dict[str, int] = field(default_factory=dict)

    @property
    def dram_bytes(self) -> int:
        return sum(self.dram_read_bytes.values()) + sum(self.dram_write_bytes.values())

    def seconds(self, cfg: HwConfig) -> float:
        return self.total_cycles / (cfg.clock_mhz * 1e6)


def _schedule(insns: list, work: list[InsnWork], durations: list[int]):
    """Start and finish cycle of every instruction (a longest-path walk in program order
    per module); SimulatorError naming the blocked instruction on a token deadlock."""
    order = {m: [w.index for w in work if w.module == m] for m in MODULES}
    head = {m: 0 for m in MODULES}
    free = {m: 0 for m in MODULES}
    alu_free = 0  # the compute module's ALU unit (busy past free["compute"] when overlapped)
    # per queue: when the last overlapped ALU popping it started (later pops wait for it)
    pop_floor = {q: 0 for q in QUEUES}
    pushed = {q: [] for q in QUEUES}  # finish cycle of each push, in push order
    popped = {q: 0 for q in QUEUES}
    start, finish = [0] * len(insns), [0] * len(insns)
    remaining = len(insns)
    while remaining:
        progressed = False
        for m in MODULES:
            while head[m] < len(order[m]):
                i = order[m][head[m]]
                pops = _pops(insns[i], m)
                if any(popped[q] >= len(pushed[q]) for q in pops):
                    break  # waits for a push another module has not made yet
                ready = [pushed[q][popped[q]] for q in pops] + [pop_floor[q] for q in pops]
                waits_alu = insns[i].opcode in (Opcode.ALU, Opcode.FINISH)
                issue = max(free[m], alu_free if waits_alu else 0)
                if overlapped(insns[i]):  # the ALU unit waits for its tokens, not the module
                    start[i] = max([issue] + ready)
                    finish[i] = alu_free = start[i] + durations[i]
                    free[m] = issue + min(OVERLAP_ISSUE_CYCLES, durations[i])
                    for q in pops:
                        pop_floor[q] = start[i]
                else:
                    start[i] = max([issue] + ready)
                    finish[i] = free[m] = start[i] + durations[i]
                    if insns[i].opcode == Opcode.ALU:
                        alu_free = finish[i]
                for q in pops:
                    popped[q] += 1
                for q in _pushes(insns[i], m):
                    # a queue counts pushes in order: one cannot overtake an earlier one
                    pushed[q].append(max(finish[i], pushed[q][-1] if pushed[q] else 0))
                head[m] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise SimulatorError(_deadlock_message(insns, order, head, pushed, popped),
                                 min(order[m][head[m]] for m in MODULES if head[m] < len(order[m])))
    leftover = {q: len(pushed[q]) - popped[q] for q in QUEUES if len(pushed[q]) > popped[q]}
    return start, finish, leftover


def _busy(insns, work, durations) -> dict[str, int]:
    """Cycles each module is occupied; an overlapped ALU occupies the compute module for
    its issue cycle and the epilogue unit ("epilogue") for its whole duration."""
    busy = {m: 0 for m in MODULES} | {"epilogue": 0}
    for insn, w, d in zip(insns, work, durations):
        if overlapped(insn):
            busy["compute"] += min(OVERLAP_ISSUE_CYCLES, d)
            busy["epilogue"] += d
        else:
            busy[w.module] += d
    return busy


def _deadlock_message(insns, order, head, pushed, popped) -> str:
    waits = []
    for m in MODULES:
        if head[m] < len(order[m]):
            i = order[m][head[m]]
            empty = [q for q in _pops(insns[i], m) if popped[q] >= len(pushed[q])]
            waits.append(f"{m} waits at instruction {i} ({disasm(insns[i])}) on empty "
                         f"{', '.join(empty)}")
    return "token deadlock (a pop with no matching push): " + "; ".join(waits)


def _dram_by_mem(work: list[InsnWork], attr: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in work:
        n = getattr(w, attr)
        if n:
            key = w.mem.name.lower()
            out[key] = out.get(key, 0) + n
    return out


def _checked_useful_macs(useful_macs, slots: int) -> int:
    # More useful MACs than issued slots would make utilization exceed 1: the count
    # includes work the program never does (e.g. MACs of skipped all-zero weight blocks).
    if isinstance(useful_macs, bool) or not isinstance(useful_macs, numbers.Integral) \
            or useful_macs < 0:
        raise PerfModelError(f"useful_macs must be an integer >= 0, got {useful_macs!r}")
    if useful_macs > slots:
        raise PerfModelError(f"useful_macs = {useful_macs} exceeds the {slots} MAC slots the "
                             f"program's GEMMs issue (does it count skipped zero blocks?)")
    return int(useful_macs)


def cycle_report(program, cfg: HwConfig, useful_macs: int | None = None,
                 work: list[InsnWork] | None = None) -> CycleReport:
    """Time ``program`` (a Program, instruction list or stream) on ``cfg``.

    ``useful_macs`` are the layer's unpadded MACs; by default, every MAC slot the GEMM
    instructions issue (padding included, so an upper bound of the useful work).
    """
    insns = instructions_of(program)
    _check_structure(insns)  # FINISH last, no token bits towards a missing module
    if work is None:
        work = [insn_work(i, insn, cfg) for i, insn in enumerate(insns)]
    durations = [insn_cycles(w, cfg) for w in work]
    start, finish, leftover = _schedule(insns, work, durations)
    total = max(finish, default=0)
    busy = _busy(insns, work, durations)
    slots = sum(w.mac_slots for w in work)
    macs = slots if useful_macs is None else _checked_useful_macs(useful_macs, slots)
    util = macs / (cfg.macs_per_cycle * total) if total else 0.0
    busiest_channel = max(sum(w.dram_read_bytes for w in work),
                          sum(w.dram_write_bytes for w in work))
    return CycleReport(
        total_cycles=total, busy_cycles=busy, useful_macs=macs, gemm_utilization=util,
        dram_read_bytes=_dram_by_mem(work, "dram_read_bytes"),
        dram_write_bytes=_dram_by_mem(work, "dram_write_bytes"),
        dram_bound_cycles=_ceil_div(busiest_channel, cfg.dram_bus_bytes),
        start=start, finish=finish, leftover_tokens=leftover)
