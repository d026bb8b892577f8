"""Typed errors. Each names the thing at fault (layer, op, field, file) in its message.

All derive from ``TernaryError`` so a caller can catch everything this package raises on
bad input with one ``except``, and still tell the kinds apart.
"""


class TernaryError(Exception):
    """Base class of every error tvm-ternary raises on bad input."""


class UnknownMethodError(TernaryError, ValueError):
    """A ternarization method name that is not registered."""


class UnsupportedLayerError(TernaryError, TypeError):
    """A layer that cannot be ternarized (raised under ``strict=True``)."""


class NonFiniteWeightError(TernaryError, ValueError):
    """A layer whose weights contain NaN or infinity."""


class PackError(TernaryError, ValueError):
    """A packed buffer that does not match its format or shape."""


class FrozenModelError(TernaryError, RuntimeError):
    """A frozen (integer) model was asked to do something only a float model does."""


class FreezeError(TernaryError, ValueError):
    """A model that cannot be turned into an integer model (names the layer and why)."""


class OverflowRiskError(TernaryError, ValueError):
    """A layer whose worst-case int32 accumulator could overflow."""


class DataFileError(TernaryError, OSError):
    """A missing, truncated or corrupt data set file (names the file)."""


class UnsupportedTargetError(TernaryError, ValueError):
    """A compilation target this build cannot produce code for (names it)."""


class ShapeMismatchError(TernaryError, ValueError):
    """Inputs whose shapes differ from what a model was compiled or packed for."""


class ExportError(TernaryError, RuntimeError):
    """torch.export of a model failed; the message has torch's error and what to change."""


class HwConfigError(TernaryError, ValueError):
    """An invalid accelerator configuration (names the field and the limit it breaks)."""


class IsaError(TernaryError, ValueError):
    """An instruction or micro-op that cannot be encoded, or a malformed word or stream file."""


class SimulatorError(TernaryError, RuntimeError):
    """The functional simulator trapped; ``index`` is the instruction at fault (or None)."""

    def __init__(self, message: str, index: int | None = None):
        where = "program" if index is None else f"instruction {index}"
        super().__init__(f"{where}: {message}")
        self.index = index


class UnsupportedOpError(TernaryError, NotImplementedError):
    """An operator the compiler cannot convert or lower (names it and where it came from)."""


class KernelConfigError(TernaryError, ValueError):
    """A kernel configuration (tile sizes, ISA, padded sizes) that cannot be built (names the field)."""


class AcceleratorLayerError(TernaryError, ValueError):
    """A layer the accelerator lowering cannot run under a HwConfig (names the layer and the
    field or buffer at fault); the partitioner keeps such a layer on the host."""


class BackendError(TernaryError, RuntimeError):
    """An accelerator backend that is unknown or not available (names it and what is missing)."""


class PerfModelError(TernaryError, ValueError):
    """An input the cycle or energy model cannot account for (a useful-MAC count above the
    MAC slots a program issues, a missing or malformed energy table); names the field or file."""


class BenchmarkError(TernaryError, ValueError):
    """A benchmark workload or peer that cannot be built as asked (names it and why)."""
