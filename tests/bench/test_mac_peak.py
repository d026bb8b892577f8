"""The int8 peak kernels compute what their instructions define (numpy emulation of
pmaddubsw / pmaddwd / vpdpbusd), so the timed loop is the work it claims to be."""

import numpy as np
import pytest
import tvm

from tvm_ternary.bench import mac_peak
from tvm_ternary.target import cpu_info

FORMS = mac_peak.available_forms(cpu_info()["flags"])
pytestmark = pytest.mark.skipif(not FORMS, reason="host has none of the peak instructions")


def _emulate_pmaddubsw(s: np.ndarray, threads: int, iters: int) -> np.ndarray:
    out = np.zeros((threads, mac_peak.CHAINS * 8), np.int32)
    for t in range(threads):
        for c in range(mac_peak.CHAINS):
            a16 = np.full(16, c + 1, np.int16)
            acc = np.full(8, t, np.int64)
            for _ in range(iters):
                for _ in range(mac_peak.CHUNK):
                    prod = a16.view(np.uint8).astype(np.int32) * s.astype(np.int32)
                    pair = np.clip(prod[0::2] + prod[1::2], -32768, 32767)   # pmaddubsw saturates
                    a16 = ((a16.astype(np.int32) + pair + 32768) % 65536 - 32768).astype(np.int16)
                acc += a16[0::2].astype(np.int64) + a16[1::2]                 # pmaddwd by ones
            out[t, c * 8:(c + 1) * 8] = ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)
    return out


def _emulate_vpdpbusd(u: np.ndarray, s: np.ndarray, lanes: int, threads: int, iters: int) -> np.ndarray:
    step = (u.astype(np.int64) * s.astype(np.int64)).reshape(lanes, 4).sum(axis=1)
    out = np.zeros((threads, mac_peak.CHAINS * lanes), np.int32)
    for t in range(threads):
        for c in range(mac_peak.CHAINS):
            acc = t + c + iters * mac_peak.CHUNK * step
            out[t, c * lanes:(c + 1) * lanes] = ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)
    return out


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("threads,iters", [(1, 1), (2, 3)])
def test_peak_kernel_matches_instruction_semantics(form, threads, iters):
    arrays = mac_peak.inputs(form, threads, seed=threads * 7 + iters)
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    mac_peak.build(form, threads, iters)(*tensors)
    got = tensors[-1].numpy()
    if form == "avx2_pmaddubsw":
        want = _emulate_pmaddubsw(arrays[0], threads, iters)
    else:
        want = _emulate_vpdpbusd(arrays[0], arrays[1], mac_peak.FORMS[form].lanes, threads, iters)
    assert np.array_equal(got, want)


def test_mac_count_is_products_per_instruction_times_instructions():
    # 2 threads x 5 iterations x CHUNK steps x CHAINS chains x 32 products (256-bit)
    assert mac_peak.macs("avx2_pmaddubsw", 2, 5) == 2 * 5 * mac_peak.CHUNK * mac_peak.CHAINS * 32


def test_forms_follow_cpu_flags():
    assert mac_peak.available_forms({"avx2"}) == ["avx2_pmaddubsw"]
    assert mac_peak.available_forms({"sse2"}) == []
    assert "avx512vnni_vpdpbusd_512" in mac_peak.available_forms({"avx2", "avx512f", "avx512vl", "avx512_vnni"})


def test_measured_rate_is_positive():
    rate = mac_peak.measure_gmacs(FORMS[0], 1, seconds=0.002, repeats=2)
    assert 0 < rate["median_gmacs"] <= rate["best_gmacs"]
