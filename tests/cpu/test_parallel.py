"""Small layers keep a serial row loop; large ones split it over threads."""

from tvm.script import tirx as T

from tvm_ternary.cpu.parallel import PARALLEL_MIN_WEIGHTS, row_loop


def test_row_loop_is_serial_up_to_the_threshold_and_parallel_beyond():
    assert row_loop(512, 512) is T.serial
    assert row_loop(1, PARALLEL_MIN_WEIGHTS) is T.serial
    assert row_loop(1, PARALLEL_MIN_WEIGHTS + 1) is T.parallel
    assert row_loop(4096, 4096) is T.parallel
