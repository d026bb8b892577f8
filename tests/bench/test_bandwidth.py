"""The bandwidth kernels touch exactly the bytes they are charged for."""

import numpy as np
import pytest
import tvm

from tvm_ternary.bench import bandwidth as bw


@pytest.mark.parametrize("n_bytes,threads", [(4096, 1), (100_000, 2), (1 << 20, 2), (3, 1)])
def test_words_cover_whole_steps(n_bytes, threads):
    n = bw.words_for(n_bytes, threads)
    step = threads * bw.LANES * bw.ACCUMULATORS
    assert n % step == 0 and n >= step
    assert 4 * n <= max(n_bytes, 4 * step)


@pytest.mark.parametrize("threads", [1, 2])
def test_read_kernel_ors_every_word_of_each_thread_slice(threads):
    n = bw.words_for(200_000, threads)
    rng = np.random.default_rng(threads)
    src = np.zeros(n, np.int32)
    hits = rng.integers(0, n, 40)
    src[hits] = 1 << rng.integers(0, 31, 40)     # sparse bits: a skipped word loses one
    out = tvm.runtime.tensor(np.zeros((threads, bw.LANES), np.int32))
    bw.build_read(n, threads)(tvm.runtime.tensor(src), out)
    per_thread = src.reshape(threads, -1, bw.LANES)
    want = np.bitwise_or.reduce(per_thread, axis=1)
    assert np.array_equal(out.numpy(), want)


@pytest.mark.parametrize("threads", [1, 2])
def test_copy_kernel_copies_everything(threads):
    n = bw.words_for(123_456, threads)
    src = np.random.default_rng(0).integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32)
    dst = tvm.runtime.tensor(np.zeros(n, np.int32))
    bw.build_copy(n, threads)(tvm.runtime.tensor(src), dst)
    assert np.array_equal(dst.numpy(), src)


def test_rates_count_read_once_and_copy_twice():
    read = bw.read_gbs(1 << 20, 1, repeats=2)
    copy = bw.copy_gbs(1 << 20, 1, repeats=2)
    assert read["bytes"] == 4 * bw.words_for(1 << 20, 1)
    assert copy["bytes"] == 2 * read["bytes"]
    for r in (read, copy, bw.numpy_copy_gbs(1 << 20, repeats=2)):
        assert 0 < r["median_gbs"] <= r["best_gbs"]
