"""The accelerator's intrinsics for a scheduled layer (docs/vta_lowering.md): the names the
TIR walker (``tir_walk``) maps onto instructions, and the tensor intrinsics for
``tvm.s_tir.Schedule.tensorize``. Symbols and the scopes of the on-chip buffers are
defined here only.

Tensorized (one block: ``batch`` lanes x ``block_in`` / ``block_out`` elements; the
implementation is one ``T.call_extern`` whose symbol names the instruction kind):

- ``GEMM``: ``C[b, o] += A[b, c] * W[o, c]`` into the accumulator buffer;
- ``ALU``: the epilogue of one accumulator block with its parameter block (and residual
  block): REQUANT or THRESH, which one is the layer's, not the schedule's, so the TIR
  models it as one op over the same operands.

DMA copies (the copy blocks of ``cache_read`` and the store), marked on their outermost own
loop with the ``DMA_PRAGMA`` annotation whose value is the symbol, as the old VTA marked
``dma_copy``: ``LOAD_INP`` / ``LOAD_WGT`` / ``LOAD_PAR`` / ``LOAD_RES`` (into the input,
weight, parameter and accumulator buffers) and ``STORE``.
"""

from __future__ import annotations

INP_SCOPE, WGT_SCOPE = "local.inp_buffer", "local.wgt_buffer"
ACC_SCOPE, PAR_SCOPE = "local.acc_buffer", "local.par_buffer"

LOAD_INP, LOAD_WGT, LOAD_PAR, LOAD_RES = "VTALoadInp", "VTALoadWgt", "VTALoadPar", "VTALoadRes"
GEMM, ALU, STORE = "VTAGemm", "VTAAlu", "VTAStore"
DMA_PRAGMA = "pragma_vta_dma"  # loop annotation: the copy nest below is one DMA of this symbol

_REGISTERED: set = set()


def _register(name: str, desc, impl) -> str:
    import tvm

    tvm.s_tir.TensorIntrin.register(name, desc, impl, override=True)
    _REGISTERED.add(name)
    return name


def gemm_intrin(batch: int, bo: int, bi: int) -> str:
    """``C[b, o] += A[b, c] * W[o, c]`` over one input, weight and accumulator block. With
    one lane the scheduled block has no lane iterator, so neither has the description."""
    from tvm.script import tirx as T

    name = f"tternary_{GEMM}_{batch}x{bo}x{bi}"
    if name in _REGISTERED:  # parsing TVMScript costs ~0.1 s: once per shape
        return name
    one_lane = batch == 1

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, w: T.handle, c: T.handle):
        A = T.match_buffer(a, (batch, bi), "int8", offset_factor=1, scope=INP_SCOPE)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1, scope=WGT_SCOPE)
        C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:batch, 0:bo], A[0:batch, 0:bi], W[0:bo, 0:bi])
            T.writes(C[0:batch, 0:bo])
            if one_lane:
                for o, k in T.grid(bo, bi):
                    with T.sblock("update"):
                        vo, vk = T.axis.remap("SR", [o, k])
                        C[0, vo] = C[0, vo] + T.Cast("int32", A[0, vk]) \
                            * T.Cast("int32", W[vo, vk])
            else:
                for b, o, k in T.grid(batch, bo, bi):
                    with T.sblock("update"):
                        vb, vo, vk = T.axis.remap("SSR", [b, o, k])
                        C[vb, vo] = C[vb, vo] + T.Cast("int32", A[vb, vk]) \
                            * T.Cast("int32", W[vo, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, w: T.handle, c: T.handle):
        A = T.match_buffer(a, (batch, bi), "int8", offset_factor=1, scope=INP_SCOPE)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1, scope=WGT_SCOPE)
        C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:batch, 0:bo], A[0:batch, 0:bi], W[0:bo, 0:bi])
            T.writes(C[0:batch, 0:bo])
            T.evaluate(T.call_extern("int32", GEMM, C.data, C.elem_offset, A.data,
                                     A.elem_offset, W.data, W.elem_offset))

    return _register(name, desc, impl)


def alu_intrin(batch: int, bo: int, residual: bool) -> str:
    """``R[b, o] = epilogue(C[b, o], P[o] (, S[b, o]))``: one accumulator block with its
    parameters (and its residual block ``S``). The epilogue is modelled as
    ``int8(C * P (+ S))``: its dataflow is what the schedule needs; the arithmetic is the
    ALU opcode the layer chooses."""
    from tvm.script import tirx as T

    name = f"tternary_{ALU}_{batch}x{bo}{'_residual' if residual else ''}"
    if name in _REGISTERED:
        return name
    one_lane = batch == 1

    def with_residual():  # only the variant used is parsed
        @T.prim_func(s_tir=True)
        def desc(c: T.handle, p: T.handle, s: T.handle, r: T.handle):
            C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
            P = T.match_buffer(p, (1, bo), "int32", offset_factor=1, scope=PAR_SCOPE)
            S = T.match_buffer(s, (batch, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
            R = T.match_buffer(r, (batch, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:batch, 0:bo], P[0:1, 0:bo], S[0:batch, 0:bo])
                T.writes(R[0:batch, 0:bo])
                if one_lane:
                    for o in T.serial(bo):
                        with T.sblock("alu"):
                            vo = T.axis.remap("S", [o])
                            R[0, vo] = T.Cast("int8", C[0, vo] * P[0, vo]
                                              + T.Cast("int32", S[0, vo]))
                else:
                    for b, o in T.grid(batch, bo):
                        with T.sblock("alu"):
                            vb, vo = T.axis.remap("SS", [b, o])
                            R[vb, vo] = T.Cast("int8", C[vb, vo] * P[0, vo]
                                               + T.Cast("int32", S[vb, vo]))

        @T.prim_func(s_tir=True)
        def impl(c: T.handle, p: T.handle, s: T.handle, r: T.handle):
            C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
            P = T.match_buffer(p, (1, bo), "int32", offset_factor=1, scope=PAR_SCOPE)
            S = T.match_buffer(s, (batch, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
            R = T.match_buffer(r, (batch, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:batch, 0:bo], P[0:1, 0:bo], S[0:batch, 0:bo])
                T.writes(R[0:batch, 0:bo])
                T.evaluate(T.call_extern("int32", ALU, R.data, R.elem_offset, C.data, C.elem_offset,
                                         P.data, P.elem_offset, S.data, S.elem_offset))
        return desc, impl

    def plain():
        @T.prim_func(s_tir=True)
        def desc_plain(c: T.handle, p: T.handle, r: T.handle):
            C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
            P = T.match_buffer(p, (1, bo), "int32", offset_factor=1, scope=PAR_SCOPE)
            R = T.match_buffer(r, (batch, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:batch, 0:bo], P[0:1, 0:bo])
                T.writes(R[0:batch, 0:bo])
                if one_lane:
                    for o in T.serial(bo):
                        with T.sblock("alu"):
                            vo = T.axis.remap("S", [o])
                            R[0, vo] = T.Cast("int8", C[0, vo] * P[0, vo])
                else:
                    for b, o in T.grid(batch, bo):
                        with T.sblock("alu"):
                            vb, vo = T.axis.remap("SS", [b, o])
                            R[vb, vo] = T.Cast("int8", C[vb, vo] * P[0, vo])

        @T.prim_func(s_tir=True)
        def impl_plain(c: T.handle, p: T.handle, r: T.handle):
            C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
            P = T.match_buffer(p, (1, bo), "int32", offset_factor=1, scope=PAR_SCOPE)
            R = T.match_buffer(r, (batch, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:batch, 0:bo], P[0:1, 0:bo])
                T.writes(R[0:batch, 0:bo])
                T.evaluate(T.call_extern("int32", ALU, R.data, R.elem_offset, C.data, C.elem_offset,
                                         P.data, P.elem_offset))
        return desc_plain, impl_plain

    return _register(name, *(with_residual() if residual else plain()))
