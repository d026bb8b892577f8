"""Which instruction set and register tile the GEMM uses for a target.

The target dict names an LLVM CPU (``tvm_ternary.target.cpu_features`` says what it has);
AVX2 is the floor, AVX-512 VNNI (``vpdpbusd``) is used only when the named CPU has it. Tiles were measured on 4096 x 4096
x 32 (docs in the kernel report): accumulators must fit the register file (16 ymm for
AVX2, 32 zmm with AVX-512).
"""

from __future__ import annotations

from tvm_ternary.target import cpu_features

# isa -> (tile_rows R, tile_pixels B): R * B accumulators must fit the register file with
# room for the broadcast activations (16 ymm for AVX2, 32 registers with AVX-512)
# and stay under TVM's 1024-byte stack allocation limit (16 zmm)
TILES = {"avx2": (2, 6), "vnni256": (2, 12), "vnni512": (2, 8)}


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
