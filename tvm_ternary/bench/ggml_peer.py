"""llama.cpp's ternary matmul through ggml-python (optional peer; ``pip install .[bench]``).

``GgmlLinear(w, "TQ2_0", batch, threads)`` holds a ggml context with the weights quantized
by ``ggml_quantize_chunk`` and a graph ``y = ggml_mul_mat(w, x)``; calling it with a float32
``x`` [batch, k] computes that graph with ``ggml_graph_compute_with_ctx`` on ``threads``
threads. The activations are quantized by ggml itself (to q8_K for the TQ types), as in
llama.cpp. ggml's ternary types need rows that are whole 256-element super-blocks.
"""

from __future__ import annotations

import ctypes

import numpy as np

from tvm_ternary.errors import BenchmarkError, ShapeMismatchError

TYPES = ("TQ2_0", "TQ1_0")
SUPER_BLOCK = 256


def available() -> bool:
    try:
        import ggml  # noqa: F401
    except ImportError:
        return False
    return True


def supports(k: int) -> bool:
    return k % SUPER_BLOCK == 0


class GgmlLinear:
    def __init__(self, weight: np.ndarray, type_name: str, batch: int, threads: int):
        import ggml

        if type_name not in TYPES:
            raise BenchmarkError(f"ggml peer: unknown type {type_name!r}, expected one of {TYPES}")
        n, k = weight.shape
        if not supports(k):
            raise ShapeMismatchError(f"ggml {type_name}: in_features {k} is not a multiple of {SUPER_BLOCK}")
        self.ggml, self.threads, self.shape = ggml, threads, (batch, k, n)
        gtype = getattr(ggml, f"GGML_TYPE_{type_name}")
        w_bytes = ggml.ggml_row_size(gtype, k) * n
        # weights + activations + output + graph + compute work buffer (generous margin)
        mem = w_bytes + 16 * batch * (k + n) + ggml.ggml_graph_overhead() + (64 << 20)
        self.ctx = ggml.ggml_init(ggml.ggml_init_params(mem_size=mem, mem_buffer=None, no_alloc=False))
        self.w = ggml.ggml_new_tensor_2d(self.ctx, gtype, k, n)
        src = np.ascontiguousarray(weight, dtype=np.float32)
        ggml.ggml_quantize_chunk(gtype, src.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                 self.w.contents.data, 0, n, k, None)
        self.x = ggml.ggml_new_tensor_2d(self.ctx, ggml.GGML_TYPE_F32, k, batch)
        self.y = ggml.ggml_mul_mat(self.ctx, self.w, self.x)
        self.graph = ggml.ggml_new_graph(self.ctx)
        ggml.ggml_build_forward_expand(self.graph, self.y)
        self._x_view = np.ctypeslib.as_array(ctypes.cast(self.x.contents.data, ctypes.POINTER(ctypes.c_float)),
                                             shape=(batch, k))
        self._y_view = np.ctypeslib.as_array(ctypes.cast(self.y.contents.data, ctypes.POINTER(ctypes.c_float)),
                                             shape=(batch, n))

    def set_input(self, x: np.ndarray) -> None:
        if tuple(x.shape) != self.shape[:2]:
            raise ShapeMismatchError(f"ggml peer: input shape {tuple(x.shape)}, built for {self.shape[:2]}")
        self._x_view[...] = x

    def run(self) -> None:
        self.ggml.ggml_graph_compute_with_ctx(self.ctx, self.graph, self.threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.set_input(x)
        self.run()
        return self._y_view.copy()

    def close(self) -> None:
        if self.ctx is not None:
            self.ggml.ggml_free(self.ctx)
            self.ctx = None

    def __del__(self):
        self.close()
