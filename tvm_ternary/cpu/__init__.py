"""CPU kernels for ternary operators (AVX2 and up; the portable path is strategy.generic)."""
