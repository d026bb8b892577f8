"""Tensor intrinsics for ternary x int8 dot products: 2-bit decode + an x86 int8 dot.

Shared by the CPU kernels (H4 GEMV; H5 GEMM / conv and H6 sparse / popcount may import
it): ``dot_intrin(isa, dual, groups)`` and ``lane_sum_intrin(isa)`` return the name
of a ``tvm.s_tir.TensorIntrin`` registered on first use (desc + impl), to pass to
``sch.tensorize``.

Semantics (the desc, which the compute definition of a kernel must spell the same way,
see ``code_of`` / ``plus_code_of``): one output row's ``lanes`` int32 partial sums ``C``
over ``groups`` weight groups. A group is ``isa.lanes`` bytes ``W`` holding four 2-bit
fields; field ``j`` of byte ``i`` is the code ``u = w + 1`` of activation ``X[j * lanes_b
+ i]`` (``cpu/layout.py``), and int32 lane ``l`` sums bytes ``4 l .. 4 l + 3`` of every
field: ``C[l] += sum_{g, j, q} u(W[g, 4 l + q], j) * X[g * 4 lanes_b + j * lanes_b + 4 l + q]``.
``sum u x - sum x`` is then the ternary dot product. The dual form adds a second row
``C[1, l]`` over the one-bit codes ``u >> 1`` (``acc_p = sum x[w = +1]``).

Impl: AVX2 ``pmaddubsw`` (codes on the unsigned side, activations on the signed side,
pair sums in int16: at most ``4 * groups`` of them per lane, |sum| <= 508 each, so up to
16 groups fit int16 exactly) then one ``pmaddwd`` by 1 into int32; AVX-512 VNNI
``vpdpbusd`` straight into int32. The impl body is ONE nested expression per output:
naming vector temporaries makes TVM allocate workspaces (DESIGN.md measured 6x slower).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from tvm_ternary.errors import KernelConfigError

from .vector import plus_codes, trit_codes


@dataclass(frozen=True)
class Isa:
    """One x86 int8 dot-product flavour: ``lanes`` bytes per weight vector."""

    name: str
    lanes: int             # bytes per weight vector (one register)
    max_groups: int        # groups one intrinsic call may sum (int16 headroom on AVX2)

    @property
    def acc_lanes(self) -> int:
        """int32 lanes of one accumulator register."""
        return self.lanes // 4

    @property
    def group(self) -> int:
        """Trits (activations) per weight group: 4 fields of ``lanes`` bytes."""
        return 4 * self.lanes


# A pmaddubsw pair sum is at most 2 * 2 * 127 = 508 in magnitude; 64 of them (16 groups x 4
# fields) reach 32512 < 2**15, the worst case -128 * 2 * 2 * 64 = -32768 exactly fits.
AVX2 = Isa("avx2", 32, 16)
VNNI = Isa("avx512_vnni", 64, 1 << 16)


def code_of(w_byte, j):
    """The 2-bit code ``u = w + 1`` of field ``j`` of a weight byte (shift + mask)."""
    return T.bitwise_and(T.shift_right(w_byte, T.Cast("uint8", 2 * j)), T.uint8(3))


def plus_code_of(w_byte, j):
    """The one-bit code ``u >> 1`` (1 where ``w = +1``) of field ``j`` of a weight byte."""
    return T.shift_right(code_of(w_byte, j), T.uint8(1))


def trit_term(w_byte, x_val, j, which=None):
    """One product of the dot desc, in int32: the code (``which`` None or 0) or the one-bit
    code (``which`` 1; a Var on the dual desc's s axis) of field ``j`` of ``w_byte``, times
    ``x_val``. Kernels spell their compute definition with this, so tensorize matches."""
    code = code_of(w_byte, j)
    if which is not None:
        code = T.if_then_else(which == 0, code, plus_code_of(w_byte, j))
    return T.Cast("int32", code) * T.Cast("int32", x_val)


def _term(W, X, isa: Isa, g, l, j, q, which):
    return trit_term(W[g, 0, 4 * l + q], X[g * isa.group + j * isa.lanes + 4 * l + q], j,
                     None if which is False else which)


def _dot_desc(isa: Isa, dual: bool, groups: int):
    """The desc has no extent-1 loop (tensorize cannot match one): the group loop exists
    only for ``groups > 1``, the s axis (ternary / one-bit codes) only when ``dual``."""
    lw, lb, gt = isa.acc_lanes, isa.lanes, isa.group
    c_shape = (2, lw) if dual else (lw,)

    @T.prim_func(s_tir=True)
    def desc(w: T.handle, x: T.handle, c: T.handle):
        W = T.match_buffer(w, (groups, 1, lb), "uint8", offset_factor=1, strides=[T.int32(), T.int32(), 1])
        X = T.match_buffer(x, (groups * gt,), "int8", offset_factor=1)
        C = T.match_buffer(c, c_shape, "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:2, 0:lw] if dual else C[0:lw], W[0:groups, 0, 0:lb], X[0:groups * gt])
            T.writes(C[0:2, 0:lw] if dual else C[0:lw])
            if dual and groups > 1:
                for g, s, l, j, q in T.grid(groups, 2, lw, 4, 4):
                    with T.sblock("update"):
                        vs, vl, vg, vj, vq = T.axis.remap("SSRRR", [s, l, g, j, q])
                        C[vs, vl] = C[vs, vl] + _term(W, X, isa, vg, vl, vj, vq, vs)
            elif dual:
                for s, l, j, q in T.grid(2, lw, 4, 4):
                    with T.sblock("update"):
                        vs, vl, vj, vq = T.axis.remap("SSRR", [s, l, j, q])
                        C[vs, vl] = C[vs, vl] + _term(W, X, isa, 0, vl, vj, vq, vs)
            elif groups > 1:
                for g, l, j, q in T.grid(groups, lw, 4, 4):
                    with T.sblock("update"):
                        vl, vg, vj, vq = T.axis.remap("SRRR", [l, g, j, q])
                        C[vl] = C[vl] + _term(W, X, isa, vg, vl, vj, vq, False)
            else:
                for l, j, q in T.grid(lw, 4, 4):
                    with T.sblock("update"):
                        vl, vj, vq = T.axis.remap("SRR", [l, j, q])
                        C[vl] = C[vl] + _term(W, X, isa, 0, vl, vj, vq, False)

    return desc


def _products(isa: Isa, W, X, groups: int, plus: bool):
    """The ``(codes, activations)`` vector pairs of every field of ``groups`` groups."""
    lb, gt = isa.lanes, isa.group
    codes = plus_codes if plus else trit_codes
    return [(codes(W[g, 0, T.ramp(0, 1, lb)], j, lb), X[T.ramp(g * gt + j * lb, 1, lb)])
            for g in range(groups) for j in range(4)]


def _dot_expr(isa: Isa, acc, pairs):
    """``acc`` plus the dot products of ``pairs``, one nested expression."""
    if isa is VNNI:
        return reduce(lambda a, p: T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512", a, *p),
                      pairs, acc)
    pair_sums = [T.call_llvm_pure_intrin("int16x16", "llvm.x86.avx2.pmadd.ub.sw", *p) for p in pairs]
    return acc + T.call_llvm_pure_intrin("int32x8", "llvm.x86.avx2.pmadd.wd", reduce(lambda a, b: a + b, pair_sums),
                                         T.broadcast(T.int16(1), 16))


def prefetch_ahead(W, g, distance: int):
    """Prefetch (into all cache levels) the line ``distance`` bytes past group ``g``'s
    weight vector: the row block streams its weights in order, and at 4 KiB ahead the
    kernel read 4 MiB in 0.160 instead of 0.182 ms (min; median 0.17-0.18 vs 0.23), 92 % of
    a plain 2-thread read of the same bytes. A prefetch past the buffer's end is harmless."""
    return T.call_llvm_intrin("void", "llvm.prefetch.p0", T.address_of(W[g, 0, distance]),
                              T.int32(0), T.int32(3), T.int32(1))


def _dot_impl(isa: Isa, dual: bool, groups: int, prefetch: int = 0):
    lw, lb, gt = isa.acc_lanes, isa.lanes, isa.group
    c_shape = (2, lw) if dual else (lw,)

    @T.prim_func(s_tir=True)
    def impl(w: T.handle, x: T.handle, c: T.handle):
        W = T.match_buffer(w, (groups, 1, lb), "uint8", offset_factor=1, strides=[T.int32(), T.int32(), 1])
        X = T.match_buffer(x, (groups * gt,), "int8", offset_factor=1)
        C = T.match_buffer(c, c_shape, "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:2, 0:lw] if dual else C[0:lw], W[0:groups, 0, 0:lb], X[0:groups * gt])
            T.writes(C[0:2, 0:lw] if dual else C[0:lw])
            if prefetch > 0:  # Python ints and bools: resolved when the script is parsed
                for g in T.unroll(groups):
                    T.evaluate(prefetch_ahead(W, g, prefetch))
            if dual:
                C[0, T.ramp(0, 1, lw)] = _dot_expr(isa, C[0, T.ramp(0, 1, lw)], _products(isa, W, X, groups, False))
                C[1, T.ramp(0, 1, lw)] = _dot_expr(isa, C[1, T.ramp(0, 1, lw)], _products(isa, W, X, groups, True))
            else:
                C[T.ramp(0, 1, lw)] = _dot_expr(isa, C[T.ramp(0, 1, lw)], _products(isa, W, X, groups, False))

    return impl


def _lane_sum_desc(isa: Isa):
    lw = isa.acc_lanes

    @T.prim_func(s_tir=True)
    def desc(c: T.handle, o: T.handle):
        C = T.match_buffer(c, (lw,), "int32", offset_factor=1)
        O = T.match_buffer(o, (1,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(O[0], C[0:lw])
            T.writes(O[0])
            for l in T.serial(lw):
                with T.sblock("update"):
                    vl = T.axis.remap("R", [l])
                    O[0] = O[0] + C[vl]

    return desc


def _lane_sum_impl(isa: Isa):
    lw = isa.acc_lanes

    @T.prim_func(s_tir=True)
    def impl(c: T.handle, o: T.handle):
        C = T.match_buffer(c, (lw,), "int32", offset_factor=1)
        O = T.match_buffer(o, (1,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(O[0], C[0:lw])
            T.writes(O[0])
            # in registers (a shuffle + add tree): lane by lane from memory cost ~20 us per
            # 4096 rows, 13 % of the 4096 x 4096 GEMV
            O[0] = O[0] + T.call_llvm_pure_intrin("int32", "llvm.vector.reduce.add", C[T.ramp(0, 1, lw)])

    return impl


_REGISTERED: set[str] = set()


def register_once(name: str, desc, impl) -> str:
    """Register a tensor intrinsic the first time its name is asked for; returns the name."""
    if name not in _REGISTERED:
        TensorIntrin.register(name, desc, impl, override=True)
        _REGISTERED.add(name)
    return name


def dot_intrin(isa: Isa, dual: bool, groups: int, prefetch: int = 0) -> str:
    """The registered intrinsic summing ``groups`` weight groups of one row (see module doc);
    ``prefetch``: bytes ahead of each weight vector to prefetch (0: none)."""
    if not 1 <= groups <= isa.max_groups:
        raise KernelConfigError(f"{isa.name} dot intrinsic: groups per call must be in [1, {isa.max_groups}] "
                                f"(int16 headroom), got {groups!r}")
    name = f"tternary_{isa.name}_{'dual_' if dual else ''}trit_dot_g{groups}" + (f"_pf{prefetch}" if prefetch else "")
    return register_once(name, _dot_desc(isa, dual, groups), _dot_impl(isa, dual, groups, prefetch))


def lane_sum_intrin(isa: Isa) -> str:
    """The registered intrinsic adding one accumulator register's lanes into a scalar."""
    return register_once(f"tternary_{isa.name}_lane_sum", _lane_sum_desc(isa), _lane_sum_impl(isa))
