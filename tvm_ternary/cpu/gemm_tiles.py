"""Which instruction set and register tile the GEMM uses for a target.

The target dict names an LLVM CPU (``tvm_ternary.target.cpu_features`` says what it has);
AVX2 is the floor, AVX-512 VNNI (``vpdpbusd``) is used only when the named CPU has it. Tiles were measured on 4096 x 4096
x 32 (docs in the kernel report): accumulators must fit the register file (16 ymm for
AVX2, 32 zmm with AVX-512).
"""

from __future__ import annotations

from tvm_ternary.target import cpu_features

from .gemm_kernel import ISA_VECTOR_BYTES

# isa -> (tile_rows R, tile_pixels B): R * B accumulators (AVX2: as many int16 ones too).
# Measured on the tensorized schedule (2 threads, min of 8 x 5 calls, same run, kernel
# alone), 4096 x 4096 x 32 GEMM / 56 x 56 x 64 3x3 conv, ms: AVX2 (znver3) 2x4 3.93 / 0.84
# vs 4x3 4.55 / 1.06 (4x3 spills accumulators: 12 + 4 weight vectors + the broadcast > 16
# ymm), 2x6 4.38 / 0.94, 3x4 4.14 / 1.12, 1x8 4.19 / 0.82; VNNI-512 2x8 2.09 / 0.46 vs 4x4
# 2.12 / 0.54, 4x3 2.56 / 0.54. VNNI-256 serves groups of at most 8 channels: one vector.
TILES = {"avx2": (2, 4), "vnni256": (1, 8), "vnni512": (2, 8)}

# The schedule template's knobs (``strategy.registry.Impl.knobs``: candidates, the first the
# default): 0 means "the ISA's measured default" (``TILES``, ``parallel_splits``).
# ``splits`` chooses the parallel axis: 1 parallelizes over row tiles only, more also
# splits the pixel range; ``unroll_steps`` unrolls the reduction-step loop (where it
# divides the loop).
KNOBS = {"tile_rows": (0, 1, 2, 4), "tile_pixels": (0, 2, 3, 4, 6, 8), "splits": (0, 1, 2, 4, 8),
         "unroll_steps": (1, 2, 4), "k_block": (0, 32, 64, 128, 256)}

# VNNI decodes the weights in K blocks (``k_block``: reduction steps per block) when a
# task's whole decoded tile would not stay in L1 (48 KiB here), in blocks of at most
# BLOCK_TILE_BYTES. Measured (2 threads, busy host, min of 60 x 5 calls, same run):
# 4096 x 4096 x 32 GEMM (128 KiB tile) 1.97 ms whole vs 1.68 in 128-step blocks (16 KiB),
# 1.64 in 64-step ones; the 28 x 28 x 128 3x3 conv (36 KiB tile) 0.239 whole vs 0.269 in
# 96-step blocks, 0.287 in 32-step ones (each block re-reads acc and the window).
WHOLE_TILE_BYTES = 40 * 1024
STEPS_PER_BYTE = 4   # a packed byte holds four steps: blocks of whole bytes
BLOCK_TILE_BYTES = 16 * 1024


def tile_shape(isa: str, knobs: dict | None, dual: bool = False) -> tuple[int, int]:
    """``(R, B)`` from the knobs, defaulting per ISA. A dual-scale tile holds R / 2
    channel vectors and their +1-code vectors, so R is rounded up to even."""
    knobs = knobs or {}
    rows, pixels = TILES[isa]
    rows = knobs.get("tile_rows") or rows
    return rows + (rows % 2 if dual else 0), knobs.get("tile_pixels") or pixels


def choose_isa(target: dict, rows_per_group: int) -> str:
    """The widest usable ISA: 16-lane vectors only where a group has more than 8 output
    channels (each lane is a channel; the rest would be padding)."""
    if "avx512_vnni" in cpu_features(target):
        return "vnni512" if rows_per_group > 8 else "vnni256"
    return "avx2"


def parallel_splits(row_tasks: int, pixel_tiles: int, threads: int, knobs: dict | None = None) -> int:
    """Split the pixel range when there are too few row tiles to feed every thread
    (at least 4 pixel tiles per piece, so each piece amortizes its weight decode), unless
    the ``splits`` knob says how many pieces."""
    if (knobs or {}).get("splits"):
        return min(knobs["splits"], pixel_tiles)
    want = max(1, (4 * threads + row_tasks - 1) // row_tasks)
    return max(1, min(want, pixel_tiles // 4))


def k_block_steps(isa: str, steps: int, tile_rows: int, tap_steps: int, knobs: dict | None = None) -> int:
    """Reduction steps per decoded weight block for a tile of ``tile_rows`` vectors over
    ``steps`` steps (0: one block). The ``k_block`` knob (else the L1 rule above) is an
    upper bound: the block is the largest divisor of ``steps`` up to it, a whole number of
    a convolution's taps (``tap_steps``, 0 for none) where one fits, else of packed bytes.
    AVX2 decodes whole."""
    if isa == "avx2":
        return 0
    vector_bytes = ISA_VECTOR_BYTES[isa]
    limit = (knobs or {}).get("k_block")
    if not limit:
        if tile_rows * steps * vector_bytes <= WHOLE_TILE_BYTES:
            return 0
        limit = BLOCK_TILE_BYTES // (tile_rows * vector_bytes)
    unit = tap_steps if tap_steps and tap_steps <= limit else STEPS_PER_BYTE
    fits = [b for b in range(unit, min(limit, steps) + 1, unit) if steps % b == 0]
    return 0 if not fits or fits[-1] == steps else fits[-1]
