"""Emit the instruction stream of a scheduled layer: the loop-nest emitter.

For each output tile (``tiling.tiles``): per reduction step load the input rectangle and the step's nonzero weight blocks into their buffer slots
(skipped when already resident) and issue one GEMM over all (output block, input block,
tap) micro-ops with the tile's rows and columns as the hardware loops (the first micro-op
of each output block carries the ``first`` bit, so it initializes the accumulators; a
reset GEMM remains only for output blocks without any nonzero weight block); then one ALU
REQUANT/THRESH with per-channel parameters (overlapped with the next tile's GEMMs when the
parameters are resident), and the STOREs of the tile. Slots rotate when
double buffered; ``tokens.Tokens`` turns the reads and writes of slots into dependency
tokens. Weight blocks that are all zero get no micro-op and are neither stored nor loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import isa
from ..config import HwConfig
from ..isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store
from .geometry import ConvProblem
from .schedule import X_SIZE_MAX, X_STRIDE_MAX, Y_SIZE_MAX, Footprint, Schedule, footprint
from .tiling import Span, Tile, tile_inputs, tiles
from .tokens import Tokens
from .uops import UopCache


@dataclass
class WeightPlan:
    """Weight blocks in DRAM, grouped per weight key in the order one LOAD reads them."""

    blocks: list = field(default_factory=list)       # [bo, bi] blocks in DRAM order
    where: dict = field(default_factory=dict)        # key -> (first element, [(obl, cbl, i, j)])
    skipped: int = 0                                 # all-zero blocks left out

    def add(self, key, wblocks: np.ndarray, tile: Tile, step: Span, skip_zero: bool,
            products=None) -> None:
        """Place the weight blocks of one (group, output blocks, input blocks) key. The
        block products are the loop nest's (output block, input block, tap) order, or
        ``products`` (from the TIR route) when given."""
        if key in self.where:
            return
        if products is None:
            products = [(obl, cbl, i, j) for obl in range(tile.out_blocks.size)
                        for cbl in range(step.size) for i in range(wblocks.shape[3])
                        for j in range(wblocks.shape[4])]
        first, entries = len(self.blocks), []
        for obl, cbl, i, j in products:
            block = wblocks[tile.group, tile.out_blocks.start + obl, step.start + cbl, i, j]
            if skip_zero and not block.any():
                self.skipped += 1
                continue
            entries.append((obl, cbl, i, j))
            self.blocks.append(block)
        self.where[key] = (first, entries)


class _Slots:
    """Which key each slot of a double- (or single-) buffered SRAM holds, and its last reader."""

    def __init__(self, count: int, size: int):
        self.size = size
        self.keys = [None] * count
        self.reader = [None] * count

    def find(self, key):
        return self.keys.index(key) if key in self.keys else None

    def claim(self, key) -> int:
        """The least recently read slot: its refill waits for the oldest reader, so it
        overlaps the most recent work (plain alternation when nothing is reused)."""
        slot = min(range(len(self.keys)),
                   key=lambda i: -1 if self.reader[i] is None else self.reader[i])
        self.keys[slot] = key
        return slot


@dataclass
class Regions:
    """DRAM element bases of the layer's regions (``out`` counts ACC elements when the
    layer stores accumulators; ``res`` is the residual input, OUT elements)."""

    inp: int
    out: int
    wgt: int
    par: int
    res: int = 0


@dataclass(frozen=True)
class OutRect:
    """One 2-D transfer of a tile's results between the accumulator buffer (from the
    tile's result base) and an output-shaped DRAM region (from the region's base)."""

    sram: int
    dram: int
    y_size: int
    x_size: int
    x_stride: int


# What the epilogue of a layer does with a tile's accumulators.
REQUANTIZE, THRESHOLD, ACCUMULATE = "requantize", "threshold", "accumulate"


class LayerEmitter:
    def __init__(self, p: ConvProblem, s: Schedule, hw: HwConfig, epilogue: str,
                 clamp: tuple[int, int], pad_value: int, residual: bool = False):
        """``epilogue``: REQUANTIZE, THRESHOLD, or ACCUMULATE (no ALU: the int32
        accumulators are stored, pairs with dual); ``residual``: REQUANT adds the residual
        input, loaded (LOAD OUT) into the tile's result entries first."""
        self.p, self.s, self.hw = p, s, hw
        self.epilogue, self.clamp, self.pad_value = epilogue, clamp, pad_value
        self.residual = residual
        self.fp: Footprint = footprint(p, s)
        self.insns: list = []
        self.tokens = Tokens()
        self.uops = UopCache(hw.uop_depth)
        n = s.slots
        self.inp = _Slots(n, self.fp.inp)
        self.wgt = _Slots(n, self.fp.wgt)
        self.acc = _Slots(n, self.fp.acc)
        self.par_resident = p.groups * p.out_blocks <= hw.par_depth
        self.gemm_uops = 0
        self._overlapped = None  # (index, uop_bgn, uop_end) of the ALU on the epilogue unit
        self._par_loaded: set = set()  # (group, out-block span) chunks resident in par
        self._last_alu = None  # the instruction that last read par (non-resident refills)

    # ------------------------------------------------------------------ planning

    def plan_weights(self, wblocks: np.ndarray) -> WeightPlan:
        """The weight blocks in DRAM in the loop nest's order (the TIR route places them
        in its own: ``tir_program.TirRoute.plan_weights``)."""
        plan = WeightPlan()
        skip = self.s.skips_zero_blocks(self.hw)
        for t in tiles(self.p, self.s):
            for step in t.in_steps:
                plan.add(t.weight_key(step), wblocks, t, step, skip)
        return plan

    # ------------------------------------------------------------------ emission

    def emit(self, insn) -> int:
        if isinstance(insn, Load) and insn.mem == MemType.UOP:
            self._keep_alu_uops(insn.sram_base, insn.sram_base + insn.x_size)
        self.insns.append(insn)
        return len(self.insns) - 1

    def _keep_alu_uops(self, lo: int, hi: int) -> None:
        """A LOAD UOP must not overwrite the micro-ops of an ALU still running on the
        epilogue unit: that ALU then runs without overlap instead."""
        if self._overlapped is None:
            return
        index, bgn, end = self._overlapped
        if lo < end and bgn < hi:
            self.insns[index] = isa.replace(self.insns[index], overlap=False)
            self._overlapped = None

    def run(self, regions: Regions, weights: WeightPlan,
            groups: list[list[Tile]] | None = None) -> list:
        """The layer's instruction stream: each group of tiles (``group``) in order, then
        FINISH (which waits for the last STORE), tokens applied. ``groups``: the TIR
        route's walked order (a group per virtual-thread group), or None for the loop
        nest's tiles one by one."""
        self.regions, self.weights = regions, weights
        if groups is None:
            groups = [[t] for t in tiles(self.p, self.s)]
        last_store = None
        for group in groups:
            last_store = self.group(group)
        finish = self.emit(Finish())
        self.tokens.free("s2c", last_store, finish)
        return self.tokens.apply(self.insns)

    def group(self, tiles: list[Tile]) -> int:
        """Issue the tiles one after another (a single thread); the index of the last STORE."""
        last_store = None
        for t in tiles:
            last_store = self._tile(t)
        return last_store

    def _tile_frame(self, t: Tile, acc_base: int) -> tuple[int, list, dict]:
        """Where a tile's results go, each output block's accumulators, and the GEMM/ALU
        hardware loops over the tile's pixels.

        Accumulators are pixel-major, [row][col][out block] (pairs with dual), so the
        tile's results are contiguous per pixel row and in DRAM's [OH][OW][blocks] order.
        REQUANT/THRESH write the results after the accumulators (out of place), where
        STORE reads them: the next use of the slot's accumulators then waits only for
        the ALU (an ALU issued in between, or program order), not for the STORE."""
        p, s = self.p, self.s
        out_base = acc_base + s.tile_out_blocks * s.tile_rows * s.tile_cols * p.pairs
        nob = t.out_blocks.size
        acc_of = [acc_base + obl * p.pairs for obl in range(nob)]
        loops = dict(iter_out=t.rows.size, iter_in=t.cols.size,
                     dst_factor_out=t.cols.size * nob * p.pairs, dst_factor_in=nob * p.pairs)
        return out_base, acc_of, loops

    def _reset_empty_blocks(self, t: Tile, acc_of: list, loops: dict) -> int | None:
        """The reset GEMM of the output blocks that no step of the tile has a nonzero
        weight block for (the others are initialized by their first micro-op's ``first``
        bit); its index, or None when every block has one."""
        empty = self._blocks_without_weights(t)
        if not empty:
            return None
        bgn, end = self.uops.place(isa.encode_uops([acc_of[o] for o in empty], 0, 0),
                                   self.emit)
        return self.emit(Gemm(uop_bgn=bgn, uop_end=end, reset=True, dual=self.p.dual,
                              **loops))

    def _tile(self, t: Tile) -> int:
        slot = self.acc.claim(t)
        acc_base = slot * self.acc.size
        out_base, acc_of, loops = self._tile_frame(t, acc_base)
        first_gemm = len(self.insns)  # no GEMM of the tile before this index
        self._reset_empty_blocks(t, acc_of, loops)
        initialized: set = set()
        for step in t.in_steps:
            self._step(t, step, acc_of, loops, initialized)
        if self.epilogue == ACCUMULATE:
            return self._store_accumulators(t, slot, acc_base, first_gemm)
        # after the tile's input/weight loads, so its first GEMM need not wait for it; its
        # own l2c token (the last push of the tile) goes to the ALU, the last pop
        par_load = self._load_params(t)
        return self._finish_tile(t, self.acc, slot, acc_of, out_base, par_load)

    def _ready(self, queue: str, producer: int | None, consumer: int) -> None:
        """``consumer`` reads what ``producer`` wrote (None: nothing to wait for)."""
        if producer is not None:
            self.tokens.ready(queue, producer, consumer)

    def _finish_tile(self, t: Tile, acc: _Slots, slot: int, acc_of: list, out_base: int,
                     par_load: int | None) -> int:
        """The tile's epilogue once its GEMMs are issued: the residual LOAD, the ALU
        (after ``par_load``) and the STOREs of the results; the last STORE's index."""
        if self.residual:  # overwrites the results the slot's last STOREs read
            first_res = self._load_residual(t, out_base)
            self.tokens.free("s2c", acc.reader[slot], first_res)
        alu = self._epilogue(t, acc_of, out_base)
        self._ready("l2c", par_load, alu)
        self.tokens.free("s2c", acc.reader[slot], alu)  # the ALU overwrites its results
        first, last = self._stores(t, out_base)
        self._ready("c2s", alu, first)
        acc.reader[slot] = last
        return last

    def _load_params(self, t: Tile) -> int | None:
        """LOAD PAR (load module) of the tile's output blocks: once per chunk into its own
        entries when all parameters fit, else into entry 0.. after the last ALU read them."""
        p = self.p
        first = t.group * p.out_blocks + t.out_blocks.start
        if self.par_resident:
            key = (t.group, t.out_blocks)
            if key in self._par_loaded:
                return None
            self._par_loaded.add(key)
            return self.emit(Load(mem=MemType.PAR, sram_base=first,
                                  dram_base=self.regions.par + first, x_size=t.out_blocks.size,
                                  x_stride=t.out_blocks.size))
        index = self.emit(Load(mem=MemType.PAR, sram_base=self._par_entry0(),
                               dram_base=self.regions.par + first,
                               x_size=t.out_blocks.size, x_stride=t.out_blocks.size))
        self.tokens.free("c2l", self._last_alu, index)
        return index

    def _blocks_without_weights(self, t: Tile) -> list[int]:
        """Output blocks (tile-relative) that no step of the tile has a weight block for."""
        covered = {obl for step in t.in_steps
                   for obl, _, _, _ in self.weights.where[t.weight_key(step)][1]}
        return [obl for obl in range(t.out_blocks.size) if obl not in covered]

    def _step(self, t: Tile, step: Span, acc_of: list, loops: dict, initialized: set) -> None:
        p = self.p
        wfirst, entries = self.weights.where[t.weight_key(step)]
        if not entries:
            return  # every weight block of the step is zero: nothing to load or multiply
        loads = []
        ikey, wkey = t.input_key(step), t.weight_key(step)
        islot, wslot = self.inp.find(ikey), self.wgt.find(wkey)
        rows, cols = tile_inputs(p, t)
        readers = []
        if islot is None:
            islot = self.inp.claim(ikey)
            readers.append(self.inp.reader[islot])
            loads += self._load_inputs(t, step, islot * self.inp.size, rows, cols)
        if wslot is None:
            wslot = self.wgt.claim(wkey)
            readers.append(self.wgt.reader[wslot])
            loads.append(self.emit(Load(mem=MemType.WGT, sram_base=wslot * self.wgt.size,
                                        dram_base=self.regions.wgt + wfirst, x_size=len(entries),
                                        x_stride=len(entries))))
        gemm = self._gemm(entries, islot * self.inp.size, wslot * self.wgt.size, rows, cols,
                          acc_of, loops, initialized)
        if loads:
            known = [r for r in readers if r is not None]
            self.tokens.free("c2l", max(known) if known else None, loads[0])
            self.tokens.ready("l2c", loads[-1], gemm)
        self.inp.reader[islot] = gemm
        self.wgt.reader[wslot] = gemm

    def _gemm(self, entries: list, ibase: int, wbase: int, rows, cols, acc_of: list,
              loops: dict, initialized: set) -> int:
        """One GEMM over a step's (output block, input block, tap) products ``entries``,
        with the input rectangle at ``ibase`` and the step's weight blocks from ``wbase``;
        the first micro-op of each output block not yet in ``initialized`` sets its
        ``first`` bit (and joins it). The GEMM's index."""
        p = self.p
        plane = rows.extent * cols.extent
        dh, dw = p.dilation
        dst = [acc_of[obl] for obl, _, _, _ in entries]
        src = [ibase + cbl * plane + i * dh * cols.extent + j * dw for _, cbl, i, j in entries]
        wgt = [wbase + q for q in range(len(entries))]
        first = []
        for obl, _, _, _ in entries:
            first.append(obl not in initialized)
            initialized.add(obl)
        bgn, end = self.uops.place(isa.encode_uops(dst, src, wgt, first), self.emit)
        gemm = self.emit(Gemm(uop_bgn=bgn, uop_end=end, dual=p.dual,
                              src_factor_out=p.loaded_row_stride * cols.extent,
                              src_factor_in=p.loaded_col_stride,
                              **loops))
        self.gemm_uops += len(entries)
        return gemm

    def _load_inputs(self, t: Tile, step: Span, base: int, rows, cols) -> list[int]:
        p = self.p
        plane = p.h * p.w
        row_pitch = p.w * p.row_step  # DRAM blocks between loaded rows
        first_block = ((t.image_group * p.groups + t.group) * p.in_blocks + step.start) * plane
        whole = (rows.size == p.h and cols.size == p.w and plane <= X_SIZE_MAX and not
                 (rows.pad_0 or rows.pad_1 or cols.pad_0 or cols.pad_1) and p.col_step == 1)
        if whole:  # channel blocks are consecutive whole planes: one LOAD
            return [self.emit(Load(mem=MemType.INP, sram_base=base,
                                   dram_base=self.regions.inp + first_block, y_size=step.size,
                                   x_size=plane, x_stride=plane))]
        merged = self._merged_input_load(step, base, first_block, rows, cols)
        if merged is not None:
            return [self.emit(merged)]
        out = []
        for cbl in range(step.size):
            out.append(self.emit(Load(
                mem=MemType.INP, sram_base=base + cbl * rows.extent * cols.extent,
                dram_base=self.regions.inp + first_block + cbl * plane + rows.start * row_pitch
                + cols.start * p.col_step, y_size=rows.size, x_size=cols.size, x_stride=row_pitch,
                y_pad_0=rows.pad_0, y_pad_1=rows.pad_1, x_pad_0=cols.pad_0, x_pad_1=cols.pad_1,
                pad_value=self.pad_value, x_skip=p.col_step - 1)))
        return out

    def _merged_input_load(self, step: Span, base: int, first_block: int, rows, cols):
        """All channel blocks of a step in one LOAD, when their rows are equally spaced
        across planes: a single row per block (pitch = plane), or rows covering the whole
        (row-stepped) plane. Saves the DMA latency of one LOAD per channel block. None if
        the rectangle is padded or the fields cannot hold it."""
        p = self.p
        plane, row_pitch = p.h * p.w, p.w * p.row_step
        if rows.pad_0 or rows.pad_1 or cols.pad_0 or cols.pad_1 or step.size == 1:
            return None
        if rows.size == 1:
            pitch = plane
        elif rows.size * p.row_step == p.h:
            pitch = row_pitch
        else:
            return None
        y_size = step.size * rows.size
        if y_size > Y_SIZE_MAX or pitch > X_STRIDE_MAX:
            return None
        return Load(mem=MemType.INP, sram_base=base,
                    dram_base=self.regions.inp + first_block + rows.start * row_pitch
                    + cols.start * p.col_step, y_size=y_size, x_size=cols.size, x_stride=pitch,
                    pad_value=self.pad_value, x_skip=p.col_step - 1)

    def _epilogue(self, t: Tile, acc_of: list, out_base: int) -> int:
        p = self.p
        nob = t.out_blocks.size
        par0 = self._par_entry0() if not self.par_resident \
            else t.group * p.out_blocks + t.out_blocks.start
        dst = [out_base + obl for obl in range(nob)]
        par = [par0 + obl for obl in range(nob)]
        bgn, end = self.uops.place(isa.encode_uops(dst, acc_of, par), self.emit)
        requant = self.epilogue == "requantize"
        # Overlapped with the next tile's GEMMs (docs/isa.md) when they use the other
        # accumulator slot (the tile after reuses this one only after the next ALU, which
        # waits for this one) and resident parameters are never reloaded.
        overlap = self.par_resident and self._epilogue_overlaps()
        index = self.emit(Alu(op=AluOp.REQUANT if requant else AluOp.THRESH, uop_bgn=bgn,
                              uop_end=end, iter_out=t.rows.size, iter_in=t.cols.size,
                              dst_factor_out=t.cols.size * nob, dst_factor_in=nob,
                              src_factor_out=t.cols.size * nob * p.pairs,
                              src_factor_in=nob * p.pairs, use_imm=requant,
                              imm=isa.alu_clamp_imm(*self.clamp) if requant else 0, dual=p.dual,
                              overlap=overlap, residual=self.residual))
        self._overlapped = (index, bgn, end) if overlap else None
        self._last_alu = index
        return index

    def _par_entry0(self) -> int:
        """Where a tile's parameters land when they are not all resident (per virtual
        thread in ``tir_vthread``)."""
        return 0

    def _epilogue_overlaps(self) -> bool:
        """Whether this tile's ALU may run under the compute instructions issued after it:
        the next tile's GEMMs must use another accumulator slot."""
        return self.s.slots == 2

    def _out_rects(self, t: Tile, width: int) -> list[OutRect]:
        """The transfers of a tile's results, fewest first: output blocks ``[.., OH, OW,
        nob]`` in DRAM, each block ``width`` elements (2 for the ACC pairs of a dual layer
        that stores accumulators), and the tile's results contiguous from its base."""
        p = self.p
        nob = t.out_blocks.size * width
        row_elems = p.out_blocks * width  # DRAM elements per output pixel
        pixel0 = (t.image_group * p.groups + t.group) * p.oh * p.ow
        dram = (pixel0 + t.rows.start * p.ow + t.cols.start) * row_elems \
            + t.out_blocks.start * width
        whole_rows = t.cols.size == p.ow
        if nob == row_elems:  # each tile row is contiguous in DRAM (all rows if whole)
            if whole_rows and t.rows.size * t.cols.size * nob <= X_SIZE_MAX:
                n = t.rows.size * t.cols.size * nob
                return [OutRect(0, dram, 1, n, n)]
            return [OutRect(0, dram, t.rows.size, t.cols.size * nob, p.ow * row_elems)]
        if whole_rows and t.rows.size * t.cols.size <= Y_SIZE_MAX:  # pixels consecutive
            return [OutRect(0, dram, t.rows.size * t.cols.size, nob, row_elems)]
        return [OutRect(r * t.cols.size * nob, dram + r * p.ow * row_elems, t.cols.size, nob,
                        row_elems) for r in range(t.rows.size)]

    def _stores(self, t: Tile, base: int, mem: MemType = MemType.OUT,
                width: int = 1) -> tuple[int, int]:
        """The STOREs of a tile's results at acc[base..] (one where DRAM allows); the
        indices of the first and the last."""
        ids = [self.emit(Store(mem=mem, sram_base=base + r.sram, dram_base=self.regions.out
                               + r.dram, y_size=r.y_size, x_size=r.x_size, x_stride=r.x_stride))
               for r in self._out_rects(t, width)]
        return ids[0], ids[-1]

    # ------------------------------------------------------------------ v1.6 epilogues

    def _store_accumulators(self, t: Tile, slot: int, acc_base: int, first_gemm: int) -> int:
        """ACCUMULATE: no ALU; the tile's int32 accumulators (pairs with dual) go to DRAM
        as they are (STORE ACC) for the host epilogue. The tile's first GEMM overwrote
        what the slot's last STOREs read; its last GEMM produced what they store."""
        gemms = [i for i in range(first_gemm, len(self.insns))
                 if isinstance(self.insns[i], Gemm)]
        self.tokens.free("s2c", self.acc.reader[slot], gemms[0])
        return self._store_accumulator_tile(t, self.acc, slot, acc_base, gemms[-1])

    def _store_accumulator_tile(self, t: Tile, acc: _Slots, slot: int, acc_base: int,
                                last_gemm: int) -> int:
        """STORE ACC of the tile's accumulators once ``last_gemm`` produced them; the last
        STORE's index."""
        first, last = self._stores(t, acc_base, MemType.ACC, self.p.pairs)
        self._ready("c2s", last_gemm, first)
        acc.reader[slot] = last
        self._overlapped = None
        return last

    def _load_residual(self, t: Tile, out_base: int) -> int:
        """LOAD OUT (compute module, in order with the ALU) of the tile's residual blocks
        into its result entries, where REQUANT residual reads them; the first LOAD's index."""
        ids = [self.emit(Load(mem=MemType.OUT, sram_base=out_base + r.sram,
                              dram_base=self.regions.res + r.dram, y_size=r.y_size,
                              x_size=r.x_size, x_stride=r.x_stride))
               for r in self._out_rects(t, 1)]
        return ids[0]
