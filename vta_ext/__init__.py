"""The accelerator side of tvm-ternary: hardware configuration, ISA, simulators."""

from .config import HwConfig

__all__ = ["HwConfig"]
