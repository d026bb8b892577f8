"""Which instruction set and register tile the GEMM uses for a target.

The target dict names an LLVM CPU (``tvm_ternary.target.cpu_features`` says what it has);
AVX2 is the floor, AVX-512 VNNI (``vpdpbusd``) is used only when the named CPU has it. Tiles were measured on 4096 x 4096
x 32 (docs in the kernel report): accumulators must fit the register file (16 ymm for
AVX2, 32 zmm with AVX-512).
"""

from __future__ import annotations

from tvm_ternary.target import cpu_features

# isa -> (tile_rows, tile_pixels)
TILES = {"avx2": (4, 2), "vnni256": (4, 4), "vnni512": (8, 2)}


def choose_isa(target: dict, contiguous_k: int) -> str:
    """The widest usable ISA. ``contiguous_k`` is the length of the reduction runs the
    activations are stored in (K for a linear layer, channels per group for a
    convolution); each run is padded to the vector width, so 64-byte vectors are used only
    where they add no padding over 32-byte ones."""
    if "avx512_vnni" in cpu_features(target):
        return "vnni512" if -(-contiguous_k // 64) * 2 == -(-contiguous_k // 32) else "vnni256"
    return "avx2"


def parallel_splits(row_tasks: int, pixel_tiles: int, threads: int) -> int:
    """Split the pixel range when there are too few row tiles to feed every thread
    (at least 4 pixel tiles per piece, so each piece amortizes its weight decode)."""
    want = max(1, (4 * threads + row_tasks - 1) // row_tasks)
    return max(1, min(want, pixel_tiles // 4))
