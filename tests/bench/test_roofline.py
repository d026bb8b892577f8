"""Roofline arithmetic on hand-worked numbers, and the measured roofline's shape."""

import pytest

from tvm_ternary.bench import roofline


def test_memory_bound_kernel():
    # 1 GB at 10 GB/s = 100 ms; 1 GMAC at 100 GMAC/s = 10 ms -> memory-bound, 100 ms
    b = roofline.bound(1e9, 1e9, 10.0, 100.0)
    assert b["bound"] == "memory"
    assert b["roofline_ms"] == pytest.approx(100.0)
    assert b["compute_ms"] == pytest.approx(10.0)


def test_compute_bound_kernel_and_percent():
    # 4096x4096x32 GEMM: 536.9 MMAC at 200 GMAC/s = 2.684 ms; 4.2 MB at 10 GB/s = 0.42 ms
    b = roofline.bound(4.2e6, 4096 * 4096 * 32, 10.0, 200.0)
    assert b["bound"] == "compute"
    assert b["roofline_ms"] == pytest.approx(2.68435456)
    assert roofline.pct(b["roofline_ms"], 2 * b["roofline_ms"]) == pytest.approx(50.0)


def test_best_rates_are_picked_from_a_measurement():
    roof = {"threads": 2,
            "bandwidth": {"read_t1": {"best_gbs": 8.0}, "read_t2": {"best_gbs": 11.0},
                          "copy_t2": {"best_gbs": 30.0}},
            "int8_peak": {"avx2_pmaddubsw_t1": {"best_gmacs": 150.0}, "avx2_pmaddubsw_t2": {"best_gmacs": 290.0},
                          "avx512vnni_vpdpbusd_512_t2": {"best_gmacs": 900.0},
                          "avx512vnni_vpdpbusd_512_t1": {"best_gmacs": 950.0}}}
    assert roofline.dram_read_gbs(roof) == 11.0           # copy is not a read bandwidth
    assert roofline.peak_gmacs(roof) == 900.0             # on the benchmark's 2 threads
    assert roofline.peak_gmacs(roof, "avx2") == 290.0


def test_quick_measurement_is_positive_and_plausible():
    roof = roofline.measure(2, quick=True, flags={"avx2"})
    assert set(roof["int8_peak"]) == {"avx2_pmaddubsw_t1", "avx2_pmaddubsw_t2"}
    assert 0.5 < roofline.dram_read_gbs(roof) < 2000          # GB/s, any DRAM or cache
    assert 1 < roofline.peak_gmacs(roof) < 100_000            # GMAC/s
