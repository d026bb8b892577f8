"""Ternarization methods, ternary layers, packed formats, and the integer reference."""

from . import methods, reference
from .act import Int8Act, TernaryAct
from .calibrate import calibrate
from .freeze import freeze
from .frozen import FrozenModel, FrozenTernaryLayer, run_reference
from .layers import TernaryConv2d, TernaryLinear, ternary_layers
from .methods.registry import methods as available_methods
from .residual import ResidualQuant
from .packing import FORMATS, pack, packed_bits, unpack, zero_block_bitmap
from .ternarize import ternarize

__all__ = [
    "FORMATS", "FrozenModel", "FrozenTernaryLayer", "Int8Act", "ResidualQuant", "TernaryAct", "TernaryConv2d", "TernaryLinear", "available_methods",
    "calibrate", "freeze", "methods", "pack", "packed_bits", "reference", "run_reference",
    "ternarize", "ternary_layers", "unpack", "zero_block_bitmap",
]
