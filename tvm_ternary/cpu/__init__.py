"""CPU kernels for ternary operators (AVX2 and up; the portable path is strategy.generic).

Import order is priority in the strategy registry: the batched GEMM and the convolution
register here, before ``strategy`` (the GEMV and the other kernels) is imported; except
the block-sparse GEMV, which ``strategy`` registers first (``first=True``) because it
beats the GEMM on weights with enough zero blocks.
"""

from . import conv2d, gemm_linear  # noqa: F401  (register their implementations)
