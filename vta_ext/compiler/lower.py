"""``compile_layer``: one ternary layer (a ``LayerSpec``) -> an accelerator program.

The result holds the Program (instructions + DRAM image with weights, parameters and
micro-ops in place), the DRAM regions of the input and the output, and the functions that
turn the layer's input into the input region's bytes and the output region's bytes back
into the layer's output, so a runtime (fsim or RTL) can run it:

    cl = compile_layer(spec, HwConfig.load("default"))
    result = simulate(cl.bind(x), cl.hw)
    y = cl.read_output(result.dram)        # == spec.reference(x)

By default the layer is scheduled as one tvm.s_tir PrimFunc from the knobs of
``schedule.Schedule`` and walked into the instruction stream (the TIR route,
docs/vta_lowering.md); ``lowering="loops"`` is the direct Python loop-nest emitter
(``emit.py``) behind the same knobs, the reference the TIR route is tested against.
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
from .emit import ACCUMULATE, LayerEmitter, Regions
from .geometry import ConvProblem, check_residual_input, problem_of
from .layer import LayerSpec
from .schedule import Schedule, check_schedule, default_schedule, schedule_space
from .tir_program import TirRoute, tir_epilogue
from .tir_vthread import ThreadedEmitter

INPUT_REGION, OUTPUT_REGION, RESIDUAL_REGION = "input", "output", "residual"


def elem_bytes(hw: HwConfig, mem: MemType) -> int:
    """Bytes of one DRAM element of ``mem`` (docs/isa.md, "DRAM layouts")."""
    return {MemType.UOP: isa.UOP_BYTES, MemType.INP: hw.inp_block_bytes,
            MemType.WGT: hw.wgt_block_bytes, MemType.PAR: hw.par_block_bytes,
            MemType.OUT: hw.out_block_bytes, MemType.ACC: hw.acc_block_bytes}[mem]


def output_mem(spec: LayerSpec) -> MemType:
    """What the output region holds: int32 accumulators (the host finishes a dequantize
    layer) or activations."""
    return MemType.ACC if spec.stores_accumulators else MemType.OUT


@dataclass
class LayerStats:
    """Static counts of the compiled program (the simulator measures the dynamic ones)."""

    instructions: int
    gemm_uops: int              # GEMM micro-ops emitted (one per nonzero block triple)
    weight_blocks: int          # weight blocks stored in DRAM (all loaded at least once)
    skipped_weight_blocks: int  # all-zero blocks left out
    useful_macs: int            # the layer's unpadded MACs (zero weights included)
    issued_useful_macs: int     # unpadded MACs of the blocks issued (skipped ones left out)
    lowering: str = "loops"     # the route that produced the program (LOWERINGS)


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
    residual_region: Region | None = None  # the second input of a fused residual layer

    def pack_input(self, x) -> bytes:
        """The input region's bytes for the layer input ``x`` (shape ``spec.input_shape``)."""
        x4 = images.canonical_input(self.spec, self.problem, x)
        return images.pack_input(self.problem, self.hw, x4)

    def pack_residual(self, r) -> bytes:
        """The residual region's bytes for the residual input ``r`` (the output's shape)."""
        r4 = images.canonical_output(self.spec, self.problem, check_residual_input(self.spec, r))
        return images.pack_output(self.problem, self.hw, r4)

    def unpack_output(self, raw) -> np.ndarray:
        """The layer output (int8, the reference's shape) from the output region's bytes;
        for a layer that stores accumulators, the host epilogue's float32 output."""
        raw = bytes(raw)
        if len(raw) != self.output_region.size:
            raise ShapeMismatchError(f"layer {self.spec.name}: output region is "
                                     f"{self.output_region.size} bytes, got {len(raw)}")
        if self.spec.stores_accumulators:
            return self.spec.host_epilogue(*self.unpack_accumulators(raw))
        out4 = images.unpack_output(self.problem, self.hw, raw)
        return images.layer_output(self.spec, self.problem, out4)

    def unpack_accumulators(self, raw) -> tuple[np.ndarray, np.ndarray]:
        """``(acc_p, acc_n)`` in the layer's output layout from an accumulator output region
        (a single-accumulator layer: ``(acc_p - acc_n, 0)``)."""
        accs = images.unpack_accumulators(self.problem, self.hw, raw)
        return tuple(images.layer_output(self.spec, self.problem, a, np.int64) for a in accs)

    def bind(self, x, residual=None) -> Program:
        """A copy of the program with ``x`` (and a fused residual layer's ``residual``)
        written into its input region(s)."""
        if self.spec.has_residual != (residual is not None):
            raise ShapeMismatchError(f"layer {self.spec.name}: a residual input is "
                                     f"{'required' if self.spec.has_residual else 'unexpected'}")
        dram = self.program.dram.copy()
        parts = [(self.input_region, self.pack_input(x))]
        if residual is not None:
            parts.append((self.residual_region, self.pack_residual(residual)))
        for r, data in parts:
            dram.data[r.offset:r.offset + r.size] = np.frombuffer(data, dtype=np.uint8)
        return Program(insns=list(self.program.insns), dram=dram)

    def read_output(self, dram: DramImage) -> np.ndarray:
        return self.unpack_output(dram.read(OUTPUT_REGION).tobytes())


def layer_schedules(spec: LayerSpec, hw: HwConfig) -> list[Schedule]:
    """The schedules the tuner may choose from for ``spec`` on ``hw`` (all valid)."""
    return schedule_space(problem_of(spec, hw), hw)


LOWERINGS = ("loops", "tir")


def compile_layer(spec: LayerSpec, hw: HwConfig, schedule: Schedule | None = None,
                  lowering: str = "tir") -> CompiledLayer:
    """Lower ``spec`` for ``hw``; AcceleratorLayerError (naming the layer and field) if the
    accelerator cannot run it, KernelConfigError if an explicit ``schedule`` does not fit.

    ``lowering="tir"`` schedules the whole layer as one tvm.s_tir PrimFunc (``tir_layer``)
    and walks it (``tir_walk``, ``tir_program``); ``"loops"`` is the emitter's own loop nest,
    the reference route: both give the same program (tests/vta/compiler/test_tir_lowering.py)."""
    if lowering not in LOWERINGS:
        raise KernelConfigError(f"layer {spec.name}: lowering {lowering!r} is not one of {LOWERINGS}")
    p = problem_of(spec, hw)
    if schedule is None:
        zero = images.zero_block_map(spec, p) if hw.zero_block_skip else np.zeros(1, bool)
        schedule = default_schedule(p, hw, density=max(1.0 - float(zero.mean()), 0.01))
    s = schedule
    check_schedule(p, s, hw)
    clamp = (spec.lo, spec.hi) if spec.epilogue == "requantize" else (0, 0)
    epilogue = ACCUMULATE if spec.stores_accumulators else spec.epilogue
    if s.virtual_threads > 1 and lowering != "tir":
        raise KernelConfigError(f"layer {spec.name}: virtual_threads = {s.virtual_threads} "
                                f"exists in the TIR lowering only, not in {lowering!r}")
    builder = ThreadedEmitter if s.virtual_threads > 1 else LayerEmitter
    emitter = builder(p, s, hw, epilogue, clamp, spec.pad_value, spec.has_residual)
    route = TirRoute(p, s, tir_epilogue(spec)) if lowering == "tir" else None
    wblocks = images.weight_blocks(spec, p)
    weights = route.plan_weights(wblocks, s.skips_zero_blocks(hw)) if route \
        else emitter.plan_weights(wblocks)

    dram = DramImage()

    def place(name, data, mem):
        return dram.add(name, data, align=elem_bytes(hw, mem))

    def alloc(name, elems, mem):
        return dram.alloc(name, elems * elem_bytes(hw, mem), align=elem_bytes(hw, mem))

    inp = alloc(INPUT_REGION, images.input_blocks(p), MemType.INP)
    out_mem = output_mem(spec)
    out = alloc(OUTPUT_REGION, images.output_blocks(p) * (p.pairs if out_mem == MemType.ACC
                                                          else 1), out_mem)
    res = alloc(RESIDUAL_REGION, images.output_blocks(p), MemType.OUT) if spec.has_residual \
        else None
    par = place("par", images.par_image(spec, p, hw), MemType.PAR)
    wgt_blocks = np.asarray(weights.blocks, dtype=np.int8).reshape(-1, hw.block_out, hw.block_in)
    wgt = place("wgt", layout.pack_wgt(wgt_blocks, hw), MemType.WGT) if len(weights.blocks) \
        else None
    regions = Regions(inp=inp.element(elem_bytes(hw, MemType.INP)),
                      out=out.element(elem_bytes(hw, out_mem)),
                      wgt=wgt.element(elem_bytes(hw, MemType.WGT)) if wgt else 0,
                      par=par.element(elem_bytes(hw, MemType.PAR)),
                      res=res.element(elem_bytes(hw, MemType.OUT)) if res else 0)
    insns = route.emit(emitter, regions, weights) if route else emitter.run(regions, weights)
    uop_words = emitter.uops.image()
    if uop_words.size:
        uop = place("uop", uop_words, MemType.UOP)
        emitter.uops.patch(insns, uop.element(elem_bytes(hw, MemType.UOP)))
    stats = LayerStats(instructions=len(insns), gemm_uops=emitter.gemm_uops,
                       weight_blocks=len(weights.blocks), skipped_weight_blocks=weights.skipped,
                       useful_macs=p.useful_macs,
                       issued_useful_macs=_issued_useful_macs(spec, p, s.skips_zero_blocks(hw)),
                       lowering=lowering)
    return CompiledLayer(spec=spec, hw=hw, schedule=s, problem=p,
                         program=Program(insns=insns, dram=dram), input_region=inp,
                         output_region=out, stats=stats, residual_region=res)


def _issued_useful_macs(spec: LayerSpec, p: ConvProblem, skip_zero: bool) -> int:
    """Real (unpadded) channel pairs of every weight block issued, times the pixels and
    images each is applied to: the GEMM work a utilization figure should count."""
    real_out = np.minimum(p.block_out, p.out_g - np.arange(p.out_blocks) * p.block_out)
    real_in = np.minimum(p.block_in, p.cin_g - np.arange(p.in_blocks) * p.block_in)
    pairs = real_out[:, None, None, None] * real_in[None, :, None, None]  # [nob, ncb, 1, 1]
    issued = ~images.zero_block_map(spec, p) if skip_zero else \
        np.ones((p.groups, p.out_blocks, p.in_blocks, p.kh, p.kw), dtype=bool)
    return int((issued * pairs[None]).sum()) * p.images * p.oh * p.ow
