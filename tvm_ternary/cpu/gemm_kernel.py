"""Register-tiled ternary x int8 GEMM in TIR with x86 intrinsics (AVX2, AVX-512 VNNI).

``z[p, n] = M[n] * sum_k w[n, k] x[p, k] + bias[n]`` for ``R * L`` output channels x
``B`` pixels per register tile. Accumulator lanes are output channels (``L`` per vector,
layout ``gemm_layout.lanes_2bit``): four activation bytes are broadcast to every lane and
``vpdpbusd`` / ``pmaddubsw`` multiply them with each lane's four weights, so no
horizontal sums are needed. Operands are arranged for the unsigned x signed byte
multiply: activations are stored biased, ``xu = x + 128`` in [1, 255], on the unsigned
side, and the ternary weights, decoded to int8 {-1, 0, 1}, on the signed side. Then
``sum w xu = acc + 128 sum(w)``, and the constant ``-128 M[n] sum_k w[n, k]`` is folded into
a per-channel correction (``corr``): no per-pixel activation sums, which is what lets one
kernel serve convolutions (whose windows overlap the padding).

The input is addressed in closed form from the spec's window (a GEMM is a 1x1 window
over ``[M, 1, 1, Kp]``; a convolution one over its NHWC-padded input, conv2d.py), in
4-byte words; outputs go to ``obase[p] + n * out_channel_stride``.

This module holds ``GemmSpec``, the single source of a kernel's parameters, and
``make_gemm``: the kernel is ``gemm_compute`` (what is computed, as TIR blocks) scheduled
by ``gemm_schedule`` (tiles, parallel loop, the decoded weight tile cached per task, the
store epilogue at the pixel tile) and tensorized onto ``gemm_intrin``. AVX2
(``pmaddubsw``): a pair sum is at most 2 * 255 = 510, so int16 lanes take at most
``AVX2_CHUNK`` = 64 steps (32640 < 2**15) before ``pmaddwd`` widens them (the two int16
halves of a lane belong to the same channel). VNNI accumulates in int32. Local buffers
stay under TVM's 1024-byte stack limit (``LOCAL_BYTES``: larger ones become a workspace
allocation per loop iteration and keep the accumulators out of registers).
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm_ternary.errors import KernelConfigError, OverflowRiskError

from .gemm_epilogue import FUSABLE
from .gemm_layout import BLOCK_K, STEP_K

X_BIAS = 128          # xu = x + X_BIAS puts int8 activations on the unsigned side
AVX2_CHUNK = 64       # pmaddubsw steps per int16 lane before widening (64 * 510 < 2**15)

# the operands between ``xu`` and ``bias``, in order: constants of a compiled layer
# (z = mult acc + mult_p acc_p + corr + bias: mult_p = Mp - Mn, zero and unread when symmetric)
CONST_OPERANDS = ("wp", "obase", "mult", "mult_p", "corr")

# ISA -> bytes per vector (one pmaddubsw / vpdpbusd operand); lanes = bytes / 4
ISA_VECTOR_BYTES = {"avx2": 32, "vnni256": 32, "vnni512": 64}
INDEX_LIMIT = 2**31   # tables and flat offsets are int32
# TVM moves local buffers larger than this off the stack (a workspace allocation per loop
# iteration), which keeps the accumulators out of registers
LOCAL_BYTES = 1024


@dataclass(frozen=True)
class GemmSpec:
    """Everything that shapes one kernel (the single source of its parameters)."""
    isa: str                       # "avx2" | "vnni256" | "vnni512"
    groups: int                    # independent weight groups (grouped convolution)
    rows: int                      # real output channels per group
    pixels: int                    # real pixels (GEMM rows of x) M
    k_padded: int                  # reduction length per group, a multiple of 16
    x_shape: tuple                 # biased uint8 input: [M, Kp] (GEMM) or NHWC [B, Hp, Wp, C] (conv)
    x_group_stride: int            # flat offset between groups' inputs (a multiple of 4)
    out_shape: tuple               # shape of the int64 output tensor
    out_channel_stride: int        # flat offset between output channels
    tile_rows: int = 2             # R: channel vectors per tile (R * lanes channels)
    tile_pixels: int = 4           # B
    splits: int = 1                # parallel pieces of the pixel range per row tile
    unroll_steps: int = 1          # reduction steps unrolled around the register tile
    k_block: int = 0               # VNNI: reduction steps per decoded weight block (0: all)
    # convolution window over the NHWC input (a GEMM is a 1x1 window over [M, 1, 1, Kp])
    window: tuple = (1, 1)         # kh, kw
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    tap_bytes: int = 0             # input bytes per tap and group (0: the whole k_padded)
    dual: bool = False             # dual scales (Mp != Mn): a second accumulator on the +1 codes
    epilogue: str = ""             # fused into the store (gemm_epilogue.FUSABLE), "" for none
    clamp: tuple = (-127, 127)     # lo, hi of a requantizing epilogue

    def __post_init__(self):
        if self.isa not in ISA_VECTOR_BYTES:
            raise KernelConfigError(f"GemmSpec.isa: {self.isa!r} is not one of {sorted(ISA_VECTOR_BYTES)}")
        for field in ("groups", "rows", "pixels", "tile_rows", "tile_pixels", "splits", "k_padded",
                      "unroll_steps"):
            if getattr(self, field) < 1:
                raise KernelConfigError(f"GemmSpec.{field}: {getattr(self, field)} must be >= 1")
        if self.epilogue not in ("",) + FUSABLE:
            raise KernelConfigError(f"GemmSpec.epilogue: {self.epilogue!r} is not one of {FUSABLE} (or '')")
        if self.dual and self.tile_rows % 2:
            raise KernelConfigError(f"GemmSpec.tile_rows: {self.tile_rows} must be even for a dual-scale "
                                    "kernel (each channel vector has a +1-code vector beside it)")
        if self.k_block < 0 or self.k_block and (self.isa == "avx2" or (self.k_padded // STEP_K) % self.k_block):
            raise KernelConfigError(f"GemmSpec.k_block: {self.k_block} must be 0 or, on VNNI, divide the "
                                    f"{self.k_padded // STEP_K} reduction steps")
        if self.tile_rows * self.tile_pixels * self.vector_bytes > LOCAL_BYTES:
            raise KernelConfigError(f"GemmSpec.tile_rows x tile_pixels: {self.tile_rows} x {self.tile_pixels} "
                                    f"accumulators of {self.vector_bytes} bytes exceed {LOCAL_BYTES} bytes")
        if self.k_padded % BLOCK_K:
            raise KernelConfigError(f"GemmSpec.k_padded: {self.k_padded} is not a multiple of {BLOCK_K}")
        if self.x_group_stride % STEP_K:
            raise KernelConfigError(f"GemmSpec.x_group_stride: {self.x_group_stride} is not a multiple of {STEP_K}")
        if self.k_padded * (2 * X_BIAS - 1) >= INDEX_LIMIT:
            raise OverflowRiskError(f"GemmSpec.k_padded: {self.k_padded} x 255 (biased activations) "
                                    "could overflow the int32 accumulator")
        steps = self.k_padded // STEP_K
        if self.isa == "avx2" and chunk_steps(steps) * 2 < min(steps, AVX2_CHUNK):
            raise KernelConfigError(f"GemmSpec.k_padded: {self.k_padded} does not split into equal int16 "
                                    f"chunks of about {AVX2_CHUNK} steps (use reduction_padded)")
        if self.tap_bytes % STEP_K or self.window[0] * self.window[1] * self.tap_bytes > self.k_padded:
            raise KernelConfigError(f"GemmSpec.tap_bytes: {self.tap_bytes} x window {self.window} does not fit "
                                    f"k_padded {self.k_padded} in 4-byte steps")
        for field in ("x_shape", "out_shape"):
            if _prod(getattr(self, field)) >= INDEX_LIMIT:
                raise KernelConfigError(f"GemmSpec.{field}: {getattr(self, field)} has 2**31 elements "
                                        "or more (int32 offsets)")

    @property
    def vector_bytes(self) -> int:
        return ISA_VECTOR_BYTES[self.isa]

    @property
    def lanes(self) -> int:
        return self.vector_bytes // STEP_K

    @property
    def vectors_per_channel_vector(self) -> int:
        """Accumulator vectors per ``lanes`` channels: 2 (``acc``, ``acc_p``) when dual."""
        return 2 if self.dual else 1

    @property
    def tile_channels(self) -> int:
        return self.tile_rows // self.vectors_per_channel_vector * self.lanes

    @property
    def row_tiles(self) -> int:
        return (self.rows + self.tile_channels - 1) // self.tile_channels

    @property
    def rows_padded(self) -> int:
        return self.row_tiles * self.tile_channels

    @property
    def pixel_tiles(self) -> int:
        return (self.pixels + self.tile_pixels - 1) // self.tile_pixels

    @property
    def k_block_steps(self) -> int:
        """Reduction steps per K block: the decoded weights of one block are computed
        once per task and block, and meet every pixel tile of the task."""
        return self.k_block or self.k_padded // STEP_K

    @property
    def k_blocks(self) -> int:
        return self.k_padded // STEP_K // self.k_block_steps

    @property
    def nhwc(self) -> tuple:
        """The input as [B, Hp, Wp, C] (a GEMM's [M, Kp] is [M, 1, 1, Kp])."""
        return tuple(self.x_shape) if len(self.x_shape) == 4 else (self.x_shape[0], 1, 1, self.x_shape[1])

    @property
    def out_hw(self) -> tuple:
        _, hp, wp, _ = self.nhwc
        return tuple((size - d * (k - 1) - 1) // s + 1
                     for size, k, s, d in zip((hp, wp), self.window, self.stride, self.dilation))

    @property
    def pixel_tiles_per_split(self) -> int:
        return (self.pixel_tiles + self.splits - 1) // self.splits

    @property
    def pixels_padded(self) -> int:
        """Pixels the kernel iterates over: every split gets the same number of tiles."""
        return self.splits * self.pixel_tiles_per_split * self.tile_pixels

    @property
    def chunk(self) -> int:
        """AVX2: reduction steps summed in int16 before widening: the largest divisor of the
        steps up to AVX2_CHUNK (``reduction_padded`` pads K so that a large one exists),
        or a whole number of a convolution's taps if one is at least half as long (the
        schedule then splits steps into (tap, channel word): no division per step)."""
        steps = self.k_padded // STEP_K
        largest, per_tap = chunk_steps(steps), self.window_tap_steps
        if per_tap:
            whole_taps = [c for c in range(per_tap, largest + 1, per_tap) if steps % c == 0]
            if whole_taps and 2 * whole_taps[-1] >= largest:
                return whole_taps[-1]
        return largest

    @property
    def window_tap_steps(self) -> int:
        """Steps per tap of a convolution window that fills the reduction exactly, else 0."""
        kh, kw = self.window
        per_tap = (self.tap_bytes or self.k_padded) // STEP_K
        return per_tap if kh * kw > 1 and kh * kw * per_tap == self.k_padded // STEP_K else 0

    @property
    def packed_shape(self) -> tuple:
        """Shape of the ``lanes_2bit`` weights the kernel reads."""
        return (self.groups, self.rows_padded // self.lanes, self.k_padded // BLOCK_K, self.vector_bytes)

    def symbol(self) -> str:
        import hashlib
        key = hashlib.sha1(repr(self).encode()).hexdigest()[:10]
        return f"ternary_gemm_{self.isa}_r{self.tile_rows}b{self.tile_pixels}_{key}"


def chunk_steps(steps: int) -> int:
    """The largest divisor of ``steps`` that is at most ``AVX2_CHUNK``."""
    return next(c for c in range(min(steps, AVX2_CHUNK), 0, -1) if steps % c == 0)


def reduction_padded(k: int, isa: str) -> int:
    """``k`` padded for the kernel: to ``BLOCK_K``, and on AVX2 to equal int16 chunks."""
    steps = -(-k // BLOCK_K) * BLOCK_K // STEP_K
    if isa == "avx2":
        fewest = -(-steps // AVX2_CHUNK)
        # equal chunks without padding when a few more chunks divide the steps (a conv's
        # 9 x 32 steps: 6 x 48, not 5 x 60 with 12 wasted steps and a clamped tap index)
        exact = [n for n in range(fewest, 2 * fewest + 1) if steps % n == 0]
        if not exact:
            per_chunk = -(-steps // fewest)
            steps = fewest * ((per_chunk + 3) // 4 * 4)   # whole 16-byte packed blocks
    return steps * STEP_K


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def make_gemm(spec: GemmSpec):
    """The scheduled PrimFunc ``gemm(xu, wp, obase, mult, mult_p, corr, bias, e0, e1, e2, out)`` of
    ``spec`` (``gemm_compute`` + ``gemm_schedule``).

    ``xu`` uint8, flat ``prod(spec.x_shape)``; ``wp`` uint8 ``spec.packed_shape``;
    ``obase`` int32 ``[spec.pixels_padded]`` (where pixel ``p``'s outputs start; entries
    past the real pixels are not stored); ``mult``/``mult_p``/``corr`` int64
    ``[groups * rows_padded]``; ``bias``
    int64 ``[groups * rows]``; ``e0..e2`` the epilogue's operands
    (``gemm_epilogue.operand_types``); ``out`` flat ``prod(spec.out_shape)``, int64 (or int8
    after a fused epilogue).
    """
    from .gemm_schedule import schedule_gemm
    return schedule_gemm(spec)
