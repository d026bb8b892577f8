"""LOAD and STORE: 2-D strided DMA between DRAM and the on-chip buffers (docs/isa.md)."""

from __future__ import annotations

import numpy as np

from .. import layout
from ..isa import MemType, decode_uop_first, decode_uops
from tvm_ternary.errors import IsaError

from .state import InsnStats, Machine, Trap, elem_bytes


def _dram_elements(insn) -> np.ndarray:
    """DRAM element index of each (y, x) of the unpadded rectangle, row-major."""
    y = np.arange(insn.y_size, dtype=np.int64)[:, None]
    x = np.arange(insn.x_size, dtype=np.int64)[None, :]
    return (insn.dram_base + y * insn.x_stride + x * (insn.x_skip + 1)).reshape(-1)


def _byte_index(m: Machine, elems: np.ndarray, eb: int, what: str) -> np.ndarray:
    end = (int(elems.max()) + 1) * eb
    if end > m.dram.size:
        raise Trap(f"{what} touches DRAM bytes up to {end - 1}, beyond the image "
                   f"({m.dram.size} bytes)")
    return elems[:, None] * eb + np.arange(eb, dtype=np.int64)[None, :]


def _check_size(insn, what: str) -> None:
    if insn.y_size < 1 or insn.x_size < 1:
        raise Trap(f"{what} has an empty rectangle (y_size={insn.y_size}, x_size={insn.x_size})")


def _check_pads(insn, what: str) -> None:
    if insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1 or insn.pad_value:
        raise Trap(f"{what} must have zero pads and pad_value")


def _decode(m: Machine, mem: MemType, raw: np.ndarray, what: str):
    cfg = m.cfg
    try:
        if mem == MemType.UOP:
            words = np.ascontiguousarray(raw).view("<u8").reshape(-1)
            return np.stack(decode_uops(words) + (decode_uop_first(words),), axis=-1)
        if mem == MemType.INP:
            return layout.unpack_inp(raw, cfg)
        if mem == MemType.WGT:
            return layout.unpack_wgt(raw, cfg)
        if mem == MemType.ACC:
            return layout.unpack_acc(raw, cfg)
        if mem == MemType.OUT:  # widened into accumulator entries (v1.6)
            return layout.unpack_out(raw, cfg).astype(np.int64)
        return layout.unpack_par(raw, cfg)
    except (ValueError, IsaError) as err:
        raise Trap(f"{what}: {err}") from None


def _pad_block(m: Machine, mem: MemType, value: int, what: str):
    if mem in (MemType.UOP, MemType.PAR, MemType.OUT):
        raise Trap(f"{what} cannot pad (pads and pad_value must be 0)")
    if mem == MemType.WGT and value != 0:
        raise Trap(f"{what} pads weights with zero only, got pad_value {value}")
    if mem == MemType.INP and m.cfg.act_bits == 2 and value not in (-1, 0, 1):
        raise Trap(f"{what} pad_value {value} is not a ternary activation")
    return value


def load(m: Machine, insn, stats: InsnStats) -> None:
    mem = insn.mem
    what = f"LOAD {mem.name}"
    target = sram_of_load(mem)
    _check_size(insn, what)
    rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
    cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
    padded = rows * cols > insn.y_size * insn.x_size
    if padded or insn.pad_value:
        pad = _pad_block(m, mem, insn.pad_value, what)
    end = insn.sram_base + rows * cols
    if end > m.depth(target):
        raise Trap(f"{what} writes {target.name.lower()}[{insn.sram_base}:{end}], beyond the "
                   f"buffer (depth {m.depth(target)})")
    eb = elem_bytes(m.cfg, mem)
    elems = _dram_elements(insn)
    byte_idx = _byte_index(m, elems, eb, what)
    m.order.dram_read(byte_idx, what)
    raw = m.dram[byte_idx]
    values = _decode(m, mem, raw, what)
    y = np.arange(insn.y_size, dtype=np.int64)[:, None] + insn.y_pad_0
    x = np.arange(insn.x_size, dtype=np.int64)[None, :] + insn.x_pad_0
    dest = (insn.sram_base + y * cols + x).reshape(-1)
    buf = m.buffer(target)
    m.mark_written(target, np.arange(insn.sram_base, end), what)
    if padded:
        buf[insn.sram_base:end] = pad
    if mem == MemType.UOP:  # decoded as (dst, src, wgt, first)
        m.uop_first[dest] = values[:, 3].astype(bool)
        values = values[:, :3]
    buf[dest] = values
    stats.dram_read_bytes = elems.size * eb
    stats.sram_write_elems = rows * cols
    stats.pad_elems = rows * cols - elems.size


def sram_of_load(mem: MemType) -> MemType:
    """The buffer a LOAD of ``mem`` fills: its own, except OUT elements (v1.6), which are
    widened into the accumulator buffer."""
    return MemType.ACC if mem == MemType.OUT else mem


def store(m: Machine, insn, stats: InsnStats) -> None:
    mem = insn.mem
    what = f"STORE {mem.name}"
    if mem not in (MemType.ACC, MemType.OUT):
        raise Trap(f"STORE writes ACC or OUT elements, not {mem.name}")
    _check_size(insn, what)
    _check_pads(insn, what)
    if insn.x_skip:
        raise Trap(f"{what} must have x_skip = 0 (strided element reads are a LOAD feature)")
    if insn.y_size > 1 and insn.x_stride < insn.x_size:
        raise Trap(f"{what} rows overlap in DRAM (x_stride {insn.x_stride} < x_size {insn.x_size})")
    end = insn.sram_base + insn.y_size * insn.x_size
    if end > m.depth(MemType.ACC):  # checked before any array of that size exists
        raise Trap(f"{what} reads acc[{insn.sram_base}:{end}], beyond the buffer "
                   f"(depth {m.depth(MemType.ACC)})")
    src = np.arange(insn.sram_base, end, dtype=np.int64)
    m.require_written(MemType.ACC, src, what)
    values = m.acc[src]
    cfg = m.cfg
    try:
        if mem == MemType.ACC:
            raw = layout.pack_acc(values, cfg)
        else:
            _check_narrow(values, cfg.act_bits, insn.sram_base, what)
            raw = layout.pack_out(values, cfg)
    except ValueError as err:
        raise Trap(f"{what}: {err}") from None
    eb = elem_bytes(cfg, mem)
    elems = _dram_elements(insn)
    byte_idx = _byte_index(m, elems, eb, what)
    m.order.dram_write(byte_idx)
    m.dram[byte_idx] = raw
    stats.dram_write_bytes = elems.size * eb


def _check_narrow(values: np.ndarray, bits: int, base: int, what: str) -> None:
    lo, hi = (-1, 1) if bits == 2 else (-128, 127)
    bad = (values < lo) | (values > hi)
    if bad.any():
        e, b, o = (int(i) for i in np.argwhere(bad)[0])
        raise Trap(f"{what}: acc[{base + e}][{b}][{o}] = {int(values[e, b, o])} does not fit "
                   f"{bits}-bit activations [{lo}, {hi}] (requantize or threshold first)")
