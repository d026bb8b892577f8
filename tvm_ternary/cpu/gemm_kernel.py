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

Activations are addressed through two tables, in 4-byte words of the flat input:
``pbase[p]`` (where pixel ``p``'s reduction window starts) and ``koff[s]`` (where its
``s``-th group of four reduction bytes sits relative to that). A GEMM is
``pbase = p * Kp / 4``, ``koff = s``; a convolution over an NHWC-padded input gets the
offsets of its taps (conv2d.py). Word units keep the inner loop's address arithmetic to
one addressing mode per broadcast.
Outputs go to ``obase[p] + n * out_channel_stride``.

Per row tile, the weights are decoded once into an int8 scratch and reused by every
pixel tile. AVX2 (``pmaddubsw``): a pair sum is at most 2 * 255 = 510, so int16 lanes
take ``AVX2_CHUNK`` = 64 steps (32640 < 2**15) before ``pmaddwd`` widens them (the two
int16 halves of a lane belong to the same channel). VNNI accumulates in int32. All
intrinsic bodies are single nested expressions: named vector temporaries become
workspace allocations (DESIGN.md: 6x slower). Local buffers stay under TVM's 1024-byte
stack limit (larger ones become a workspace allocation per loop iteration and keep the
accumulators out of registers): at most 16 zmm accumulators, the epilogue one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError, OverflowRiskError

from .gemm_layout import BLOCK_K, STEP_K

X_BIAS = 128          # xu = x + X_BIAS puts int8 activations on the unsigned side
AVX2_CHUNK = 64       # pmaddubsw steps per int16 lane before widening (64 * 510 < 2**15)

# the operands between ``xu`` and ``bias``, in order: constants of a compiled layer
CONST_OPERANDS = ("wp", "pbase", "koff", "obase", "mult", "corr")

# ISA -> bytes per vector (one pmaddubsw / vpdpbusd operand); lanes = bytes / 4
ISA_VECTOR_BYTES = {"avx2": 32, "vnni256": 32, "vnni512": 64}
INDEX_LIMIT = 2**31   # tables and flat offsets are int32


@dataclass(frozen=True)
class GemmSpec:
    """Everything that shapes one kernel (the single source of its parameters)."""
    isa: str                       # "avx2" | "vnni256" | "vnni512"
    groups: int                    # independent weight groups (grouped convolution)
    rows: int                      # real output channels per group
    pixels: int                    # real pixels (GEMM rows of x) M
    k_padded: int                  # reduction length per group, a multiple of 16
    x_shape: tuple                 # shape of the biased uint8 input tensor
    x_group_stride: int            # flat offset between groups' inputs (a multiple of 4)
    out_shape: tuple               # shape of the int64 output tensor
    out_channel_stride: int        # flat offset between output channels
    tile_rows: int = 2             # R: channel vectors per tile (R * lanes channels)
    tile_pixels: int = 4           # B
    splits: int = 1                # parallel pieces of the pixel range per row tile

    def __post_init__(self):
        if self.isa not in ISA_VECTOR_BYTES:
            raise KernelConfigError(f"GemmSpec.isa: {self.isa!r} is not one of {sorted(ISA_VECTOR_BYTES)}")
        for field in ("groups", "rows", "pixels", "tile_rows", "tile_pixels", "splits", "k_padded"):
            if getattr(self, field) < 1:
                raise KernelConfigError(f"GemmSpec.{field}: {getattr(self, field)} must be >= 1")
        if self.k_padded % BLOCK_K:
            raise KernelConfigError(f"GemmSpec.k_padded: {self.k_padded} is not a multiple of {BLOCK_K}")
        if self.x_group_stride % STEP_K:
            raise KernelConfigError(f"GemmSpec.x_group_stride: {self.x_group_stride} is not a multiple of {STEP_K}")
        if self.k_padded * (2 * X_BIAS - 1) >= INDEX_LIMIT:
            raise OverflowRiskError(f"GemmSpec.k_padded: {self.k_padded} x 255 (biased activations) "
                                    "could overflow the int32 accumulator")
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
    def tile_channels(self) -> int:
        return self.tile_rows * self.lanes

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
    def packed_shape(self) -> tuple:
        """Shape of the ``lanes_2bit`` weights the kernel reads."""
        return (self.groups, self.rows_padded // self.lanes, self.k_padded // BLOCK_K, self.vector_bytes)

    def symbol(self) -> str:
        import hashlib
        key = hashlib.sha1(repr(self).encode()).hexdigest()[:10]
        return f"ternary_gemm_{self.isa}_r{self.tile_rows}b{self.tile_pixels}_{key}"


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def make_gemm(spec: GemmSpec):
    """The PrimFunc ``gemm(xu, wp, pbase, koff, obase, mult, corr, bias, out)`` of ``spec``.

    ``xu`` uint8 ``spec.x_shape``; ``wp`` uint8 ``spec.packed_shape``; ``pbase``/``obase``
    int32 ``[pixel_tiles * B]`` (``pbase`` in 4-byte words; entries past the real pixels
    repeat a valid pixel, their results are not stored); ``koff`` int32 ``[k_padded / 4]``
    (words); ``mult``/``corr`` int64
    ``[groups * rows_padded]``; ``bias`` int64 ``[groups * rows]``; ``out`` int64
    ``spec.out_shape``.
    """
    isa, VB, L = spec.isa, spec.vector_bytes, spec.lanes
    G, NG, NGP, M, KP = spec.groups, spec.rows, spec.rows_padded, spec.pixels, spec.k_padded
    R, B, S = spec.tile_rows, spec.tile_pixels, spec.splits
    NT, MT = spec.row_tiles, spec.pixel_tiles
    MTS = (MT + S - 1) // S       # pixel tiles per parallel piece
    KS, KQ = KP // STEP_K, KP // BLOCK_K   # reduction steps, packed blocks
    XS, XW, GXW = tuple(spec.x_shape), _prod(spec.x_shape) // STEP_K, spec.x_group_stride // STEP_K
    OS, OL, OC = tuple(spec.out_shape), _prod(spec.out_shape), spec.out_channel_stride
    vnni = isa != "avx2"
    CH = KS if vnni else AVX2_CHUNK
    NCH = (KS + CH - 1) // CH
    RB = R * B

    @T.prim_func
    def gemm(xu: T.Buffer(XS, "uint8"), wp: T.Buffer((G, NGP // L, KQ, VB), "uint8"),
             pbase: T.Buffer((MT * B,), "int32"), koff: T.Buffer((KS,), "int32"),
             obase: T.Buffer((MT * B,), "int32"), mult: T.Buffer((G * NGP,), "int64"),
             corr: T.Buffer((G * NGP,), "int64"), bias: T.Buffer((G * NG,), "int64"),
             out: T.Buffer(OS, "int64")):
        T.func_attr({"tirx.noalias": True})
        xw = T.decl_buffer((XW,), "int32", data=xu.data)   # 4-byte groups, broadcast to lanes
        of = T.decl_buffer((OL,), "int64", data=out.data)
        for task in T.parallel(G * NT * S):
            # this tile's R channel vectors, decoded once: wd[(r * KS + s) * VB + 4 l + t]
            wd = T.alloc_buffer((R * KS * VB,), "int8", scope="local")
            for q in range(KQ):
                for r in T.unroll(R):
                    for j in T.unroll(4):
                        wd[T.ramp((r * KS + q * 4 + j) * VB, 1, VB)] = T.reinterpret(
                            f"int8x{VB}", T.bitwise_and(
                                T.shift_right(wp[task // (NT * S), (task // S) % NT * R + r, q, T.ramp(0, 1, VB)],
                                              T.broadcast(T.uint8(2 * j), VB)),
                                T.broadcast(T.uint8(3), VB))) - T.broadcast(T.int8(1), VB)
            for mb in range(task % S * MTS, T.min(MT, task % S * MTS + MTS)):
                acc = T.alloc_buffer((RB * L,), "int32", scope="local")
                for i in T.unroll(RB):
                    acc[T.ramp(i * L, 1, L)] = T.broadcast(0, L)
                for c in range(NCH):
                    if vnni:
                        for s in range(c * CH, T.min(c * CH + CH, KS)):
                            for b in T.unroll(B):
                                for r in T.unroll(R):
                                    acc[T.ramp((r * B + b) * L, 1, L)] = T.call_llvm_pure_intrin(
                                        f"int32x{L}", f"llvm.x86.avx512.vpdpbusd.{VB * 8}",
                                        acc[T.ramp((r * B + b) * L, 1, L)],
                                        T.reinterpret(f"uint8x{VB}", T.broadcast(xw[
                                            pbase[mb * B + b] + task // (NT * S) * GXW + koff[s]], L)),
                                        wd[T.ramp((r * KS + s) * VB, 1, VB)])
                    else:
                        a16 = T.alloc_buffer((RB * 16,), "int16", scope="local")
                        for i in T.unroll(RB):
                            a16[T.ramp(i * 16, 1, 16)] = T.broadcast(T.int16(0), 16)
                        for s in range(c * CH, T.min(c * CH + CH, KS)):
                            for b in T.unroll(B):
                                for r in T.unroll(R):
                                    a16[T.ramp((r * B + b) * 16, 1, 16)] = (
                                        a16[T.ramp((r * B + b) * 16, 1, 16)] + T.call_llvm_pure_intrin(
                                            "int16x16", "llvm.x86.avx2.pmadd.ub.sw",
                                            T.reinterpret("uint8x32", T.broadcast(xw[
                                                pbase[mb * B + b] + task // (NT * S) * GXW + koff[s]], 8)),
                                            wd[T.ramp((r * KS + s) * 32, 1, 32)]))
                        for i in T.unroll(RB):
                            acc[T.ramp(i * 8, 1, 8)] = acc[T.ramp(i * 8, 1, 8)] + T.call_llvm_pure_intrin(
                                "int32x8", "llvm.x86.avx2.pmadd.wd", a16[T.ramp(i * 16, 1, 16)],
                                T.broadcast(T.int16(1), 16))
                # epilogue: z = M * acc + corr (vector), + bias and store per real channel
                for r in T.unroll(R):
                    for b in T.unroll(B):
                        if mb * B + b < M:
                            zb = T.alloc_buffer((L,), "int64", scope="local")
                            zb[T.ramp(0, 1, L)] = (
                                mult[T.ramp(task // (NT * S) * NGP + ((task // S) % NT * R + r) * L, 1, L)]
                                * T.Cast(f"int64x{L}", acc[T.ramp((r * B + b) * L, 1, L)])
                                + corr[T.ramp(task // (NT * S) * NGP + ((task // S) % NT * R + r) * L, 1, L)])
                            for lane in T.unroll(L):
                                if ((task // S) % NT * R + r) * L + lane < NG:
                                    of[obase[mb * B + b] + (task // (NT * S) * NG + ((task // S) % NT * R + r) * L + lane) * OC] = (
                                        zb[lane] + bias[task // (NT * S) * NG + ((task // S) % NT * R + r) * L + lane])

    return gemm.with_attr("global_symbol", spec.symbol())
