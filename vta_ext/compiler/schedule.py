"""Schedule knobs of one accelerator layer: the tiling, double buffering and loop order the
tuner searches, what each costs in on-chip buffer space, and the space of valid choices.

A tile is ``tile_out_blocks`` output-channel blocks x ``tile_rows`` x ``tile_cols`` output
pixels, accumulated over reduction steps of ``tile_in_blocks`` input-channel blocks (each
with all kernel taps). ``double_buffer`` gives the input, weight and accumulator buffers
two slots each, so the next step's loads overlap this step's GEMM. ``reuse`` is the loop order: "weight" keeps a weight tile resident
across spatial tiles, "input" keeps an input tile resident across output-channel tiles.
``virtual_threads`` = 2 runs two output-channel tiles as two virtual threads of the TIR (the
old VTA's ``cthread``): their steps interleave and share one input load, each thread has its
own accumulator and weight slots (TIR route only; docs/vta_lowering.md).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from tvm_ternary.errors import AcceleratorLayerError, KernelConfigError

from ..config import HwConfig
from ..isa import Opcode
from .geometry import ConvProblem, ceil_div, isa_field_max

REUSE = ("weight", "input")
VIRTUAL_THREADS = (1, 2)
_ITER_MAX = isa_field_max(Opcode.GEMM, "iter_out")
_FACTOR_MAX = isa_field_max(Opcode.GEMM, "src_factor_out")
Y_SIZE_MAX = isa_field_max(Opcode.LOAD, "y_size")
X_SIZE_MAX = isa_field_max(Opcode.LOAD, "x_size")
X_STRIDE_MAX = isa_field_max(Opcode.LOAD, "x_stride")
_STEP_OVERHEAD_BYTES = 64  # an instruction plus its setup, in DRAM-byte equivalents


@dataclass(frozen=True)
class Schedule:
    tile_out_blocks: int
    tile_in_blocks: int
    tile_rows: int
    tile_cols: int
    double_buffer: bool = True
    reuse: str = "weight"
    skip_zero_blocks: bool | None = None  # None: HwConfig.zero_block_skip decides
    virtual_threads: int = 1

    def skips_zero_blocks(self, hw: HwConfig) -> bool:
        return hw.zero_block_skip if self.skip_zero_blocks is None else self.skip_zero_blocks

    @property
    def slots(self) -> int:
        return 2 if self.double_buffer else 1

    def to_dict(self) -> dict:
        """The knobs as plain values (a tuning log's config)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, knobs: dict) -> Schedule:
        """Inverse of :meth:`to_dict`; KernelConfigError naming unknown or missing knobs."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(knobs) - set(fields))
        missing = sorted(n for n, f in fields.items()
                         if n not in knobs and f.default is dataclasses.MISSING)
        if unknown or missing:
            raise KernelConfigError(f"schedule knobs: unknown {unknown}, missing {missing}; "
                                    f"knobs are {sorted(fields)}")
        for name in ("tile_out_blocks", "tile_in_blocks", "tile_rows", "tile_cols",
                     "virtual_threads"):
            if name in knobs and (not isinstance(knobs[name], int) or isinstance(knobs[name], bool)):
                raise KernelConfigError(f"schedule knob {name} must be an integer, got {knobs[name]!r}")
        return cls(**knobs)


@dataclass(frozen=True)
class Footprint:
    """Entries one slot needs in each buffer (and the largest micro-op segment)."""

    inp: int
    wgt: int
    acc: int
    uop: int


def footprint(p: ConvProblem, s: Schedule) -> Footprint:
    to, tc, th, tw = s.tile_out_blocks, s.tile_in_blocks, s.tile_rows, s.tile_cols
    outputs = to * th * tw
    return Footprint(inp=tc * p.in_rows(th) * p.in_cols(tw), wgt=to * tc * p.kernel_taps,
                     acc=outputs * p.pairs + outputs,  # accumulators, then the results
                     uop=max(to * tc * p.kernel_taps, to))


def misfit(p: ConvProblem, s: Schedule, hw: HwConfig) -> str | None:
    """Why ``s`` cannot run ``p`` on ``hw`` (the knob or buffer at fault), or None."""
    for knob, v, top in (("tile_out_blocks", s.tile_out_blocks, p.out_blocks),
                         ("tile_in_blocks", s.tile_in_blocks, p.in_blocks),
                         ("tile_rows", s.tile_rows, p.oh), ("tile_cols", s.tile_cols, p.ow)):
        if not 1 <= v <= top:
            return f"{knob} = {v} is outside [1, {top}]"
    if s.reuse not in REUSE:
        return f"reuse = {s.reuse!r} is not one of {REUSE}"
    vt = s.virtual_threads
    if vt not in VIRTUAL_THREADS:
        return f"virtual_threads = {vt!r} is not one of {VIRTUAL_THREADS}"
    if vt > 1 and ceil_div(p.out_blocks, s.tile_out_blocks) < vt:
        return (f"virtual_threads = {vt} needs {vt} output-channel tiles, tile_out_blocks = "
                f"{s.tile_out_blocks} of {p.out_blocks} blocks gives one")
    if s.tile_rows > _ITER_MAX or s.tile_cols > _ITER_MAX:
        return f"tile_rows/tile_cols exceed the GEMM loop count limit {_ITER_MAX}"
    if p.loaded_row_stride * p.in_cols(s.tile_cols) > _FACTOR_MAX \
            or s.tile_cols * s.tile_out_blocks * p.pairs > _FACTOR_MAX:
        return (f"tile_cols x tile_out_blocks = {s.tile_cols} x {s.tile_out_blocks} needs a "
                f"GEMM/ALU loop factor above {_FACTOR_MAX}")
    if p.in_rows(s.tile_rows) > Y_SIZE_MAX or p.w * p.row_step > X_STRIDE_MAX \
            or p.ow * p.out_blocks > X_STRIDE_MAX:
        return "a tile's input or output rectangle exceeds the LOAD/STORE size fields"
    f = footprint(p, s)
    # the virtual threads share the input slots and have their own weight, accumulator and
    # parameter entries
    for buf, need, depth in (("inp", f.inp * s.slots, hw.inp_depth),
                             ("wgt", f.wgt * s.slots * vt, hw.wgt_depth),
                             ("acc", f.acc * s.slots * vt, hw.acc_depth),
                             ("uop", f.uop, hw.uop_depth),
                             ("par", s.tile_out_blocks * vt, hw.par_depth)):
        if need > depth:
            threads = f" (virtual_threads = {vt})" if vt > 1 and buf != "inp" else ""
            return f"needs {need} {buf} entries{threads}, the {buf} buffer holds {depth}"
    return None


def check_schedule(p: ConvProblem, s: Schedule, hw: HwConfig) -> None:
    why = misfit(p, s, hw)
    if why:
        raise KernelConfigError(f"layer {p.layer}: schedule {s} does not fit HwConfig "
                                f"{hw.name!r}: {why}")


def _sizes(top: int, dense_upto: int = 32) -> list[int]:
    """Candidate tile extents: every value up to ``dense_upto``, powers of two, and ``top``."""
    out = set(range(1, min(top, dense_upto) + 1)) | {top}
    out |= {1 << i for i in range(top.bit_length()) if 1 << i <= top}
    return sorted(v for v in out if v <= _ITER_MAX)


def _block_sizes(top: int) -> list[int]:
    return sorted({1 << i for i in range(top.bit_length()) if 1 << i <= top} | {top})


def estimated_cost(p: ConvProblem, s: Schedule, hw: HwConfig, density: float = 1.0) -> float:
    """A rough cycle estimate used to pick a default (the cycle model is the real measure):
    DRAM bytes over the bus against GEMM issue (overlapped when double buffered), plus the
    epilogue pass (one cycle per output block; the first-bit micro-ops replace the reset
    pass, and an overlapped epilogue may hide it: an upper bound). ``density`` is the fraction
    of weight blocks issued (zero-block skipping)."""
    n_st = ceil_div(p.oh, s.tile_rows) * ceil_div(p.ow, s.tile_cols)
    n_ot = ceil_div(p.out_blocks, s.tile_out_blocks)
    n_ct = ceil_div(p.in_blocks, s.tile_in_blocks)
    inp_tile = p.in_rows(s.tile_rows) * p.in_cols(s.tile_cols) * p.in_blocks
    wgt_all = p.out_blocks * p.in_blocks * p.kernel_taps * density
    if s.reuse == "weight":
        wgt_loads = wgt_all * (1 if n_ct == 1 else n_st)
        inp_loads = inp_tile * n_st * (1 if n_st == 1 and n_ct == 1 else n_ot)
    else:
        inp_loads = inp_tile * n_st * (1 if n_ct == 1 else n_ot)
        wgt_loads = wgt_all * (1 if n_ot == 1 and n_ct == 1 else n_st)
    steps = n_st * n_ot * n_ct
    dram = inp_loads * hw.inp_block_bytes + wgt_loads * hw.wgt_block_bytes
    load_cycles = dram / hw.dram_bus_bytes + steps * _STEP_OVERHEAD_BYTES
    outputs = p.out_blocks * p.oh * p.ow
    gemm_cycles = (wgt_all * n_st * s.tile_rows * s.tile_cols + outputs
                   + steps * _STEP_OVERHEAD_BYTES)
    scale = p.image_groups * p.groups
    if s.double_buffer:
        return scale * max(load_cycles, gemm_cycles)
    return scale * (load_cycles + gemm_cycles)


def schedule_space(p: ConvProblem, hw: HwConfig) -> list[Schedule]:
    """Every valid schedule of the candidate grid (the space the tuner enumerates)."""
    out = []
    # virtual threads outermost: on equal estimates a one-thread schedule ranks first
    for vt, to, tc, th, tw, db, reuse in itertools.product(
            VIRTUAL_THREADS, _block_sizes(p.out_blocks), _block_sizes(p.in_blocks),
            _sizes(p.oh), _sizes(p.ow, dense_upto=1), (True, False), REUSE):
        s = Schedule(to, tc, th, tw, db, reuse, virtual_threads=vt)
        if misfit(p, s, hw) is None:
            out.append(s)
    return out


def default_schedule(p: ConvProblem, hw: HwConfig, density: float = 1.0) -> Schedule:
    """The cheapest schedule of the space by :func:`estimated_cost`; AcceleratorLayerError
    (naming the layer and the buffer) if no tiling fits the HwConfig."""
    space = schedule_space(p, hw)
    if not space:
        smallest = Schedule(1, 1, 1, 1, double_buffer=False)
        raise AcceleratorLayerError(f"layer {p.layer}: no tiling fits HwConfig {hw.name!r}; even "
                                    f"the smallest tile {misfit(p, smallest, hw) or 'fails'}")
    return min(space, key=lambda s: (estimated_cost(p, s, hw, density), -s.double_buffer,
                                     s.virtual_threads))
