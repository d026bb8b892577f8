"""The TVM thread pool gets one thread per usable CPU (TVM alone would start half)."""

import os
import subprocess
import sys

import pytest

_CHILD = "import os, tvm_ternary, tvm; print(tvm.runtime.num_threads(), len(os.sched_getaffinity(0)))"


def _pool_and_cpus(tvm_num_threads: str | None) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    if tvm_num_threads is not None:
        env["TVM_NUM_THREADS"] = tvm_num_threads
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    pool, cpus = map(int, out.stdout.split()[-2:])
    return pool, cpus


def test_pool_uses_every_usable_cpu():
    pool, cpus = _pool_and_cpus(None)
    assert pool == cpus


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to tell the user's setting apart")
def test_user_setting_is_kept():
    assert _pool_and_cpus("1")[0] == 1


def test_platform_without_affinity_uses_the_cpu_count():
    """macOS and Windows have no os.sched_getaffinity: the import must not fail there."""
    child = ("import os; del os.sched_getaffinity; import tvm_ternary; "
             "print(os.environ['TVM_NUM_THREADS'], os.cpu_count())")
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True)
    threads, cpus = out.stdout.split()[-2:]
    assert threads == cpus
