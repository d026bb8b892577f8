"""Schedule knobs: buffer footprints (hand-worked), the space the tuner enumerates, the
default choice, and what double buffering buys (cycle model)."""

import dataclasses

import numpy as np
import pytest

from vta_ext import HwConfig
from vta_ext.compiler.geometry import problem_of
from vta_ext.compiler.lower import compile_layer
from vta_ext.compiler.schedule import (Schedule, default_schedule, footprint, misfit,
                                       schedule_space)
from vta_ext.sim.cycles import cycle_report

from .specs import layer_spec, trits

DEFAULT, TINY = HwConfig.load("default"), HwConfig.load("tiny")


def _problem(dual, hw=DEFAULT, shape=(1, 37, 9, 9), out=40, stride=(1, 1)):
    rng = np.random.default_rng(0)
    spec = layer_spec(rng, "conv2d", shape, trits(rng, (out, shape[1], 3, 3)), dual=dual,
                      stride=stride, padding=(1, 1))
    return problem_of(spec, hw)


@pytest.mark.parametrize("dual", [False, True])
def test_footprint_hand_worked(dual):
    """37 -> 40 channels on 16 x 16 blocks: 3 input and 3 output blocks. A tile of 2 output
    blocks x 4 x 5 pixels over 3 input blocks reads 6 x 7 padded pixels per input block."""
    p = _problem(dual)
    assert (p.in_blocks, p.out_blocks, p.oh, p.ow) == (3, 3, 9, 9)
    f = footprint(p, Schedule(2, 3, 4, 5))
    acc = 2 * 4 * 5
    assert (f.inp, f.wgt, f.uop) == (3 * 6 * 7, 2 * 3 * 9, 2 * 3 * 9)
    # accumulators (pairs with dual), then the packed results (out of place since v1.4)
    assert f.acc == (acc * 2 + acc if dual else acc + acc)


def test_stride_widens_the_input_rectangle():
    p = _problem(False, stride=(2, 2))
    assert (p.oh, p.ow) == (5, 5)
    assert footprint(p, Schedule(1, 1, 3, 2)).inp == (2 * 2 + 3) * (1 * 2 + 3)


def test_space_and_default():
    for hw in (DEFAULT, TINY):
        p = _problem(True, hw)
        space = schedule_space(p, hw)
        assert space and all(misfit(p, s, hw) is None for s in space)
        assert {s.double_buffer for s in space} == {True, False}
        assert {s.reuse for s in space} == {"weight", "input"}
        assert default_schedule(p, hw) in space


def test_misfit_names_the_buffer():
    p = _problem(False, TINY)
    why = misfit(p, Schedule(11, 10, 9, 9), TINY)  # 10 output blocks of 4
    assert why is not None and "outside" in why
    why = misfit(p, Schedule(1, 10, 9, 9), TINY)
    assert why is not None and "inp" in why


def test_double_buffering_overlaps_loads_with_compute():
    """Same tiles, two slots instead of one: the cycle model (tokens honoured) finishes
    sooner because the next step's loads run during this step's GEMM."""
    rng = np.random.default_rng(1)
    spec = layer_spec(rng, "conv2d", (1, 64, 28, 28), trits(rng, (64, 64, 3, 3)), padding=(1, 1))
    single = Schedule(2, 1, 4, 28, double_buffer=False)
    cycles = {}
    for s in (single, dataclasses.replace(single, double_buffer=True)):
        cycles[s.double_buffer] = cycle_report(compile_layer(spec, DEFAULT, s).program,
                                               DEFAULT).total_cycles
    assert cycles[True] < 0.9 * cycles[False], cycles


def test_schedule_round_trips_through_plain_values():
    from tvm_ternary.errors import KernelConfigError
    from vta_ext.compiler.lower import layer_schedules

    rng = np.random.default_rng(0)
    spec = layer_spec(rng, "dense", (3, 40), trits(rng, (20, 40)))
    for s in layer_schedules(spec, TINY)[:20]:
        assert Schedule.from_dict(s.to_dict()) == s
    with pytest.raises(KernelConfigError, match="unknown"):
        Schedule.from_dict({**Schedule(1, 1, 1, 1).to_dict(), "tile_depth": 2})
    with pytest.raises(KernelConfigError, match="missing"):
        Schedule.from_dict({"tile_out_blocks": 1})
    with pytest.raises(KernelConfigError, match="tile_rows"):
        Schedule.from_dict({**Schedule(1, 1, 1, 1).to_dict(), "tile_rows": 1.5})
