"""Which instruction set and register tile the GEMM uses for a target.

The target dict names an LLVM CPU (``tvm_ternary.target.cpu_features`` says what it has);
AVX2 is the floor, AVX-512 VNNI (``vpdpbusd``) is used only when the named CPU has it. Tiles were measured on 4096 x 4096
x 32 (docs in the kernel report): accumulators must fit the register file (16 ymm for
AVX2, 32 zmm with AVX-512).
"""

from __future__ import annotations

from tvm_ternary.target import cpu_features

# isa -> (tile_rows R, tile_pixels B): R * B accumulators in the register file (16 ymm for
# AVX2: the weight vectors then come from memory operands; 32 registers with AVX-512), at
# most 16 zmm (TVM's 1024-byte stack allocation limit). Measured (2 threads, min of 5,
# noisy shared host), 4096 x 4096 x 32 GEMM / 56 x 56 x 64 3x3 conv kernel:
# avx2 4x3 11.2 / 3.0 ms vs 2x6 17.7 / 3.2; vnni512 4x4 5.4 / 1.0 ms vs 2x8 6.3 / 2.0.
TILES = {"avx2": (4, 3), "vnni256": (4, 6), "vnni512": (4, 4)}


def choose_isa(target: dict, rows_per_group: int) -> str:
    """The widest usable ISA: 16-lane vectors only where a group has more than 8 output
    channels (each lane is a channel; the rest would be padding)."""
    if "avx512_vnni" in cpu_features(target):
        return "vnni512" if rows_per_group > 8 else "vnni256"
    return "avx2"


def parallel_splits(row_tasks: int, pixel_tiles: int, threads: int) -> int:
    """Split the pixel range when there are too few row tiles to feed every thread
    (at least 4 pixel tiles per piece, so each piece amortizes its weight decode)."""
    want = max(1, (4 * threads + row_tasks - 1) // row_tasks)
    return max(1, min(want, pixel_tiles // 4))
