"""Register-tiled ternary x int8 GEMM in TIR with x86 intrinsics (AVX2, AVX-512 VNNI).

``z[p, n] = M[n] * sum_k w[n, k] x[p, k] + bias[n]`` for ``R`` weight rows x ``B`` pixels
per register tile. The operands are arranged for ``pmaddubsw`` / ``vpdpbusd`` (unsigned x
signed bytes): activations are stored biased, ``xu = x + 128`` in [1, 255], on the
unsigned side, and the ternary weights, decoded to int8 {-1, 0, 1}, on the signed side.
So ``sum w xu = acc + 128 sum(w)``; the constant ``-128 M[n] sum_k w[n, k]`` is folded into
a per-channel correction (``corr``) of the epilogue: no per-row activation sums at all,
which is what lets one kernel serve convolutions (whose windows overlap the padding).

Activations are addressed through two tables: ``pbase[p]`` (where pixel ``p``'s
reduction window starts in the flat input) and ``koff[v]`` (where the ``v``-th vector of
the reduction sits relative to it). A GEMM is ``pbase = p * Kp``, ``koff = v * VB``; a
convolution over an NHWC-padded input gets the window offsets of its taps (conv2d.py).
Outputs go to ``obase[p] + n * out_channel_stride``.

Per row tile, the ``R`` rows' 2-bit codes (``gemm_layout.row4_2bit``) are decoded once
into an int8 scratch (``R * Kp`` bytes, L1-resident) and reused by every pixel tile.
AVX2 (``pmaddubsw``): a pair sum is at most 2 * 255 = 510, so int16 lanes take
``AVX2_CHUNK`` = 64 products (32640 < 2**15) before ``pmaddwd`` widens them to int32.
VNNI (``vpdpbusd``) accumulates in int32 directly. All intrinsic bodies are single nested
expressions: named vector temporaries become workspace allocations (DESIGN.md: 6x slower).
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError

from .gemm_layout import BLOCK_K, BLOCK_ROWS, round_up

X_BIAS = 128          # xu = x + X_BIAS puts int8 activations on the unsigned side
AVX2_CHUNK = 64       # pmaddubsw products per int16 lane before widening (64 * 510 < 2**15)

# the operands between ``xu`` and ``bias``, in order: constants of a compiled layer
CONST_OPERANDS = ("wp", "pbase", "koff", "obase", "mult", "corr")

# ISA -> bytes per vector (one pmaddubsw / vpdpbusd operand)
ISA_VECTOR_BYTES = {"avx2": 32, "vnni256": 32, "vnni512": 64}


@dataclass(frozen=True)
class GemmSpec:
    """Everything that shapes one kernel (the single source of its parameters)."""
    isa: str                       # "avx2" | "vnni256" | "vnni512"
    groups: int                    # independent weight groups (grouped convolution)
    rows: int                      # real output rows (channels) per group
    pixels: int                    # real pixels (GEMM rows of x) M
    k_padded: int                  # reduction length per group, a multiple of vector_bytes
    x_shape: tuple                 # shape of the biased uint8 input tensor
    x_group_stride: int            # flat offset between groups' inputs
    out_shape: tuple               # shape of the int64 output tensor
    out_channel_stride: int        # flat offset between output channels
    tile_rows: int = 4             # R: a multiple of 4
    tile_pixels: int = 2           # B
    splits: int = 1                # parallel pieces of the pixel range per row tile

    def __post_init__(self):
        if self.isa not in ISA_VECTOR_BYTES:
            raise KernelConfigError(f"GemmSpec.isa: {self.isa!r} is not one of {sorted(ISA_VECTOR_BYTES)}")
        if self.tile_rows < BLOCK_ROWS or self.tile_rows % BLOCK_ROWS:
            raise KernelConfigError(f"GemmSpec.tile_rows: {self.tile_rows} is not a positive multiple of {BLOCK_ROWS}")
        for field in ("groups", "rows", "pixels", "tile_pixels", "splits", "k_padded"):
            if getattr(self, field) < 1:
                raise KernelConfigError(f"GemmSpec.{field}: {getattr(self, field)} must be >= 1")
        if self.k_padded % self.vector_bytes:
            raise KernelConfigError(f"GemmSpec.k_padded: {self.k_padded} is not a multiple of "
                                    f"{self.vector_bytes} ({self.isa} vector bytes)")

    @property
    def vector_bytes(self) -> int:
        return ISA_VECTOR_BYTES[self.isa]

    @property
    def row_tiles(self) -> int:
        return (self.rows + self.tile_rows - 1) // self.tile_rows

    @property
    def pixel_tiles(self) -> int:
        return (self.pixels + self.tile_pixels - 1) // self.tile_pixels

    @property
    def packed_shape(self) -> tuple:
        """Shape of the ``row4_2bit`` weights the kernel reads."""
        return (self.groups, self.row_tiles * self.tile_rows // BLOCK_ROWS,
                self.k_padded // BLOCK_K, BLOCK_K)

    def symbol(self) -> str:
        import hashlib
        key = hashlib.sha1(repr(self).encode()).hexdigest()[:10]
        return f"ternary_gemm_{self.isa}_r{self.tile_rows}b{self.tile_pixels}_{key}"


def _hsum(buf, base: int, lanes: int):
    total = buf[base]
    for i in range(1, lanes):
        total = total + buf[base + i]
    return total


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def make_gemm(spec: GemmSpec):
    """The PrimFunc ``gemm(xu, wp, pbase, koff, obase, mult, corr, bias, out)`` of ``spec``.

    ``xu`` uint8 ``spec.x_shape``; ``wp`` uint8 ``spec.packed_shape``; ``pbase``/``obase``
    int32 ``[pixel_tiles * B]`` (entries past the real pixels repeat a valid pixel; their
    results are not stored); ``koff`` int32 ``[k_padded / VB]``; ``mult``/``corr``/``bias``
    int64 ``[groups * rows]``; ``out`` int64 ``spec.out_shape``.
    """
    isa, VB = spec.isa, spec.vector_bytes
    G, NG, M, KP = spec.groups, spec.rows, spec.pixels, spec.k_padded
    R, B, S = spec.tile_rows, spec.tile_pixels, spec.splits
    NT, MT = spec.row_tiles, spec.pixel_tiles
    MTS = (MT + S - 1) // S       # pixel tiles per parallel piece
    KB, KV = KP // BLOCK_K, KP // VB
    L = VB // 4                   # int32 lanes of one accumulator
    Q = NT * R // BLOCK_ROWS
    XS, XL, GX = tuple(spec.x_shape), _prod(spec.x_shape), spec.x_group_stride
    OS, OL, OC = tuple(spec.out_shape), _prod(spec.out_shape), spec.out_channel_stride
    vnni = isa != "avx2"
    CH = KV if vnni else AVX2_CHUNK
    NCH = (KV + CH - 1) // CH

    @T.prim_func
    def gemm(xu: T.Buffer(XS, "uint8"), wp: T.Buffer((G, Q, KB, BLOCK_K), "uint8"),
             pbase: T.Buffer((MT * B,), "int32"), koff: T.Buffer((KV,), "int32"),
             obase: T.Buffer((MT * B,), "int32"), mult: T.Buffer((G * NG,), "int64"),
             corr: T.Buffer((G * NG,), "int64"), bias: T.Buffer((G * NG,), "int64"),
             out: T.Buffer(OS, "int64")):
        T.func_attr({"tirx.noalias": True})
        xf = T.decl_buffer((XL,), "uint8", data=xu.data)
        of = T.decl_buffer((OL,), "int64", data=out.data)
        for task in T.parallel(G * NT * S):
            # decode this row tile's weights once: int8 {-1, 0, 1}, row r at r * KP
            wd = T.alloc_buffer((R * KP,), "int8", scope="local")
            for kb in range(KB):
                for r in T.unroll(R):
                    wd[T.ramp(r * KP + kb * BLOCK_K, 1, BLOCK_K)] = T.reinterpret(
                        f"int8x{BLOCK_K}", T.bitwise_and(
                            T.shift_right(wp[task // (NT * S), (task // S) % NT * (R // BLOCK_ROWS) + r // BLOCK_ROWS,
                                             kb, T.ramp(0, 1, BLOCK_K)],
                                          T.broadcast(T.uint8(2 * (r % BLOCK_ROWS)), BLOCK_K)),
                            T.broadcast(T.uint8(3), BLOCK_K))) - T.broadcast(T.int8(1), BLOCK_K)
            for mb in range(task % S * MTS, T.min(MT, task % S * MTS + MTS)):
                acc = T.alloc_buffer((R * B * L,), "int32", scope="local")
                for i in T.unroll(R * B):
                    acc[T.ramp(i * L, 1, L)] = T.broadcast(0, L)
                for c in range(NCH):
                    if vnni:
                        for kv in range(c * CH, T.min(c * CH + CH, KV)):
                            for b in T.unroll(B):
                                for r in T.unroll(R):
                                    acc[T.ramp((r * B + b) * L, 1, L)] = T.call_llvm_pure_intrin(
                                        f"int32x{L}", f"llvm.x86.avx512.vpdpbusd.{VB * 8}",
                                        acc[T.ramp((r * B + b) * L, 1, L)],
                                        xf[T.ramp(pbase[mb * B + b] + koff[kv] + task // (NT * S) * GX, 1, VB)],
                                        wd[T.ramp(r * KP + kv * VB, 1, VB)])
                    else:
                        a16 = T.alloc_buffer((R * B * 16,), "int16", scope="local")
                        for i in T.unroll(R * B):
                            a16[T.ramp(i * 16, 1, 16)] = T.broadcast(T.int16(0), 16)
                        for kv in range(c * CH, T.min(c * CH + CH, KV)):
                            for b in T.unroll(B):
                                for r in T.unroll(R):
                                    a16[T.ramp((r * B + b) * 16, 1, 16)] = (
                                        a16[T.ramp((r * B + b) * 16, 1, 16)] + T.call_llvm_pure_intrin(
                                            "int16x16", "llvm.x86.avx2.pmadd.ub.sw",
                                            xf[T.ramp(pbase[mb * B + b] + koff[kv] + task // (NT * S) * GX, 1, 32)],
                                            wd[T.ramp(r * KP + kv * 32, 1, 32)]))
                        for i in T.unroll(R * B):
                            acc[T.ramp(i * 8, 1, 8)] = acc[T.ramp(i * 8, 1, 8)] + T.call_llvm_pure_intrin(
                                "int32x8", "llvm.x86.avx2.pmadd.wd", a16[T.ramp(i * 16, 1, 16)],
                                T.broadcast(T.int16(1), 16))
                for r in T.unroll(R):
                    for b in T.unroll(B):
                        if (task // S) % NT * R + r < NG and mb * B + b < M:
                            of[obase[mb * B + b] + (task // (NT * S) * NG + (task // S) % NT * R + r) * OC] = (
                                mult[task // (NT * S) * NG + (task // S) % NT * R + r]
                                * T.Cast("int64", _hsum(acc, (r * B + b) * L, L))
                                + corr[task // (NT * S) * NG + (task // S) % NT * R + r]
                                + bias[task // (NT * S) * NG + (task // S) % NT * R + r])

    return gemm.with_attr("global_symbol", spec.symbol())
