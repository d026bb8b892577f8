"""Timing helpers: rounds across runners, hot and cold samples; cache sizes from sysfs."""

import pytest

from tvm_ternary.bench import timing


class _FakeEvictor:
    def __init__(self, log):
        self.log = log

    def evict(self):
        self.log.append("evict")


def test_rounds_rotate_and_precede_each_sample_by_warm_call_or_eviction():
    log = []
    fns = {name: (lambda name=name: log.append(name)) for name in "abc"}
    result = timing.timed_rounds(fns, repeats=3, evictor=_FakeEvictor(log), warmup=1)
    warm, hot, cold = log[:3], log[3:21], log[21:]
    assert warm == ["a", "b", "c"]
    # hot: each runner twice in a row (untimed, timed); round r starts at runner r
    assert hot == ["a", "a", "b", "b", "c", "c", "b", "b", "c", "c", "a", "a", "c", "c", "a", "a", "b", "b"]
    assert cold == ["evict", "a", "evict", "b", "evict", "c", "evict", "b", "evict", "c", "evict", "a",
                    "evict", "c", "evict", "a", "evict", "b"]
    for stats in result.values():
        assert set(stats) == {"hot", "cold"}
        for s in stats.values():
            assert s["repeats"] == 3 and 0 < s["min_ms"] <= s["median_ms"]


def test_without_evictor_only_hot():
    result = timing.timed_rounds({"x": lambda: None}, repeats=2)
    assert set(result["x"]) == {"hot"}


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
