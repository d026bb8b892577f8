"""The optional ggml peer computes the ternary layer it is given (ggml-python installed
with ``pip install .[bench]``; skipped without it)."""

import numpy as np
import pytest

from tvm_ternary.bench import ggml_peer
from tvm_ternary.errors import BenchmarkError, ShapeMismatchError

pytestmark = pytest.mark.skipif(not ggml_peer.available(), reason="ggml-python not installed")


@pytest.mark.parametrize("type_name", ggml_peer.TYPES)
@pytest.mark.parametrize("batch,n,k", [(1, 7, 256), (3, 33, 512)])
def test_matmul_of_ternary_weights(type_name, batch, n, k):
    rng = np.random.default_rng(batch * 100 + n)
    w_t = rng.integers(-1, 2, (n, k)).astype(np.float32)
    alpha = rng.uniform(0.5, 2.0, (n, 1)).astype(np.float32)
    x = rng.standard_normal((batch, k)).astype(np.float32)
    layer = ggml_peer.GgmlLinear(w_t * alpha, type_name, batch, threads=2)
    got = layer(x)
    want = x @ (w_t * alpha).T
    # ggml quantizes the activations to 8 bits (q8_K): error ~ 1% of the row's scale
    scale = np.abs(x).max(axis=1, keepdims=True) * alpha.T * np.sqrt(k)
    assert np.abs(got - want).max() <= 0.02 * scale.max()
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999


def test_rejects_rows_that_are_not_whole_super_blocks():
    with pytest.raises(ShapeMismatchError, match="300"):
        ggml_peer.GgmlLinear(np.zeros((4, 300), np.float32), "TQ2_0", 1, 1)


def test_rejects_unknown_type_and_wrong_input_shape():
    with pytest.raises(BenchmarkError, match="Q4_0"):
        ggml_peer.GgmlLinear(np.zeros((4, 256), np.float32), "Q4_0", 1, 1)
    layer = ggml_peer.GgmlLinear(np.zeros((4, 256), np.float32), "TQ2_0", 2, 1)
    with pytest.raises(ShapeMismatchError, match="ggml"):
        layer(np.zeros((1, 256), np.float32))
