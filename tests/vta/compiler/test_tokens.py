"""Dependency tokens: every token pair the lowering emits is needed. The simulator checks
that each cross-module access is ordered by tokens (vector clocks, whatever the
interleaving); removing any one matched push/pop pair from a compiled program must make it
report a race, and the intact program runs clean."""

import numpy as np
import pytest

from tvm_ternary.errors import SimulatorError
from vta_ext import HwConfig, isa
from vta_ext.compiler.lower import compile_layer
from vta_ext.compiler.schedule import Schedule
from vta_ext.program import Program
from vta_ext.sim.fsim import module_of, simulate

from .specs import layer_input, layer_spec, trits

TINY = HwConfig.load("tiny")
# queue -> (pushing module, push flag, popping module, pop flag)
QUEUES = {"l2c": ("load", "push_next", "compute", "pop_prev"),
          "c2l": ("compute", "push_prev", "load", "pop_next"),
          "c2s": ("compute", "push_next", "store", "pop_prev"),
          "s2c": ("store", "push_prev", "compute", "pop_next")}


def _pairs(insns, queue):
    """Matched (pusher, popper) instruction indices of a queue: the n-th push releases the
    n-th pop (queues are counters)."""
    pmod, pflag, qmod, qflag = QUEUES[queue]
    pushes = [i for i, x in enumerate(insns) if module_of(x) == pmod and getattr(x, pflag)]
    pops = [i for i, x in enumerate(insns) if module_of(x) == qmod and getattr(x, qflag)]
    assert len(pushes) == len(pops)
    return list(zip(pushes, pops))


def _compiled(double_buffer):
    rng = np.random.default_rng(3)
    spec = layer_spec(rng, "conv2d", (1, 8, 9, 7), trits(rng, (10, 8, 3, 3)), padding=(1, 1),
                      dual=True)
    cl = compile_layer(spec, TINY, Schedule(1, 1, 2, 7, double_buffer=double_buffer))
    return spec, cl, layer_input(rng, spec)


@pytest.mark.parametrize("double_buffer", [True, False])
@pytest.mark.parametrize("queue", list(QUEUES))
def test_each_token_pair_is_needed(double_buffer, queue):
    spec, cl, x = _compiled(double_buffer)
    program = cl.bind(x)
    result = simulate(program, TINY)
    np.testing.assert_array_equal(cl.read_output(result.dram), spec.reference(x))
    # FINISH waits for the last STORE so "compute done" also means "results in DRAM" for a
    # host that watches FINISH; the simulator's own end (all modules drained) needs no token
    pairs = [(a, b) for a, b in _pairs(program.insns, queue)
             if program.insns[b].opcode != isa.Opcode.FINISH]
    assert pairs
    _, pflag, _, qflag = QUEUES[queue]
    for push, pop in sorted({pairs[0], pairs[len(pairs) // 2], pairs[-1]}):
        insns = list(program.insns)
        insns[push] = isa.replace(insns[push], **{pflag: False})
        insns[pop] = isa.replace(insns[pop], **{qflag: False})
        with pytest.raises(SimulatorError, match="race"):
            simulate(Program(insns=insns, dram=program.dram), TINY)


def test_double_buffering_lets_loads_run_ahead():
    """With two slots a load waits for the GEMM two steps back, not the previous one."""
    waits = {}
    for db in (True, False):
        _, cl, _ = _compiled(db)
        insns = cl.program.insns
        gemms = [i for i, x in enumerate(insns) if x.opcode == isa.Opcode.GEMM and not x.reset]
        lag = []
        for push, pop in _pairs(insns, "c2l"):
            later = [g for g in gemms if push < g < pop]  # GEMMs between the reader and the load
            lag.append(len(later))
        waits[db] = min(lag)
    assert waits[False] == 0 and waits[True] >= 1, waits
