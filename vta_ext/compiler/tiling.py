"""The tiles of a scheduled layer, in execution order, and the input rectangle each reads.

A :class:`Tile` is one output tile (image group, group, output-channel blocks, output rows
and columns); its reduction steps each cover a range of input-channel blocks. Loop order
follows ``Schedule.reuse`` so that consecutive tiles share the resident operand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .geometry import ConvProblem
from .schedule import Schedule


@dataclass(frozen=True)
class Span:
    start: int
    size: int

    @property
    def stop(self) -> int:
        return self.start + self.size


def spans(total: int, size: int) -> list[Span]:
    return [Span(s, min(size, total - s)) for s in range(0, total, size)]


@dataclass(frozen=True)
class Tile:
    image_group: int
    group: int
    out_blocks: Span
    rows: Span          # output rows
    cols: Span          # output columns
    in_steps: tuple     # Spans of input-channel blocks, one per reduction step

    def input_key(self, step: Span) -> tuple:
        """Identifies the input data a step reads (equal keys: the same loaded rectangle)."""
        return (self.image_group, self.group, self.rows, self.cols, step)

    def weight_key(self, step: Span) -> tuple:
        return (self.group, self.out_blocks, step)


def tiles(p: ConvProblem, s: Schedule) -> Iterator[Tile]:
    outs = spans(p.out_blocks, s.tile_out_blocks)
    spatial = [(r, c) for r in spans(p.oh, s.tile_rows) for c in spans(p.ow, s.tile_cols)]
    steps = tuple(spans(p.in_blocks, s.tile_in_blocks))
    for ig in range(p.image_groups):
        for g in range(p.groups):
            if s.reuse == "weight":
                order = ((ob, rc) for ob in outs for rc in spatial)
            else:
                order = ((ob, rc) for rc in spatial for ob in outs)
            for ob, (r, c) in order:
                yield Tile(ig, g, ob, r, c, steps)


@dataclass(frozen=True)
class InputRect:
    """The padded input rectangle of a tile along one axis: ``pad_0`` padding entries, then
    ``size`` real ones starting at real index ``start``, then ``pad_1`` padding entries."""

    start: int
    size: int
    pad_0: int
    pad_1: int

    @property
    def extent(self) -> int:
        return self.pad_0 + self.size + self.pad_1


def input_rect(out: Span, stride: int, kernel: int, dilation: int, pad: int,
               length: int) -> InputRect:
    """The input entries (in the padded image of ``length`` real entries) that output
    positions ``out`` read."""
    lo = out.start * stride
    hi = lo + (out.size - 1) * stride + (kernel - 1) * dilation + 1
    real_lo, real_hi = max(lo, pad), min(hi, pad + length)
    return InputRect(real_lo - pad, real_hi - real_lo, real_lo - lo, hi - real_hi)


def tile_inputs(p: ConvProblem, t: Tile) -> tuple[InputRect, InputRect]:
    """Row and column rectangles of a tile's input; rows count loaded rows (every
    ``p.row_step``-th input row, starting at ``start * row_step``), columns loaded columns
    (every ``p.col_step``-th, starting at ``start * col_step``)."""
    if p.row_step > 1:  # one-row kernel, no row padding: the output rows' own input rows
        rows = InputRect(t.rows.start, t.rows.size, 0, 0)
    else:
        rows = input_rect(t.rows, p.stride[0], p.kh, p.dilation[0], p.padding[0], p.h)
    if p.col_step > 1:  # one-column kernel: the output columns' own (skipped-to) columns
        cols = InputRect(t.cols.start, t.cols.size, 0, 0)
    else:
        cols = input_rect(t.cols, p.stride[1], p.kw, p.dilation[1], p.padding[1], p.w)
    return rows, cols
