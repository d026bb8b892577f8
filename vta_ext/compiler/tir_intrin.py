"""The accelerator's tensor intrinsics for ``tvm.s_tir.Schedule.tensorize``: one per kind of
instruction a scheduled layer lowers to (docs/vta_lowering.md).

Each intrinsic covers one *block* (``batch`` lanes x ``block_in`` or ``block_out`` elements)
and its implementation is a single ``T.call_extern`` whose symbol names the instruction
kind; the TIR walker (``tir_walk``) reads the symbol and the flattened buffer offsets of
every call. Symbols and the scopes of the on-chip buffers are defined here only.

- ``LOAD_INP`` / ``LOAD_WGT`` / ``LOAD_PAR``: a DMA copy of one block from DRAM into the
  input, weight or parameter buffer (the copy blocks of ``cache_read``);
- ``GEMM``: ``C[b, o] += A[b, c] * W[o, c]`` into the accumulator buffer;
- ``ALU``: the epilogue of one accumulator block with its parameter block (REQUANT or
  THRESH; which one is the layer's, not the schedule's, so the TIR models it as one op);
- ``STORE``: a DMA copy of one result block from the accumulator buffer to DRAM.
"""

from __future__ import annotations

INP_SCOPE, WGT_SCOPE = "local.inp_buffer", "local.wgt_buffer"
ACC_SCOPE, PAR_SCOPE = "local.acc_buffer", "local.par_buffer"

LOAD_INP, LOAD_WGT, LOAD_PAR = "VTALoadInp", "VTALoadWgt", "VTALoadPar"
GEMM, ALU, STORE = "VTAGemm", "VTAAlu", "VTAStore"
SYMBOLS = (LOAD_INP, LOAD_WGT, LOAD_PAR, GEMM, ALU, STORE)
DMA_PRAGMA = "pragma_vta_dma"  # loop annotation: the copy nest below is one DMA of this symbol

_REGISTERED: set = set()


def _register(name: str, desc, impl) -> str:
    import tvm

    tvm.s_tir.TensorIntrin.register(name, desc, impl, override=True)
    _REGISTERED.add(name)
    return name


def gemm_intrin(batch: int, bo: int, bi: int) -> str:
    """``C[b, o] += A[b, c] * W[o, c]`` over one input, weight and accumulator block."""
    from tvm.script import tirx as T

    name = f"tternary_{GEMM}_{batch}x{bo}x{bi}"
    if name in _REGISTERED:  # parsing TVMScript costs ~0.1 s: once per shape
        return name

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, w: T.handle, c: T.handle):
        A = T.match_buffer(a, (batch, bi), "int8", offset_factor=1, scope=INP_SCOPE)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1, scope=WGT_SCOPE)
        C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:batch, 0:bo], A[0:batch, 0:bi], W[0:bo, 0:bi])
            T.writes(C[0:batch, 0:bo])
            for b, o, k in T.grid(batch, bo, bi):
                with T.sblock("update"):
                    vb, vo, vk = T.axis.remap("SSR", [b, o, k])
                    C[vb, vo] = C[vb, vo] + T.Cast("int32", A[vb, vk]) * T.Cast("int32", W[vo, vk])

    @T.prim_func(s_tir=True)
    def desc_one_lane(a: T.handle, w: T.handle, c: T.handle):
        A = T.match_buffer(a, (1, bi), "int8", offset_factor=1, scope=INP_SCOPE)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1, scope=WGT_SCOPE)
        C = T.match_buffer(c, (1, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0, 0:bo], A[0, 0:bi], W[0:bo, 0:bi])
            T.writes(C[0, 0:bo])
            for o, k in T.grid(bo, bi):
                with T.sblock("update"):
                    vo, vk = T.axis.remap("SR", [o, k])
                    C[0, vo] = C[0, vo] + T.Cast("int32", A[0, vk]) * T.Cast("int32", W[vo, vk])

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

    return _register(name, desc_one_lane if batch == 1 else desc, impl)


def alu_intrin(batch: int, bo: int) -> str:
    """``R[b, o] = epilogue(C[b, o], P[o])``: one accumulator block with its parameters. The
    epilogue is modelled as ``int8(C * P)``: its dataflow (what it reads and writes) is what
    the schedule needs; the arithmetic is the ALU opcode the layer chooses."""
    from tvm.script import tirx as T

    name = f"tternary_{ALU}_{batch}x{bo}"
    if name in _REGISTERED:
        return name

    @T.prim_func(s_tir=True)
    def desc(c: T.handle, p: T.handle, r: T.handle):
        C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        P = T.match_buffer(p, (1, bo), "int32", offset_factor=1, scope=PAR_SCOPE)
        R = T.match_buffer(r, (batch, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:batch, 0:bo], P[0:1, 0:bo])
            T.writes(R[0:batch, 0:bo])
            for b, o in T.grid(batch, bo):
                with T.sblock("alu"):
                    vb, vo = T.axis.remap("SS", [b, o])
                    R[vb, vo] = T.Cast("int8", C[vb, vo] * P[0, vo])

    @T.prim_func(s_tir=True)
    def desc_one_lane(c: T.handle, p: T.handle, r: T.handle):
        C = T.match_buffer(c, (1, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        P = T.match_buffer(p, (1, bo), "int32", offset_factor=1, scope=PAR_SCOPE)
        R = T.match_buffer(r, (1, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0, 0:bo], P[0, 0:bo])
            T.writes(R[0, 0:bo])
            for o in T.serial(bo):
                with T.sblock("alu"):
                    vo = T.axis.remap("S", [o])
                    R[0, vo] = T.Cast("int8", C[0, vo] * P[0, vo])

    @T.prim_func(s_tir=True)
    def impl(c: T.handle, p: T.handle, r: T.handle):
        C = T.match_buffer(c, (batch, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        P = T.match_buffer(p, (1, bo), "int32", offset_factor=1, scope=PAR_SCOPE)
        R = T.match_buffer(r, (batch, bo), "int8", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:batch, 0:bo], P[0:1, 0:bo])
            T.writes(R[0:batch, 0:bo])
            T.evaluate(T.call_extern("int32", ALU, R.data, R.elem_offset, C.data, C.elem_offset,
                                     P.data, P.elem_offset))

    return _register(name, desc_one_lane if batch == 1 else desc, impl)
