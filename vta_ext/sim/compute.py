"""GEMM and ALU: the compute module's loop nests, executed as numpy array operations over
all micro-op executions of an instruction at once (docs/isa.md, "Semantics")."""

from __future__ import annotations

import numpy as np

from ..isa import (RESIDUAL_MULT_MAX, RESIDUAL_MULT_PAR_FIELD, AluOp, MemType,
                   alu_clamp_bounds)
from .state import InsnStats, Machine, Trap

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
SHIFT_MIN, SHIFT_MAX = 1, 46
BIAS_LIMIT = 2**62
GEMM_CHUNK = 4096  # micro-op executions per numpy batch: bounds the gathered weight copy
# A simulator limit, not an ISA one: the index arrays of one instruction stay below ~400 MB.
# (A ResNet-18 layer compiles to GEMMs of at most a few 10**5 executions.)
MAX_EXECS = 2**24


def _loop_indices(m: Machine, insn, what: str):
    """Flattened (dst, src, wgt) of every micro-op execution, in loop order; the uop's wgt
    field gets the wgt factors only for GEMM (ALU's par index has no factors)."""
    if insn.iter_out < 1 or insn.iter_in < 1:
        raise Trap(f"{what} has an empty loop (iter_out={insn.iter_out}, iter_in={insn.iter_in})")
    if not insn.uop_bgn < insn.uop_end <= m.cfg.uop_depth:
        raise Trap(f"{what} uop range [{insn.uop_bgn}, {insn.uop_end}) is empty or beyond the "
                   f"uop buffer (depth {m.cfg.uop_depth})")
    execs = insn.iter_out * insn.iter_in * (insn.uop_end - insn.uop_bgn)
    if execs > MAX_EXECS:
        raise Trap(f"{what} has {execs} micro-op executions, beyond the functional simulator's "
                   f"limit of {MAX_EXECS} per instruction (split the loop)")
    rng = np.arange(insn.uop_bgn, insn.uop_end)
    m.require_written(MemType.UOP, rng, what)
    uops = m.uop[insn.uop_bgn:insn.uop_end]
    i0 = np.arange(insn.iter_out, dtype=np.int64)[:, None, None]
    i1 = np.arange(insn.iter_in, dtype=np.int64)[None, :, None]
    shape = (insn.iter_out, insn.iter_in, len(uops))
    dst = np.broadcast_to(uops[:, 0] + i0 * insn.dst_factor_out + i1 * insn.dst_factor_in, shape)
    src = np.broadcast_to(uops[:, 1] + i0 * insn.src_factor_out + i1 * insn.src_factor_in, shape)
    wgt_out = getattr(insn, "wgt_factor_out", 0)
    wgt_in = getattr(insn, "wgt_factor_in", 0)
    wgt = np.broadcast_to(uops[:, 2] + i0 * wgt_out + i1 * wgt_in, shape)
    return dst.reshape(-1), src.reshape(-1), wgt.reshape(-1)


def _first_flags(m: Machine, insn) -> np.ndarray:
    """The ``first`` bit of every micro-op execution, in loop order."""
    first = m.uop_first[insn.uop_bgn:insn.uop_end]
    return np.broadcast_to(first, (insn.iter_out, insn.iter_in, first.size)).reshape(-1)


def _initialize_first(m: Machine, dst: np.ndarray, first: np.ndarray, dual: bool) -> None:
    """Zero the accumulators that ``first`` micro-op executions write, so adding every
    product afterwards gives acc[dst] = product for them. Exact only if no earlier
    execution of the same instruction touched that accumulator: anything else traps."""
    if not first.any():
        return
    offsets = (0, 1) if dual else (0,)
    touched = np.stack([dst + off for off in offsets], axis=1)  # [executions, pair]
    _, earliest = np.unique(touched.reshape(-1), return_index=True)
    lead = np.zeros(touched.size, dtype=bool)
    lead[earliest] = True
    late = first & ~lead.reshape(touched.shape).all(axis=1)
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise Trap(f"GEMM micro-op execution {i} has first set but acc[{int(dst[i])}] was "
                   f"already updated by an earlier execution of the same instruction")
    targets = dst[first]
    for off in offsets:
        m.mark_written(MemType.ACC, targets + off, "GEMM first")
        m.acc[targets + off] = 0


def _check_int32(m: Machine, idx: np.ndarray, what: str) -> None:
    vals = m.acc[idx]
    bad = (vals < INT32_MIN) | (vals > INT32_MAX)
    if bad.any():
        e = int(idx[np.argwhere(bad)[0][0]])
        raise Trap(f"{what}: acc[{e}] left the int32 range (accumulators never wrap)")


def gemm(m: Machine, insn, stats: InsnStats) -> None:
    what = "GEMM"
    if insn.dual and not m.cfg.dual_scale:
        raise Trap(f"GEMM dual needs a HwConfig with dual_scale (config {m.cfg.name!r} has none)")
    dst, src, wgt = _loop_indices(m, insn, what)
    m.require_in_range(MemType.ACC, dst + 1 if insn.dual else dst, "GEMM dst (acc)")
    stats.uop_execs = dst.size
    first = _first_flags(m, insn)
    if insn.reset and first.any():
        raise Trap("GEMM reset takes micro-ops without the first bit")
    if insn.reset:
        m.mark_written(MemType.ACC, dst, what)
        m.acc[dst] = 0
        if insn.dual:
            m.mark_written(MemType.ACC, dst + 1, what)
            m.acc[dst + 1] = 0
        return
    m.require_in_range(MemType.INP, src, "GEMM src (inp)")
    m.require_in_range(MemType.WGT, wgt, "GEMM wgt")
    _initialize_first(m, dst, first, insn.dual)
    for mem, idx, name in ((MemType.ACC, dst, "GEMM dst"), (MemType.INP, src, "GEMM src"),
                           (MemType.WGT, wgt, "GEMM wgt")):
        m.require_written(mem, idx, name)
    if insn.dual:
        m.require_written(MemType.ACC, dst + 1, "GEMM dst+1")
    m.mark_written(MemType.ACC, dst, what)
    if insn.dual:
        m.mark_written(MemType.ACC, dst + 1, what)
    cfg = m.cfg
    dtype = _exact_float(cfg)
    signs = (1, -1) if insn.dual else (None,)
    if insn.wgt_factor_out == 0 and insn.wgt_factor_in == 0:
        _gemm_by_uop(m, insn, dst, src, wgt, signs, dtype)
    else:
        _gemm_general(m, dst, src, wgt, signs, dtype)
    touched = np.unique(dst)
    _check_int32(m, touched, what)
    if insn.dual:
        _check_int32(m, touched + 1, what)
    stats.macs = dst.size * cfg.macs_per_cycle * (2 if insn.dual else 1)


def _exact_float(cfg) -> type:
    """float32 when every partial sum is an integer below 2**24 (then BLAS is exact), else
    float64 (exact below 2**53): |x| <= 128 and |w| <= 128 (1 for ternary weights)."""
    w_max = 1 if cfg.wgt_bits == 2 else 128
    return np.float32 if cfg.block_in * 128 * w_max <= 2**24 else np.float64


def _weights(m: Machine, idx: np.ndarray, sign, dtype) -> np.ndarray:
    w = m.wgt[idx]
    return (w if sign is None else (w == sign)).astype(dtype)


def _gemm_general(m: Machine, dst, src, wgt, signs, dtype) -> None:
    """Any loop nest: gather (inp, wgt) per micro-op execution, batched matmul, scatter-add."""
    for lo in range(0, dst.size, GEMM_CHUNK):
        part = slice(lo, lo + GEMM_CHUNK)
        x = m.inp[src[part]].astype(dtype)
        for off, sign in enumerate(signs):
            prod = np.matmul(x, _weights(m, wgt[part], sign, dtype).transpose(0, 2, 1))
            np.add.at(m.acc, dst[part] + off, prod.astype(np.int64))


def _gemm_by_uop(m: Machine, insn, dst, src, wgt, signs, dtype) -> None:
    """The usual case (weights fixed per micro-op across the loop): one matmul per micro-op
    over all iterations, then micro-ops that share a destination are summed before the
    scatter-add. Same result as the general path, far fewer numpy calls."""
    n_uops = insn.uop_end - insn.uop_bgn
    iters = dst.size // n_uops
    dst, src = dst.reshape(iters, n_uops), src.reshape(iters, n_uops)
    wgt0 = wgt[:n_uops]
    step = max(1, GEMM_CHUNK * 4 // iters)
    for lo in range(0, n_uops, step):
        u = slice(lo, lo + step)
        order = np.argsort(dst[0, u], kind="stable")
        d0 = dst[0, u][order]
        starts = np.flatnonzero(np.r_[True, d0[1:] != d0[:-1]])
        x = m.inp[src[:, u][:, order]]  # [iters, U, batch, bi]
        x = x.transpose(1, 0, 2, 3).reshape(len(order), -1, x.shape[-1]).astype(dtype)
        groups = dst[:, u][:, order][:, starts].T.reshape(-1)  # [G * iters]
        for off, sign in enumerate(signs):
            w = _weights(m, wgt0[u][order], sign, dtype)
            prod = np.matmul(x, w.transpose(0, 2, 1)).astype(np.int64)  # [U, iters*batch, bo]
            summed = np.add.reduceat(prod, starts, axis=0)  # [G, iters*batch, bo]
            np.add.at(m.acc, groups + off, summed.reshape(-1, *m.acc.shape[1:]))


def _check_hazards(dst: np.ndarray, reads: list[np.ndarray], depth: int, what: str) -> None:
    """No destination twice, and no micro-op reads an entry another micro-op writes."""
    uniq, counts = np.unique(dst, return_counts=True)
    if (counts > 1).any():
        raise Trap(f"{what} writes acc[{int(uniq[counts > 1][0])}] more than once")
    owner = np.full(depth + 1, -1, dtype=np.int64)
    owner[dst] = np.arange(dst.size)
    k = np.arange(dst.size)
    for r in reads:
        w = owner[np.minimum(r, depth)]
        clash = (w >= 0) & (w != k)
        if clash.any():
            i = int(np.flatnonzero(clash)[0])
            raise Trap(f"{what} hazard: micro-op execution {i} reads acc[{int(r[i])}], which "
                       f"execution {int(w[i])} of the same instruction writes")


def _scaled_acc(m: Machine, insn, a: np.ndarray, src: np.ndarray, par: np.ndarray, what: str):
    """z = Mp*acc[src] - Mn*acc[src+1] + bias (dual) or Mp*acc[src] + bias, int64."""
    rec = m.par[par]  # [n, block_out]
    bias = rec["bias"].astype(np.int64)
    if (np.abs(bias) > BIAS_LIMIT).any():
        raise Trap(f"{what}: a par bias exceeds +-2**62 (int64 headroom)")
    z = rec["mult_p"].astype(np.int64)[:, None, :] * a + bias[:, None, :]
    if insn.dual:
        z -= rec["mult_n"].astype(np.int64)[:, None, :] * m.acc[src + 1]
    return z, rec


def alu(m: Machine, insn, stats: InsnStats) -> None:
    op = insn.op
    what = f"ALU {op.name}"
    cfg = m.cfg
    epilogue = op in (AluOp.REQUANT, AluOp.THRESH)
    if insn.dual and not epilogue:
        raise Trap(f"{what}: dual applies to REQUANT and THRESH only")
    if insn.overlap and not epilogue:
        raise Trap(f"{what}: overlap applies to REQUANT and THRESH only")
    if insn.residual and op != AluOp.REQUANT:
        raise Trap(f"{what}: residual applies to REQUANT only")
    if insn.dual and not cfg.dual_scale:
        raise Trap(f"{what} dual needs a HwConfig with dual_scale (config {cfg.name!r} has none)")
    if op == AluOp.THRESH and not cfg.ternary_act:
        raise Trap(f"ALU THRESH needs a HwConfig with ternary_act (config {cfg.name!r} has none)")
    if op == AluOp.REQUANT and not insn.use_imm:
        raise Trap("ALU REQUANT takes its clamp bounds from imm: use_imm must be 1")
    if op == AluOp.THRESH and insn.use_imm:
        raise Trap("ALU THRESH takes no immediate: use_imm must be 0")
    if op == AluOp.SHR and not (insn.use_imm and 0 <= insn.imm <= 31):
        raise Trap(f"ALU SHR needs use_imm = 1 and 0 <= imm <= 31, got use_imm={int(insn.use_imm)} "
                   f"imm={insn.imm}")
    dst, src, par = _loop_indices(m, insn, what)
    if m.uop_first[insn.uop_bgn:insn.uop_end].any():
        raise Trap(f"{what}: micro-op first bit is a GEMM bit and must be 0 for ALU")
    reads_src = epilogue or not insn.use_imm
    m.require_in_range(MemType.ACC, dst, f"{what} dst (acc)")
    if reads_src:
        m.require_in_range(MemType.ACC, src + 1 if insn.dual else src, f"{what} src (acc)")
    # REQUANT/THRESH read src (and src+1) and write dst; MOV reads src; the rest read dst too
    reads = [] if (epilogue and not insn.residual) or op == AluOp.MOV else [dst]
    if reads_src:
        reads.append(src)
    if insn.dual:
        reads.append(src + 1)
    if epilogue:
        m.require_in_range(MemType.PAR, par, f"{what} par")
        m.require_written(MemType.PAR, par, f"{what} par")
    for r in reads:
        m.require_written(MemType.ACC, r, what)
    _check_hazards(dst, reads, cfg.acc_depth, what)

    a = m.acc[src] if epilogue else m.acc[dst]
    b = m.acc[src] if reads_src else np.int64(insn.imm)
    if op == AluOp.MIN:
        out = np.minimum(a, b)
    elif op == AluOp.MAX:
        out = np.maximum(a, b)
    elif op == AluOp.ADD:
        out = a + b
    elif op == AluOp.MUL:
        out = a * b  # |a|, |b| < 2**31: exact in int64
    elif op == AluOp.MOV:
        out = np.broadcast_to(b, a.shape).copy()
    elif op == AluOp.SHR:
        out = a >> np.int64(insn.imm)
    elif op == AluOp.REQUANT:
        out = _requantize(m, insn, a, src, par, what, dst)
    else:
        z, rec = _scaled_acc(m, insn, a, src, par, what)
        out = (z > rec["t_hi"][:, None, :]).astype(np.int64) - (z < rec["t_lo"][:, None, :])
    bad = (out < INT32_MIN) | (out > INT32_MAX)
    if bad.any():
        e = int(dst[np.argwhere(bad)[0][0]])
        raise Trap(f"{what}: result for acc[{e}] leaves the int32 range")
    m.mark_written(MemType.ACC, dst, what)
    m.acc[dst] = out
    stats.uop_execs = dst.size
    stats.alu_elems = out.size


def _residual_term(m: Machine, rec, dst: np.ndarray, what: str) -> np.ndarray:
    """``Mr * r`` (v1.6): Mr per channel from the PAR record, r the int8 residual a LOAD OUT
    widened into acc[d]."""
    mult = rec[RESIDUAL_MULT_PAR_FIELD].astype(np.int64)
    if ((mult < 0) | (mult > RESIDUAL_MULT_MAX)).any():
        bad = int(mult[(mult < 0) | (mult > RESIDUAL_MULT_MAX)][0])
        raise Trap(f"{what}: par residual multiplier {bad} is outside [0, {RESIDUAL_MULT_MAX}]")
    r = m.acc[dst]
    bad = (r < -128) | (r > 127)
    if bad.any():
        e = int(dst[np.argwhere(bad)[0][0]])
        raise Trap(f"{what}: residual acc[{e}] is not an int8 value (load it with LOAD OUT)")
    return mult[:, None, :] * r


def _requantize(m: Machine, insn, a, src, par, what, dst):
    lo, hi = alu_clamp_bounds(insn.imm)
    if lo > hi:
        raise Trap(f"{what}: clamp bounds lo={lo} > hi={hi}")
    z, rec = _scaled_acc(m, insn, a, src, par, what)
    if insn.residual:
        z = z + _residual_term(m, rec, dst, what)
    shift = rec["shift"].astype(np.int64)[:, None, :]
    if ((shift < SHIFT_MIN) | (shift > SHIFT_MAX)).any():
        bad = int(rec["shift"][((rec["shift"] < SHIFT_MIN) | (rec["shift"] > SHIFT_MAX))][0])
        raise Trap(f"{what}: par shift {bad} is outside [{SHIFT_MIN}, {SHIFT_MAX}]")
    half = np.left_shift(np.int64(1), shift - 1)
    rounded = np.sign(z) * ((np.abs(z) + half) >> shift)
    return np.clip(rounded, lo, hi)
