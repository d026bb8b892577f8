"""Hand-written program builders for the simulator tests, written from docs/isa.md.

They lay out DRAM, emit instructions with a simple, always-correct token discipline and
read results back; the tests compare those results with tvm_ternary.quant.reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tvm_ternary.quant import packing
from vta_ext import isa, layout
from vta_ext.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store
from vta_ext.program import Program


def ceil_div(a, b):
    return -(-a // b)


@dataclass
class Builder:
    """Program + DRAM bookkeeping; elements are addressed per memory type."""

    cfg: object
    prog: Program = field(default_factory=Program)

    def elem_bytes(self, mem):
        c = self.cfg
        return {MemType.UOP: 8, MemType.INP: c.inp_block_bytes, MemType.WGT: c.wgt_block_bytes,
                MemType.ACC: c.acc_block_bytes, MemType.PAR: c.par_block_bytes,
                MemType.OUT: c.out_block_bytes}[mem]

    def region(self, name, data, mem):
        r = self.prog.dram.add(name, data, align=self.elem_bytes(mem))
        return r.element(self.elem_bytes(mem))

    def output(self, name, elems, mem):
        r = self.prog.dram.alloc(name, elems * self.elem_bytes(mem), align=self.elem_bytes(mem))
        return r.element(self.elem_bytes(mem))

    def emit(self, insn):
        self.prog.insns.append(insn)
        return len(self.prog.insns) - 1

    def set_tokens(self, index, **bits):
        self.prog.insns[index] = isa.replace(self.prog.insns[index], **bits)


def _x_blocks(x, cfg):
    """[M, K] -> inp blocks [mb, nk, batch, block_in] (zero padded)."""
    m, k = x.shape
    b, bi = cfg.batch, cfg.block_in
    mb, nk = ceil_div(m, b), ceil_div(k, bi)
    xp = np.zeros((mb * b, nk * bi), dtype=np.int64)
    xp[:m, :k] = x
    return xp.reshape(mb, b, nk, bi).transpose(0, 2, 1, 3)


def _par_region(bld, nn, params):
    bo = bld.cfg.block_out
    cols = {}
    for key in ("mult_p", "mult_n", "shift", "bias", "t_lo", "t_hi"):
        v = np.zeros(nn * bo, dtype=np.int64)
        if key == "shift":
            v[:] = 1
        src = np.asarray(params.get(key, v[:0]), dtype=np.int64).reshape(-1)
        v[:src.size] = src
        cols[key] = v
    return bld.region("par", layout.pack_par(bld.cfg, **cols), MemType.PAR)


def dense_program(cfg, x, w, *, epilogue="acc", params=None, lo=-127, hi=127, dual=False,
                  skip_zero=False, tile_blocks=None, foundation_packing=False,
                  weight_loop=False):
    """A dense layer ``x [M, K] @ w[N, K].T`` tiled over output blocks.

    epilogue: "acc" stores raw accumulators (pairs with dual), "requant" / "thresh" store
    OUT activations. weight_loop: walk the tile's output blocks with the GEMM's inner loop
    (wgt_factor_in) instead of one micro-op per block. Returns (program, reader) where
    reader(result) gives the outputs.
    """
    assert not (weight_loop and skip_zero)
    b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
    m, k = x.shape
    n = w.shape[0]
    mb, nk, nn = ceil_div(m, b), ceil_div(k, bi), ceil_div(n, bo)
    pairs = 2 if dual else 1
    tile_blocks = tile_blocks or nn
    bld = Builder(cfg)
    inp_e = bld.region("inp", layout.pack_inp(_x_blocks(x, cfg).reshape(-1, b, bi), cfg), MemType.INP)
    wblocks = layout.weight_blocks(w, cfg)  # [nn, nk, bo, bi]
    if foundation_packing:
        image = layout.wgt_image_from_2bit(packing.pack(w, "2bit"), w.shape, cfg)
        wgt_e = bld.region("wgt", image.reshape(-1), MemType.WGT)
    else:
        wgt_e = bld.region("wgt", layout.pack_wgt(wblocks.reshape(-1, bo, bi), cfg), MemType.WGT)
    zero = packing.zero_block_bitmap(w, (bo, bi)) if skip_zero else np.zeros((nn, nk), bool)
    par_e = _par_region(bld, nn, params or {}) if epilogue != "acc" else None
    out_mem = MemType.ACC if epilogue == "acc" else MemType.OUT
    out_cols = nn * (pairs if epilogue == "acc" else 1)
    out_e = bld.output("out", mb * out_cols, out_mem)

    tiles = [(n0, min(n0 + tile_blocks, nn)) for n0 in range(0, nn, tile_blocks)]
    slots_of = [[(nb, kb) for nb in range(n0, n1) for kb in range(nk) if not zero[nb, kb]]
                for n0, n1 in tiles]
    # PAR runs in the load module (ISA v1.4): a tile with an epilogue always loads something
    loaded = [t == 0 or bool(slots_of[t]) or epilogue != "acc" for t in range(len(tiles))]
    uop_words = []
    for t, (n0, n1) in enumerate(tiles):
        tn = n1 - n0
        slots = slots_of[t]
        acc_of = lambda i, nb: (i * tn + nb - n0) * pairs  # noqa: E731  (pair/block of row i)
        out_base = mb * tn * pairs if dual else 0
        out_of = lambda i, nb: out_base + i * tn + nb - n0  # noqa: E731
        # ---- load module
        load_ids = []
        if t == 0:
            load_ids.append(bld.emit(Load(mem=MemType.INP, sram_base=0, dram_base=inp_e,
                                          y_size=mb, x_size=nk, x_stride=nk)))
        if skip_zero:
            for j, (nb, kb) in enumerate(slots):
                load_ids.append(bld.emit(Load(mem=MemType.WGT, sram_base=j,
                                              dram_base=wgt_e + nb * nk + kb, y_size=1, x_size=1,
                                              x_stride=1)))
        else:
            load_ids.append(bld.emit(Load(mem=MemType.WGT, sram_base=0, dram_base=wgt_e + n0 * nk,
                                          y_size=tn, x_size=nk, x_stride=nk)))
        if epilogue != "acc":  # its c2l pop waits for the previous tile's ALU (below)
            load_ids.append(bld.emit(Load(mem=MemType.PAR, sram_base=0, dram_base=par_e + n0,
                                          y_size=1, x_size=tn, x_stride=tn)))
        if loaded[t]:
            if any(loaded[:t]):
                bld.set_tokens(load_ids[0], pop_next=True)
            bld.set_tokens(load_ids[-1], push_next=True)
        # ---- compute module: uops for reset, gemm, alu
        reset = isa.encode_uops([acc_of(0, nb) for nb in range(n0, n1)], 0, 0)
        if weight_loop:  # uops for the tile's first output block; the inner loop walks blocks
            gemm = isa.encode_uops([acc_of(0, n0)] * nk, list(range(nk)), list(range(nk)))
        else:
            gemm = isa.encode_uops([acc_of(0, nb) for nb, _ in slots], [kb for _, kb in slots],
                                   list(range(len(slots)))) if slots else np.zeros(0, np.uint64)
        alu = isa.encode_uops([out_of(0, nb) for nb in range(n0, n1)],
                              [acc_of(0, nb) for nb in range(n0, n1)], list(range(tn)))
        words = np.concatenate([reset, gemm, alu])
        bld.emit(Load(mem=MemType.UOP, sram_base=0, dram_base=len(uop_words), y_size=1,
                      x_size=words.size, x_stride=words.size))  # dram_base patched below
        uop_words.append(words)
        r_end, g_end = reset.size, reset.size + gemm.size
        first = bld.emit(Gemm(uop_bgn=0, uop_end=r_end, iter_out=mb, dst_factor_out=tn * pairs,
                              reset=True, dual=dual, pop_next=t > 0))
        last = first
        if slots:
            inner = dict(iter_in=tn, dst_factor_in=pairs, wgt_factor_in=nk) if weight_loop else {}
            last = bld.emit(Gemm(uop_bgn=r_end, uop_end=g_end, iter_out=mb,
                                 dst_factor_out=tn * pairs, src_factor_out=nk, dual=dual, **inner))
        if loaded[t]:
            bld.set_tokens(last if slots else first, pop_prev=True)
            if any(loaded[t + 1:]) and epilogue == "acc":
                bld.set_tokens(last, push_prev=True)
        if epilogue != "acc":
            op = AluOp.REQUANT if epilogue == "requant" else AluOp.THRESH
            last = bld.emit(Alu(op=op, uop_bgn=g_end, uop_end=words.size, iter_out=mb,
                                dst_factor_out=tn if dual else tn * pairs,
                                src_factor_out=tn * pairs, dual=dual,
                                use_imm=op == AluOp.REQUANT,
                                imm=isa.alu_clamp_imm(lo, hi) if op == AluOp.REQUANT else 0,
                                push_prev=t + 1 < len(tiles)))
        bld.set_tokens(last, push_next=True)
        # ---- store module
        if epilogue == "acc":
            bld.emit(Store(mem=MemType.ACC, sram_base=0, dram_base=out_e + n0 * pairs, y_size=mb,
                           x_size=tn * pairs, x_stride=out_cols, pop_prev=True, push_prev=True))
        else:
            bld.emit(Store(mem=MemType.OUT, sram_base=out_base, dram_base=out_e + n0, y_size=mb,
                           x_size=tn, x_stride=out_cols, pop_prev=True, push_prev=True))
    bld.emit(Finish(pop_next=True))
    _place_uops(bld, uop_words)

    def reader(result):
        raw = result.dram.read("out")
        if epilogue == "acc":
            acc = layout.unpack_acc(raw, cfg).reshape(mb, nn, pairs, b, bo)
            acc = acc.transpose(2, 0, 3, 1, 4).reshape(pairs, mb * b, nn * bo)[:, :m, :n]
            return (acc[0], acc[1]) if dual else acc[0]
        out = layout.unpack_out(raw, cfg).reshape(mb, nn, b, bo)
        return out.transpose(0, 2, 1, 3).reshape(mb * b, nn * bo)[:m, :n]

    return bld.prog, reader


def _place_uops(bld, uop_words):
    """Put every tile's micro-ops in one DRAM region and point the LOAD UOPs at them."""
    base = bld.region("uop", np.concatenate(uop_words).view(np.uint8), MemType.UOP)
    offsets = np.concatenate([[0], np.cumsum([w.size for w in uop_words])])
    tile = 0
    for i, insn in enumerate(bld.prog.insns):
        if isinstance(insn, Load) and insn.mem == MemType.UOP:
            bld.prog.insns[i] = isa.replace(insn, dram_base=base + int(offsets[tile]))
            tile += 1


def conv_program(cfg, x, w, *, stride=1, padding=0, pad_value=0, dual=False):
    """One image ``x [C, H, W]`` convolved with ``w [O, C, kh, kw]``; raw accumulators out.

    Input DRAM layout [C/bi][H][W] blocks; each channel block is one padded 2-D LOAD.
    """
    b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
    assert b == 1
    c, h, wd = x.shape
    o, _, kh, kw = w.shape
    nc, no = ceil_div(c, bi), ceil_div(o, bo)
    hp, wp = h + 2 * padding, wd + 2 * padding
    oh, ow = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    pairs = 2 if dual else 1
    bld = Builder(cfg)
    xb = np.zeros((nc * bi, h, wd), dtype=np.int64)
    xb[:c] = x
    # padding channels beyond C are real zeros, never pad_value: the weights there are 0
    blocks = xb.reshape(nc, bi, h, wd).transpose(0, 2, 3, 1).reshape(-1, 1, bi)
    inp_e = bld.region("inp", layout.pack_inp(blocks, cfg), MemType.INP)
    wpad = np.zeros((no * bo, nc * bi, kh, kw), dtype=np.int8)
    wpad[:o, :c] = w
    wblk = wpad.reshape(no, bo, nc, bi, kh, kw).transpose(0, 2, 4, 5, 1, 3)  # [no,nc,kh,kw,bo,bi]
    wgt_e = bld.region("wgt", layout.pack_wgt(wblk.reshape(-1, bo, bi), cfg), MemType.WGT)
    out_e = bld.output("out", no * oh * ow * pairs, MemType.ACC)

    loads = [bld.emit(Load(mem=MemType.INP, sram_base=cb * hp * wp, dram_base=inp_e + cb * h * wd,
                           y_size=h, x_size=wd, x_stride=wd, y_pad_0=padding, y_pad_1=padding,
                           x_pad_0=padding, x_pad_1=padding, pad_value=pad_value))
             for cb in range(nc)]
    nw = no * nc * kh * kw
    loads.append(bld.emit(Load(mem=MemType.WGT, sram_base=0, dram_base=wgt_e, y_size=1, x_size=nw,
                               x_stride=nw, push_next=True)))
    reset = isa.encode_uops([ob * oh * ow * pairs for ob in range(no)], 0, 0)
    dst, src, wgt = [], [], []
    for ob in range(no):
        for cb in range(nc):
            for i in range(kh):
                for j in range(kw):
                    dst.append(ob * oh * ow * pairs)
                    src.append(cb * hp * wp + i * wp + j)
                    wgt.append(((ob * nc + cb) * kh + i) * kw + j)
    gemm = isa.encode_uops(dst, src, wgt)
    words = np.concatenate([reset, gemm])
    bld.emit(Load(mem=MemType.UOP, sram_base=0, dram_base=0, y_size=1, x_size=words.size,
                  x_stride=words.size))
    loops = dict(iter_out=oh, iter_in=ow, dst_factor_out=ow * pairs, dst_factor_in=pairs)
    bld.emit(Gemm(uop_bgn=0, uop_end=reset.size, reset=True, dual=dual, **loops))
    bld.emit(Gemm(uop_bgn=reset.size, uop_end=words.size, dual=dual, src_factor_out=wp * stride,
                  src_factor_in=stride, pop_prev=True, push_next=True, **loops))
    bld.emit(Store(mem=MemType.ACC, sram_base=0, dram_base=out_e, y_size=1,
                   x_size=no * oh * ow * pairs, x_stride=no * oh * ow * pairs, pop_prev=True,
                   push_prev=True))
    bld.emit(Finish(pop_next=True))
    _place_uops(bld, [words])

    def reader(result):
        acc = layout.unpack_acc(result.dram.read("out"), cfg).reshape(no, oh, ow, pairs, bo)
        acc = acc.transpose(3, 0, 4, 1, 2).reshape(pairs, no * bo, oh, ow)[:, :o]
        return (acc[0], acc[1]) if dual else acc[0]

    return bld.prog, reader
