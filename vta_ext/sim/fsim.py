"""The functional simulator: the executable specification of the ISA (docs/isa.md).

``simulate(program, cfg)`` runs a :class:`~vta_ext.program.Program` bit-exactly with numpy
and returns the final DRAM image and per-instruction statistics. Any fault (a malformed
instruction, an address outside DRAM or a buffer, an invalid ternary code, a read of
never-written SRAM, an int32 overflow, a token deadlock, a race between modules that no
token orders (``ordering.py``)) raises ``SimulatorError`` naming
the instruction; the program's own DRAM image is never modified, so no partial result
escapes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tvm_ternary.errors import IsaError, SimulatorError

from .. import isa
from ..config import HwConfig
from ..isa import MemType, Opcode
from ..program import DramImage, Program
from . import compute, dma
from .state import InsnStats, Machine, Trap

MODULES = ("load", "compute", "store")
# (module, direction) -> token queue; a module's "prev" is the one before it in the pipeline
_POP = {("compute", "prev"): "l2c", ("load", "next"): "c2l",
        ("store", "prev"): "c2s", ("compute", "next"): "s2c"}
_PUSH = {("load", "next"): "l2c", ("compute", "prev"): "c2l",
         ("compute", "next"): "c2s", ("store", "prev"): "s2c"}
_EXECUTE = {Opcode.LOAD: dma.load, Opcode.STORE: dma.store, Opcode.GEMM: compute.gemm,
            Opcode.ALU: compute.alu, Opcode.FINISH: lambda m, insn, stats: None}


@dataclass
class SimResult:
    dram: DramImage
    stats: list[InsnStats]
    leftover_tokens: dict[str, int] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        """Sums over the program, with DRAM bytes per memory type."""
        out = {"macs": 0, "uop_execs": 0, "alu_elems": 0, "dram_read_bytes": 0,
               "dram_write_bytes": 0}
        for s in self.stats:
            for k in ("macs", "uop_execs", "alu_elems", "dram_read_bytes", "dram_write_bytes"):
                out[k] += getattr(s, k)
            if s.mem:
                key = f"dram_bytes_{s.mem.lower()}"
                out[key] = out.get(key, 0) + s.dram_read_bytes + s.dram_write_bytes
        return out


def module_of(insn) -> str:
    """Which module executes ``insn`` (docs/isa.md, "Token protocol")."""
    if insn.opcode == Opcode.LOAD:
        # PAR moved to the load module in ISA v1.4 (its DMA is idle most of a sparse layer)
        return "load" if insn.mem in (MemType.INP, MemType.WGT, MemType.PAR) else "compute"
    if insn.opcode == Opcode.STORE:
        return "store"
    return "compute"


def overlapped(insn) -> bool:
    """An ALU that runs on the compute module's epilogue unit (docs/isa.md, ALU overlap)."""
    return insn.opcode == Opcode.ALU and bool(insn.overlap)


def decode_program(insns) -> list:
    """Instructions as the hardware would see them: each object is encoded and decoded
    again (so only encodable instructions run); raw bytes are a stream."""
    if isinstance(insns, (bytes, bytearray)):
        if len(insns) % isa.INSN_BYTES:
            raise SimulatorError(f"instruction stream of {len(insns)} bytes is not a whole number "
                                 f"of {isa.INSN_BYTES}-byte instructions")
        words = [int.from_bytes(insns[i:i + isa.INSN_BYTES], "little")
                 for i in range(0, len(insns), isa.INSN_BYTES)]
    else:
        words = list(insns)
    out = []
    for i, w in enumerate(words):
        try:
            out.append(isa.decode(w if isinstance(w, int) else isa.encode(w)))
        except IsaError as err:
            raise SimulatorError(f"malformed instruction: {err}", i) from None
    return out


def _check_structure(insns: list) -> list[str]:
    finishes = [i for i, insn in enumerate(insns) if insn.opcode == Opcode.FINISH]
    if not finishes:
        raise SimulatorError("program has no FINISH instruction", len(insns))
    if finishes[0] != len(insns) - 1:
        raise SimulatorError("instruction after FINISH (FINISH must be last)", finishes[0] + 1)
    modules = []
    for i, insn in enumerate(insns):
        mod = module_of(insn)
        if mod == "load" and (insn.pop_prev or insn.push_prev):
            raise SimulatorError("the load module has no previous module: pop_prev/push_prev "
                                 "must be 0", i)
        if mod == "store" and (insn.pop_next or insn.push_next):
            raise SimulatorError("the store module has no next module: pop_next/push_next "
                                 "must be 0", i)
        modules.append(mod)
    return modules


def _pops(insn, mod) -> list[str]:
    return [_POP[(mod, d)] for d in ("prev", "next") if getattr(insn, f"pop_{d}")]


def _pushes(insn, mod) -> list[str]:
    return [_PUSH[(mod, d)] for d in ("prev", "next") if getattr(insn, f"push_{d}")]


def simulate(program: Program, cfg: HwConfig) -> SimResult:
    """Run ``program`` on ``cfg``; the returned DRAM image is a new copy."""
    insns = decode_program(program.insns)
    modules = _check_structure(insns)
    dram = program.dram.copy()
    machine = Machine(cfg, dram.data)
    queues = {mod: deque(i for i, m in enumerate(modules) if m == mod) for mod in MODULES}
    tokens = {q: 0 for q in ("l2c", "c2l", "c2s", "s2c")}
    stats: list[InsnStats | None] = [None] * len(insns)
    while any(queues.values()):
        runnable = None
        for idx in sorted(q[0] for q in queues.values() if q):  # lowest program index first
            if all(tokens[q] > 0 for q in _pops(insns[idx], modules[idx])):
                runnable = idx
                break
        if runnable is None:
            raise SimulatorError(_deadlock_message(insns, modules, queues, tokens),
                                 min(q[0] for q in queues.values() if q))
        idx, insn, mod = runnable, insns[runnable], modules[runnable]
        queues[mod].popleft()
        if insn.opcode in (Opcode.ALU, Opcode.FINISH):  # both wait for the ALU unit
            machine.order.join_epilogue()
        machine.order.begin("epilogue" if overlapped(insn) else mod, idx)
        for q in _pops(insn, mod):
            tokens[q] -= 1
            machine.order.pop(q)
        s = InsnStats(index=idx, opcode=insn.opcode.name, module=mod,
                      mem=insn.mem.name if hasattr(insn, "mem") else None)
        try:
            _EXECUTE[insn.opcode](machine, insn, s)
        except Trap as err:
            raise SimulatorError(str(err), idx) from None
        stats[idx] = s
        for q in _pushes(insn, mod):
            tokens[q] += 1
            machine.order.push(q)
    return SimResult(dram=dram, stats=stats, leftover_tokens={q: n for q, n in tokens.items() if n})


def _deadlock_message(insns, modules, queues, tokens) -> str:
    waits = []
    for mod in MODULES:
        if queues[mod]:
            idx = queues[mod][0]
            empty = [q for q in _pops(insns[idx], mod) if tokens[q] == 0]
            waits.append(f"{mod} waits at instruction {idx} ({isa.disasm(insns[idx])}) on empty "
                         f"{', '.join(empty)}")
        else:
            waits.append(f"{mod} is done")
    return "token deadlock (a pop with no matching push): " + "; ".join(waits)
