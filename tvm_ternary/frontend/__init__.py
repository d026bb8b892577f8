"""torch.export -> Relax, with converters for the ``tternary::*`` custom ops."""

from .torch_import import from_frozen, tternary_converters

__all__ = ["from_frozen", "tternary_converters"]
