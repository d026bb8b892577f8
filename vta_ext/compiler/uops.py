"""The micro-op cache: which micro-op segments are resident, and the LOAD UOPs that fill it.

A segment (the micro-ops of one GEMM or ALU instruction) is loaded the first time it is
needed and reused while resident; when the buffer is full it is flushed and refilled from
the start. LOAD UOP runs in the compute module, in order with the GEMM/ALU that use the
micro-ops, so reloading needs no tokens. Identical segments share one copy in DRAM.
"""

from __future__ import annotations

import numpy as np

from .. import isa
from ..isa import Load, MemType


class UopCache:
    def __init__(self, depth: int):
        self.depth = depth
        self._resident: dict[bytes, int] = {}
        self._top = 0
        self._dram: dict[bytes, int] = {}  # segment -> element offset in the uop region
        self._dram_size = 0
        self.loads: list[tuple[int, int]] = []  # (instruction index, element offset)

    def place(self, words: np.ndarray, emit) -> tuple[int, int]:
        """(uop_bgn, uop_end) of ``words``, emitting a LOAD UOP through ``emit`` if needed."""
        key = words.tobytes()
        if key in self._resident:
            bgn = self._resident[key]
            return bgn, bgn + words.size
        if words.size > self.depth:
            raise AssertionError(f"micro-op segment of {words.size} exceeds the uop buffer")
        if self._top + words.size > self.depth:
            self._resident.clear()
            self._top = 0
        if key not in self._dram:
            self._dram[key] = self._dram_size
            self._dram_size += words.size
        bgn = self._top
        index = emit(Load(mem=MemType.UOP, sram_base=bgn, dram_base=0, y_size=1,
                          x_size=words.size, x_stride=words.size))
        self.loads.append((index, self._dram[key]))
        self._resident[key] = bgn
        self._top += words.size
        return bgn, bgn + words.size

    def image(self) -> np.ndarray:
        """The uop region's words (every distinct segment once)."""
        if not self._dram:
            return np.zeros(0, dtype=np.uint64)
        return np.concatenate([np.frombuffer(k, dtype=np.uint64) for k in self._dram])

    def patch(self, insns: list, region_elem: int) -> None:
        """Point every LOAD UOP at its segment once the uop region is placed."""
        for index, offset in self.loads:
            insns[index] = isa.replace(insns[index], dram_base=region_elem + offset)
