"""Dependency tokens between the load, compute and store modules (docs/isa.md).

Token queues are counters, so the n-th pop of a queue is released by its n-th push. The
emitter reports two kinds of dependency, in program order of the waiting instruction:

- ``ready(queue, producer, consumer)``: the consumer reads what the producer wrote
  (load -> GEMM on ``l2c``, ALU -> STORE on ``c2s``); every producer has one consumer.
- ``free(queue, reader, writer)``: the writer overwrites what the reader read (GEMM -> the
  LOAD refilling its slot on ``c2l``, STORE -> the GEMM resetting its accumulators on
  ``s2c``). A writer whose reader was already waited for by an earlier instruction of its
  module needs no token (modules run in order), so each reader pushes at most once and
  pops and pushes pair up in order.
"""

from __future__ import annotations

from collections import defaultdict

from .. import isa

# queue -> (flag the producer/reader sets, flag the consumer/writer sets)
_FLAGS = {"l2c": ("push_next", "pop_prev"), "c2s": ("push_next", "pop_prev"),
          "c2l": ("push_prev", "pop_next"), "s2c": ("push_prev", "pop_next")}


class Tokens:
    def __init__(self):
        self.flags: dict[int, set] = defaultdict(set)
        self._waited: dict[str, int] = defaultdict(lambda: -1)

    def ready(self, queue: str, producer: int, consumer: int) -> None:
        push, pop = _FLAGS[queue]
        self._set(producer, push)
        self._set(consumer, pop)

    def free(self, queue: str, reader: int | None, writer: int) -> None:
        if reader is None or reader <= self._waited[queue]:
            return
        push, pop = _FLAGS[queue]
        self._set(reader, push)
        self._set(writer, pop)
        self._waited[queue] = reader

    def _set(self, index: int, flag: str) -> None:
        if flag in self.flags[index]:
            raise AssertionError(f"instruction {index} would set {flag} twice")
        self.flags[index].add(flag)

    def apply(self, insns: list) -> list:
        return [isa.replace(insn, **{f: True for f in self.flags[i]}) if i in self.flags else insn
                for i, insn in enumerate(insns)]
