"""torch.export -> Relax, with converters for the ``tternary::*`` custom ops."""

from .torch_import import export_frozen, from_exported, from_frozen, tternary_converters

__all__ = ["export_frozen", "from_exported", "from_frozen", "tternary_converters"]
