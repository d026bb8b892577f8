"""Race detection: is every cross-module access ordered by dependency tokens?

The three modules run concurrently in hardware; the simulator runs one legal interleaving.
A program is correct only if its result is the same under every interleaving, i.e. if
each buffer entry written by one module and accessed by another is ordered by a chain of
tokens. Vector clocks make that check exact: each module carries a clock (how many
instructions of each module it is known to follow); a push sends the pusher's clock
through the token queue and a pop merges it.

Checked: on-chip buffers shared between modules (read-after-write, write-after-write,
write-after-read), and DRAM bytes written by STORE and read back by a LOAD
(read-after-write). Not checked: a STORE overwriting DRAM that an unordered LOAD reads.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .trap import Trap

# "epilogue": the compute module's ALU unit while it runs an ALU with the overlap bit
# (docs/isa.md): ordered after the compute instructions before it, but not the other way
# round until the next ALU instruction or FINISH (which wait for the unit) or a token chain.
MODULE_INDEX = {"load": 0, "compute": 1, "store": 2, "epilogue": 3}
_N = len(MODULE_INDEX)


class _Entries:
    """Last writer and last reader per module of every entry of one buffer."""

    def __init__(self, depth: int):
        self.w_mod = np.full(depth, -1, dtype=np.int64)
        self.w_seq = np.zeros(depth, dtype=np.int64)
        self.w_idx = np.zeros(depth, dtype=np.int64)
        self.r_seq = np.zeros((depth, _N), dtype=np.int64)  # 0 = never read
        self.r_idx = np.zeros((depth, _N), dtype=np.int64)


class Ordering:
    def __init__(self, depths: dict, dram_size: int):
        self.clock = {m: np.zeros(_N, dtype=np.int64) for m in MODULE_INDEX}
        self.fifo = {q: deque() for q in ("l2c", "c2l", "c2s", "s2c")}
        self.entries = {mem: _Entries(d) for mem, d in depths.items()}
        self.dram_size = dram_size
        self.dram_w_seq = None  # allocated at the first STORE: most programs store once
        self.dram_w_idx = None
        self.module = "compute"
        self.index = -1

    # ------------------------------------------------------------------ token flow

    def begin(self, module: str, index: int) -> None:
        self.module, self.index = module, index
        if module == "epilogue":  # starts after every compute instruction before it
            np.maximum(self.clock["epilogue"], self.clock["compute"], out=self.clock["epilogue"])
        self.clock[module][MODULE_INDEX[module]] += 1

    def join_epilogue(self) -> None:
        """The compute module waits for the ALU unit (an ALU instruction, FINISH)."""
        np.maximum(self.clock["compute"], self.clock["epilogue"], out=self.clock["compute"])

    def pop(self, queue: str) -> None:
        # an overlapped ALU's pops are taken by the ALU unit: the compute module goes on
        np.maximum(self.clock[self.module], self.fifo[queue].popleft(), out=self.clock[self.module])

    def push(self, queue: str) -> None:
        self.fifo[queue].append(self.clock[self.module].copy())

    # ------------------------------------------------------------------ buffer accesses

    def read(self, mem, idx: np.ndarray, name: str) -> None:
        e = self.entries.get(mem)
        if e is None:
            return
        me = MODULE_INDEX[self.module]
        idx = np.asarray(idx).reshape(-1)
        self._after_writes(e, idx, me, f"{name} reads", mem)
        e.r_seq[idx, me] = self.clock[self.module][me]
        e.r_idx[idx, me] = self.index

    def write(self, mem, idx: np.ndarray, name: str) -> None:
        e = self.entries.get(mem)
        if e is None:
            return
        me = MODULE_INDEX[self.module]
        idx = np.asarray(idx).reshape(-1)
        self._after_writes(e, idx, me, f"{name} overwrites", mem)
        clock = self.clock[self.module]
        for other in range(_N):
            if other == me:
                continue
            race = e.r_seq[idx, other] > clock[other]
            if race.any():
                j = int(idx[np.flatnonzero(race)[0]])
                raise Trap(f"race: {name} overwrites {mem.name.lower()}[{j}] while instruction "
                           f"{int(e.r_idx[j, other])} may still read it (no token orders them)")
        e.w_mod[idx] = me
        e.w_seq[idx] = clock[me]
        e.w_idx[idx] = self.index

    def _after_writes(self, e: _Entries, idx, me: int, verb: str, mem) -> None:
        w_mod = e.w_mod[idx]
        other = (w_mod >= 0) & (w_mod != me)
        if not other.any():
            return
        known = self.clock[self.module][np.where(other, w_mod, 0)]
        race = other & (known < e.w_seq[idx])
        if race.any():
            j = int(idx[np.flatnonzero(race)[0]])
            raise Trap(f"race: {verb} {mem.name.lower()}[{j}] written by instruction "
                       f"{int(e.w_idx[j])} without a token ordering them")

    # ------------------------------------------------------------------ DRAM

    def dram_write(self, byte_idx: np.ndarray) -> None:
        if self.dram_w_seq is None:
            self.dram_w_seq = np.zeros(self.dram_size, dtype=np.int64)
            self.dram_w_idx = np.zeros(self.dram_size, dtype=np.int64)
        me = MODULE_INDEX[self.module]
        self.dram_w_seq[byte_idx] = self.clock[self.module][me]
        self.dram_w_idx[byte_idx] = self.index

    def dram_read(self, byte_idx: np.ndarray, name: str) -> None:
        if self.dram_w_seq is None or self.module == "store":
            return
        seq = self.dram_w_seq[byte_idx]
        race = seq > self.clock[self.module][MODULE_INDEX["store"]]
        if race.any():
            b = int(np.asarray(byte_idx).reshape(-1)[np.flatnonzero(race.reshape(-1))[0]])
            raise Trap(f"race: {name} reads DRAM byte {b} stored by instruction "
                       f"{int(self.dram_w_idx[b])} without a token ordering them")
