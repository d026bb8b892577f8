"""Which implementation legalizes a ternary op: chosen per (op, target) at LegalizeOps time.

The pipeline sets the target for the duration of legalization (``target_scope``); each
op's legalization asks ``select(op)`` for the first registered implementation whose
``applies(call, target)`` holds, else uses the portable generic compute. Choices are
recorded so reports can say which ops got which kernel.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

_current: dict = {"target": None, "chosen": None}


@dataclass(frozen=True)
class Impl:
    name: str
    applies: Callable   # (call, target dict) -> bool
    emit: Callable      # (bb, call) -> relax expression


_IMPLS: dict[str, list[Impl]] = {}


def register(op: str, impl: Impl) -> None:
    _IMPLS.setdefault(op, []).append(impl)


@contextlib.contextmanager
def target_scope(target: dict):
    """Legalize under ``target``; yields the list of (op, implementation) choices made."""
    chosen: list = []
    old = dict(_current)
    _current.update(target=target, chosen=chosen)
    try:
        yield chosen
    finally:
        _current.update(old)


def select(op: str, call) -> Impl | None:
    target = _current["target"]
    impl = next((i for i in _IMPLS.get(op, []) if target and i.applies(call, target)), None)
    if _current["chosen"] is not None:
        _current["chosen"].append((op, impl.name if impl else "generic"))
    return impl
