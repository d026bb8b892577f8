"""Which implementation legalizes a ternary op: chosen per (op, target) at LegalizeOps time.

The pipeline sets the target for the duration of legalization (``target_scope``); each
op's legalization asks ``select(op)`` for the first registered implementation whose
``applies(call, target)`` holds, else uses the portable generic compute. Choices are
recorded so reports can say which ops got which kernel (and which fell back).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

GENERIC = "generic"  # the name recorded when no target-specific implementation applies

_current: dict = {"target": None, "chosen": None, "configs": {}}


@dataclass(frozen=True, eq=False)
class Impl:
    """One (op, target) implementation: ``applies`` says whether it handles a call on a
    target, ``emit`` builds its compute + schedule, reading its tunable knobs through
    ``config(impl, call)``; ``knobs`` is the template's space: knob -> candidate values,
    the first being the default."""

    name: str
    applies: Callable   # (call, target dict) -> bool
    emit: Callable      # (bb, call) -> relax expression
    knobs: dict = field(default_factory=dict)


_IMPLS: dict[str, list[Impl]] = {}


def register(op: str, impl: Impl, first: bool = False) -> None:
    """Add an implementation of ``op``; ``first`` puts it ahead of the registered ones."""
    impls = _IMPLS.setdefault(op, [])
    impls.insert(0, impl) if first else impls.append(impl)


def unregister(op: str, impl: Impl) -> None:
    _IMPLS.get(op, []).remove(impl)


@contextlib.contextmanager
def target_scope(target: dict, configs: dict | None = None):
    """Legalize under ``target``; yields the list of (op, implementation) choices made.

    ``configs`` (e.g. a tuner's best entries) maps ``impl name`` or ``(impl name,
    workload(call))`` to knob values; knobs not given keep their defaults.
    """
    _check_knobs(configs or {})
    chosen: list = []
    old = dict(_current)
    _current.update(target=target, chosen=chosen, configs=dict(configs or {}))
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


def workload(call) -> tuple:
    """What a tuned configuration is keyed by: the shapes and dtypes of the tensor args."""
    return tuple((tuple(int(d) for d in a.ty.shape), str(a.ty.dtype))
                 for a in call.args if hasattr(a.ty, "shape"))


def config(impl: Impl, call) -> dict:
    """The knob values ``impl`` uses for ``call``: defaults, overridden by the scope's
    configs for the implementation, then for this exact workload."""
    return knob_values(impl.name, impl.knobs, call)


def _check_knobs(configs: dict) -> None:
    """Refuse a config naming a knob its (registered) implementation lacks, before
    legalization: raised inside a TVM pass, the typed error would arrive as RuntimeError."""
    knobs = {impl.name: impl.knobs for impls in _IMPLS.values() for impl in impls}
    for key, values in configs.items():
        name = key[0] if isinstance(key, tuple) else key
        if name in knobs:
            _unknown_knob(name, knobs[name], values)


def _unknown_knob(name: str, knobs: dict, values: dict) -> None:
    unknown = set(values) - set(knobs)
    if unknown:
        from tvm_ternary.errors import KernelConfigError

        raise KernelConfigError(f"implementation {name!r} has no knob {sorted(unknown)[0]!r} "
                               f"(its knobs: {sorted(knobs)})")


def knob_values(name: str, knobs: dict, call) -> dict:
    """``config`` for an implementation known by its name and knob space (what an emitter
    has before its ``Impl`` exists)."""
    values = {knob: choices[0] for knob, choices in knobs.items()}
    configs = _current["configs"]
    values.update(configs.get(name, {}))
    values.update(configs.get((name, workload(call)), {}))
    _unknown_knob(name, knobs, values)
    return values
