"""``compile_layer``: one ternary layer (a ``LayerSpec``) -> an accelerator program.

The result holds the Program (instructions + DRAM image with weights, parameters and
micro-ops in place), the DRAM regions of the input and the output, and the functions that
turn the layer's input into the input region's bytes and the output region's bytes back
into the layer's output, so a runtime (fsim or RTL) can run it:

    cl = compile_layer(spec, HwConfig.load("default"))
    result = simulate(cl.bind(x), cl.hw)
    y = cl.read_output(result.dram)        # == spec.reference(x)

This is a direct Python loop-nest emitter (``emit.py``) driven by the knobs of
``schedule.Schedule``; a TIR-scheduled route can replace the emitter behind the same knobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_ternary.errors import KernelConfigError, ShapeMismatchError

from .. import isa, layout
from ..config import HwConfig
from ..isa import MemType
from ..program import DramImage, Program, Region
from . import images
from .emit import LayerEmitter, Regions
from .geometry import ConvProblem, problem_of
from .layer import LayerSpec
from .schedule import Schedule, check_schedule, default_schedule, schedule_space

INPUT_REGION, OUTPUT_REGION = "input", "output"


def elem_bytes(hw: HwConfig, mem: MemType) -> int:
    """Bytes of one DRAM element of ``mem`` (docs/isa.md, "DRAM layouts")."""
    return {MemType.UOP: isa.UOP_BYTES, MemType.INP: hw.inp_block_bytes,
            MemType.WGT: hw.wgt_block_bytes, MemType.PAR: hw.par_block_bytes,
            MemType.OUT: hw.out_block_bytes}[mem]


@dataclass
class LayerStats:
    """Static counts of the compiled program (the simulator measures the dynamic ones)."""

    instructions: int
    gemm_uops: int              # GEMM micro-ops emitted (one per nonzero block triple)
    weight_blocks: int          # weight blocks stored in DRAM (all loaded at least once)
    skipped_weight_blocks: int  # all-zero blocks left out
    useful_macs: int            # the layer's unpadded MACs (zero weights included)
    issued_useful_macs: int     # unpadded MACs of the blocks issued (skipped ones left out)


@dataclass
class CompiledLayer:
    spec: LayerSpec
    hw: HwConfig
    schedule: Schedule
    problem: ConvProblem
    program: Program
    input_region: Region
    output_region: Region
    stats: LayerStats

    def pack_input(self, x) -> bytes:
        """The input region's bytes for the layer input ``x`` (shape ``spec.input_shape``)."""
        x4 = images.canonical_input(self.spec, self.problem, x)
        return images.pack_input(self.problem, self.hw, x4)

    def unpack_output(self, raw) -> np.ndarray:
        """The layer output (int8, the reference's shape) from the output region's bytes."""
        raw = bytes(raw)
        if len(raw) != self.output_region.size:
            raise ShapeMismatchError(f"layer {self.spec.name}: output region is "
                                     f"{self.output_region.size} bytes, got {len(raw)}")
        out4 = images.unpack_output(self.problem, self.hw, raw)
        return images.layer_output(self.spec, self.problem, out4)

    def bind(self, x) -> Program:
        """A copy of the program with ``x`` written into its input region."""
        dram = self.program.dram.copy()
        r = self.input_region
        dram.data[r.offset:r.offset + r.size] = np.frombuffer(self.pack_input(x), dtype=np.uint8)
        return Program(insns=list(self.program.insns), dram=dram)

    def read_output(self, dram: DramImage) -> np.ndarray:
        return self.unpack_output(dram.read(OUTPUT_REGION).tobytes())


def layer_schedules(spec: LayerSpec, hw: HwConfig) -> list[Schedule]:
    """The schedules the tuner may choose from for ``spec`` on ``hw`` (all valid)."""
    return schedule_space(problem_of(spec, hw), hw)


LOWERINGS = ("loops", "tir")


def compile_layer(spec: LayerSpec, hw: HwConfig, schedule: Schedule | None = None,
                  lowering: str = "loops") -> CompiledLayer:
    """Lower ``spec`` for ``hw``; AcceleratorLayerError (naming the layer and field) if the
    accelerator cannot run it, KernelConfigError if an explicit ``schedule`` does not fit.

    ``lowering="tir"`` takes each step's block products from the tvm.s_tir-scheduled,
    tensorized and walked GEMM (``tir_gemm``; batch-1 configurations, about a second per
    layer) instead of the emitter's own loop nest; the programs are identical."""
    if lowering not in LOWERINGS:
        raise KernelConfigError(f"layer {spec.name}: lowering {lowering!r} is not one of {LOWERINGS}")
    p = problem_of(spec, hw)
    if schedule is None:
        zero = images.zero_block_map(spec, p) if hw.zero_block_skip else np.zeros(1, bool)
        schedule = default_schedule(p, hw, density=max(1.0 - float(zero.mean()), 0.01))
    s = schedule
    check_schedule(p, s, hw)
    clamp = (spec.lo, spec.hi) if spec.epilogue == "requantize" else (0, 0)
    emitter = LayerEmitter(p, s, hw, spec.epilogue, clamp, spec.pad_value)
    products_of = None
    if lowering == "tir":
        from .tir_gemm import step_products  # imports tvm: only on this route

        products_of = step_products(p, s)
    weights = emitter.plan_weights(images.weight_blocks(spec, p), products_of)

    dram = DramImage()

    def place(name, data, mem):
        return dram.add(name, data, align=elem_bytes(hw, mem))

    def alloc(name, elems, mem):
        return dram.alloc(name, elems * elem_bytes(hw, mem), align=elem_bytes(hw, mem))

    inp = alloc(INPUT_REGION, images.input_blocks(p), MemType.INP)
    out = alloc(OUTPUT_REGION, images.output_blocks(p), MemType.OUT)
    par = place("par", images.par_image(spec, p, hw), MemType.PAR)
    wgt_blocks = np.asarray(weights.blocks, dtype=np.int8).reshape(-1, hw.block_out, hw.block_in)
    wgt = place("wgt", layout.pack_wgt(wgt_blocks, hw), MemType.WGT) if len(weights.blocks) \
        else None
    regions = Regions(inp=inp.element(elem_bytes(hw, MemType.INP)),
                      out=out.element(elem_bytes(hw, MemType.OUT)),
                      wgt=wgt.element(elem_bytes(hw, MemType.WGT)) if wgt else 0,
                      par=par.element(elem_bytes(hw, MemType.PAR)))
    insns = emitter.run(regions, weights)
    uop_words = emitter.uops.image()
    if uop_words.size:
        uop = place("uop", uop_words, MemType.UOP)
        emitter.uops.patch(insns, uop.element(elem_bytes(hw, MemType.UOP)))
    stats = LayerStats(instructions=len(insns), gemm_uops=emitter.gemm_uops,
                       weight_blocks=len(weights.blocks), skipped_weight_blocks=weights.skipped,
                       useful_macs=p.useful_macs,
                       issued_useful_macs=_issued_useful_macs(spec, p, s.skips_zero_blocks(hw)))
    return CompiledLayer(spec=spec, hw=hw, schedule=s, problem=p,
                         program=Program(insns=insns, dram=dram), input_region=inp,
                         output_region=out, stats=stats)


def _issued_useful_macs(spec: LayerSpec, p: ConvProblem, skip_zero: bool) -> int:
    """Real (unpadded) channel pairs of every weight block issued, times the pixels and
    images each is applied to: the GEMM work a utilization figure should count."""
    real_out = np.minimum(p.block_out, p.out_g - np.arange(p.out_blocks) * p.block_out)
    real_in = np.minimum(p.block_in, p.cin_g - np.arange(p.in_blocks) * p.block_in)
    pairs = real_out[:, None, None, None] * real_in[None, :, None, None]  # [nob, ncb, 1, 1]
    issued = ~images.zero_block_map(spec, p) if skip_zero else \
        np.ones((p.groups, p.out_blocks, p.in_blocks, p.kh, p.kw), dtype=bool)
    return int((issued * pairs[None]).sum()) * p.images * p.oh * p.ow
