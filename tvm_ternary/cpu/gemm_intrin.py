"""Tensor intrinsics of the tiled GEMM's register tile: one channel vector x one pixel x
one 4-byte reduction step, tensorized onto LLVM x86 intrinsics.

Each description is the scalar meaning the schedule's innermost loops are matched against
(``tvm.s_tir.Schedule.tensorize``); each implementation is one nested expression (named
vector temporaries become workspace allocations, DESIGN.md: 6x slower). Operands, as in
``gemm_compute``: ``A`` four biased activation bytes (uint8, broadcast to every lane),
``B`` ``lanes x 4`` decoded weights (int8, lane = output channel), ``C`` the accumulator.

- ``vnni``: ``C[l] += sum_t A[t] B[l, t]`` in int32, one ``vpdpbusd`` (8 or 16 lanes).
- AVX2 has no 4-way int8 dot into int32, so its step is split in two intrinsics:
  ``pmaddubsw`` sums into int16 pairs ``C16[l, h] += sum_tt A[2h + tt] B[l, 2h + tt]``
  (a pair is at most 2 * 255 = 510: the schedule widens after at most ``AVX2_CHUNK`` steps,
  so no int16 lane saturates), and ``pmaddwd`` with ones widens ``C[l] += C16[l, 0] +
  C16[l, 1]`` once per chunk.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

STEP = 4  # reduction bytes per lane per step (one int32 lane of vpdpbusd / pmaddwd)


def _broadcast_word(A, lanes: int, vector_bytes: int):
    """The four bytes of ``A`` repeated in every int32 lane, as uint8 (one vpbroadcastd)."""
    return T.reinterpret(f"uint8x{vector_bytes}",
                         T.broadcast(T.reinterpret("int32", A.vload([0], "uint8x4")), lanes))


def _vnni(lanes: int):
    vb = lanes * STEP

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((STEP,), "uint8", offset_factor=1),
             B: T.Buffer((lanes, STEP), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")):
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:STEP], B[0:lanes, 0:STEP])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, STEP):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vi, vk])

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((STEP,), "uint8", offset_factor=1),
             B: T.Buffer((lanes, STEP), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")):
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:STEP], B[0:lanes, 0:STEP])
            T.writes(C[0:lanes])
            C[T.ramp(0, 1, lanes)] = T.call_llvm_pure_intrin(
                f"int32x{lanes}", f"llvm.x86.avx512.vpdpbusd.{vb * 8}", C.vload([0], f"int32x{lanes}"),
                _broadcast_word(A, lanes, vb), B.vload([0, 0], f"int8x{vb}"))

    return desc, impl


AVX2_LANES = 8


@T.prim_func(s_tir=True)
def _pmaddubsw_desc(A: T.Buffer((STEP,), "uint8", offset_factor=1),
                    B: T.Buffer((AVX2_LANES, STEP), "int8", offset_factor=1),
                    C: T.Buffer((AVX2_LANES, 2), "int16", offset_factor=1, scope="local")):
    with T.sblock("root"):
        T.reads(C[0:AVX2_LANES, 0:2], A[0:STEP], B[0:AVX2_LANES, 0:STEP])
        T.writes(C[0:AVX2_LANES, 0:2])
        for i, h, k in T.grid(AVX2_LANES, 2, 2):
            with T.sblock("update"):
                vi, vh, vk = T.axis.remap("SSR", [i, h, k])
                C[vi, vh] = C[vi, vh] + T.Cast("int16", A[vh * 2 + vk]) * T.Cast("int16", B[vi, vh * 2 + vk])


@T.prim_func(s_tir=True)
def _pmaddubsw_impl(A: T.Buffer((STEP,), "uint8", offset_factor=1),
                    B: T.Buffer((AVX2_LANES, STEP), "int8", offset_factor=1),
                    C: T.Buffer((AVX2_LANES, 2), "int16", offset_factor=1, scope="local")):
    with T.sblock("root"):
        T.reads(C[0:AVX2_LANES, 0:2], A[0:STEP], B[0:AVX2_LANES, 0:STEP])
        T.writes(C[0:AVX2_LANES, 0:2])
        # the (lanes, 2) int16 accumulator is one contiguous 16-lane vector
        C[0, T.ramp(0, 1, 16)] = C[0, T.ramp(0, 1, 16)] + T.call_llvm_pure_intrin(
            "int16x16", "llvm.x86.avx2.pmadd.ub.sw", _broadcast_word(A, AVX2_LANES, 32),
            B.vload([0, 0], "int8x32"))


@T.prim_func(s_tir=True)
def _pmaddwd_desc(A: T.Buffer((AVX2_LANES, 2), "int16", offset_factor=1, scope="local"),
                  C: T.Buffer((AVX2_LANES,), "int32", offset_factor=1, scope="local")):
    with T.sblock("root"):
        T.reads(C[0:AVX2_LANES], A[0:AVX2_LANES, 0:2])
        T.writes(C[0:AVX2_LANES])
        for i, h in T.grid(AVX2_LANES, 2):
            with T.sblock("update"):
                vi, vh = T.axis.remap("SR", [i, h])
                C[vi] = C[vi] + T.Cast("int32", A[vi, vh])


@T.prim_func(s_tir=True)
def _pmaddwd_impl(A: T.Buffer((AVX2_LANES, 2), "int16", offset_factor=1, scope="local"),
                  C: T.Buffer((AVX2_LANES,), "int32", offset_factor=1, scope="local")):
    with T.sblock("root"):
        T.reads(C[0:AVX2_LANES], A[0:AVX2_LANES, 0:2])
        T.writes(C[0:AVX2_LANES])
        C[T.ramp(0, 1, AVX2_LANES)] = C.vload([0], "int32x8") + T.call_llvm_pure_intrin(
            "int32x8", "llvm.x86.avx2.pmadd.wd", A[0, T.ramp(0, 1, 16)], T.broadcast(T.int16(1), 16))


VNNI256_DOT = "tternary_gemm_vnni_dot_8x4"
VNNI512_DOT = "tternary_gemm_vnni_dot_16x4"
AVX2_DOT16 = "tternary_gemm_avx2_pmaddubsw_8x4"
AVX2_WIDEN = "tternary_gemm_avx2_pmaddwd_8x2"

TensorIntrin.register(VNNI256_DOT, *_vnni(8), override=True)
TensorIntrin.register(VNNI512_DOT, *_vnni(16), override=True)
TensorIntrin.register(AVX2_DOT16, _pmaddubsw_desc, _pmaddubsw_impl, override=True)
TensorIntrin.register(AVX2_WIDEN, _pmaddwd_desc, _pmaddwd_impl, override=True)

# isa -> the intrinsic of one accumulation step
DOT = {"vnni256": VNNI256_DOT, "vnni512": VNNI512_DOT, "avx2": AVX2_DOT16}
