"""Timing helpers: the cold hook runs untimed before every call; cache sizes from sysfs."""

import pytest

from tvm_ternary.bench import timing


def test_before_runs_once_per_repeat_and_stats_are_ordered():
    calls = []
    result = timing.timed(lambda: calls.append("f"), repeats=4, warmup=1, before=lambda: calls.append("b"))
    assert calls == ["f"] + ["b", "f"] * 4
    assert 0 < result["min_ms"] <= result["median_ms"] and result["repeats"] == 4


@pytest.mark.parametrize("sizes,want", [(["48K", "2048K", "491520K"], 491520 << 10),
                                        (["32K", "1M"], 1 << 20), (["4096"], 4096)])
def test_last_level_cache_is_the_largest_level(tmp_path, sizes, want):
    for i, size in enumerate(sizes):
        (tmp_path / f"index{i}").mkdir()
        (tmp_path / f"index{i}" / "size").write_text(size + "\n")
    assert timing.last_level_cache_bytes(str(tmp_path)) == want


def test_no_sysfs_means_unknown(tmp_path):
    assert timing.last_level_cache_bytes(str(tmp_path)) is None


def test_evictor_reads_more_than_the_cache_it_is_told_about():
    ev = timing.CacheEvictor(threads=2, factor=1.25, floor_bytes=1 << 20, llc_bytes=8 << 20)
    assert ev.bytes >= 1.25 * (8 << 20) - 4 * 2 * 64
    ev.evict()
    modes = timing.timed_modes(lambda: None, 2, ev)
    assert set(modes) == {"hot", "cold"}
    assert set(timing.timed_modes(lambda: None, 2, None)) == {"hot"}
