"""The AVX2 path's test target: ``znver3`` (Zen 3, the design's CI machine), compiled so
that it runs on this host (``target.emulated_target``)."""

from tvm_ternary.target import emulated_target

AVX2_TARGET = emulated_target("znver3")
