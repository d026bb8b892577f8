"""Which implementation legalizes a ternary op: chosen per (op, target) at LegalizeOps time.

The pipeline sets the target for the duration of legalization (``target_scope``); each
op's legalization asks ``select(op)`` for the first registered implementation whose
``applies(call, target)`` holds, else uses the portable generic compute. Choices are
recorded so reports can say which ops got which kernel (and which fell back).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

GENERIC = "generic"  # the name recorded when no target-specific implementation applies

_current: dict = {"target": None, "chosen": None}


@dataclass(frozen=True)
class Impl:
    name: str
    applies: Callable   # (call, target dict) -> bool
    emit: Callable      # (bb, call) -> relax expression


_IMPLS: dict[str, list[Impl]] = {}


def register(op: str, impl: Impl, first: bool = False) -> None:
    """Add an implementation of ``op``; ``first`` puts it ahead of the registered ones."""
    impls = _IMPLS.setdefault(op, [])
    impls.insert(0, impl) if first else impls.append(impl)


def unregister(op: str, impl: Impl) -> None:
    _IMPLS.get(op, []).remove(impl)


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


def lookup(op: str, call) -> Impl | None:
    """The implementation of ``op`` for the current target, without recording the choice."""
    target = _current["target"]
    return next((i for i in _IMPLS.get(op, []) if target and i.applies(call, target)), None)


def record(op: str, impl_name: str) -> None:
    if _current["chosen"] is not None:
        _current["chosen"].append((op, impl_name))


def select(op: str, call) -> Impl | None:
    """``lookup`` and record the choice (``GENERIC`` when nothing applies)."""
    impl = lookup(op, call)
    record(op, impl.name if impl else GENERIC)
    return impl
