"""Accelerator compiler: partition a Relax module into accelerator layers and lower each
layer (a ``LayerSpec``) to an instruction stream and DRAM image."""

from .layer import LayerSpec

__all__ = ["LayerSpec"]
