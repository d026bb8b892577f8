"""Method name -> weight-quantizer factory, and each method's default activation quantizer."""

from __future__ import annotations

from typing import Callable

from tvm_ternary.errors import UnknownMethodError

from .base import WeightQuantizer

_METHODS: dict[str, tuple[Callable[..., WeightQuantizer], str | None]] = {}


def register_method(name: str, default_act: str | None = "int8"):
    """Decorator: register ``factory(layer, **opts) -> WeightQuantizer`` under ``name``."""

    def wrap(factory):
        _METHODS[name] = (factory, default_act)
        return factory

    return wrap


def methods() -> list[str]:
    return sorted(_METHODS)


def lookup(method: str) -> tuple[Callable[..., WeightQuantizer], str | None]:
    if method not in _METHODS:
        raise UnknownMethodError(
            f"unknown ternarization method {method!r}; valid methods: {', '.join(methods())}")
    return _METHODS[method]
