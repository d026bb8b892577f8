"""Virtual threads (``Schedule.virtual_threads`` = 2): the output-tile loop bound to
``vthread.x`` in the layer's TIR, interleaved by ``InjectVirtualThread``, walked into thread
groups and issued by ``tir_vthread.ThreadedEmitter``. For random layers, configs and
schedules the program runs on fsim (whose race checker traps any access no token orders)
equal to the numpy integer reference with no token left over; the walked tiles are the
thread groups built here from the tile grid; impossible combinations are typed errors."""

import dataclasses

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

pytest.importorskip("tvm")

from tvm_ternary.errors import KernelConfigError  # noqa: E402
from vta_ext.compiler.geometry import problem_of  # noqa: E402
from vta_ext.compiler.lower import compile_layer  # noqa: E402
from vta_ext.compiler.schedule import Schedule, misfit, schedule_space  # noqa: E402
from vta_ext.compiler.tiling import Tile, spans  # noqa: E402
from vta_ext.compiler.tir_layer import layer_shape, scheduled_layer  # noqa: E402
from vta_ext.compiler.tir_walk import walk_layer  # noqa: E402
from vta_ext.isa import Alu, Gemm, Load, MemType  # noqa: E402
from vta_ext.sim.fsim import simulate  # noqa: E402
from vta_ext.sim.perf import estimate  # noqa: E402

from .specs import layer_input, layer_spec, residual_input, trits  # noqa: E402
from .test_tir_lowering import _LAYER_ARGS, _SETTINGS, CONFIGS, layers  # noqa: E402


def _exact_on_fsim(spec, hw, s, rng):
    cl = compile_layer(spec, hw, s)
    assert cl.schedule.virtual_threads == s.virtual_threads
    x = layer_input(rng, spec)
    r = residual_input(rng, spec) if spec.has_residual else None
    result = simulate(cl.bind(x, r), hw)
    assert result.leftover_tokens == {}
    np.testing.assert_array_equal(cl.read_output(result.dram), spec.reference(x, r))
    return cl


def _check_random_layer(data, cfg, double_buffer, reuse):
    hw = CONFIGS[cfg]
    spec, rng = data.draw(layers(hw))
    space = [s for s in schedule_space(problem_of(spec, hw), hw)
             if (s.double_buffer, s.reuse, s.virtual_threads) == (double_buffer, reuse, 2)]
    if not space:
        event("no two-thread tiling fits")  # misfit's paths: test_impossible_combinations
        return
    s = space[data.draw(st.integers(0, len(space) - 1))]
    s = dataclasses.replace(s, skip_zero_blocks=data.draw(st.sampled_from([None, True, False])))
    event(f"double_buffer={s.double_buffer}, reuse={s.reuse}")
    event(f"epilogue {spec.epilogue}{' + residual' if spec.has_residual else ''}"
          f"{' (stores accumulators)' if spec.stores_accumulators else ''}")
    _exact_on_fsim(spec, hw, s, rng)


@settings(max_examples=60, **_SETTINGS)
@given(**_LAYER_ARGS)
def test_two_threads_are_exact_on_fsim(data, cfg, double_buffer, reuse):
    _check_random_layer(data, cfg, double_buffer, reuse)


@pytest.mark.slow
@settings(max_examples=300, **_SETTINGS)
@given(**_LAYER_ARGS)
def test_two_threads_are_exact_on_fsim_many(data, cfg, double_buffer, reuse):
    _check_random_layer(data, cfg, double_buffer, reuse)


def _thread_groups(p, s) -> list[list[Tile]]:
    """The tiles of two virtual threads, built from the tile grid: consecutive output tiles
    pair up (an odd last one runs alone), a pair runs at every spatial tile, thread 0 first."""
    outs = spans(p.out_blocks, s.tile_out_blocks)
    pairs = [outs[k:k + 2] for k in range(0, len(outs), 2)]
    spatial = [(r, c) for r in spans(p.oh, s.tile_rows) for c in spans(p.ow, s.tile_cols)]
    steps = tuple(spans(p.in_blocks, s.tile_in_blocks))
    out = []
    for ig in range(p.image_groups):
        for g in range(p.groups):
            order = ([(pair, rc) for pair in pairs for rc in spatial] if s.reuse == "weight"
                     else [(pair, rc) for rc in spatial for pair in pairs])
            out += [[Tile(ig, g, ob, r, c, steps) for ob in pair] for pair, (r, c) in order]
    return out


@pytest.mark.parametrize("reuse", ["weight", "input"])
def test_walked_thread_groups_are_the_tile_grids(reuse):
    """Odd output-tile counts and partial tiles on every axis: the walker reads the thread
    of each tile off the lowered offsets and drops the thread past the last output block."""
    hw = CONFIGS["tiny"]
    rng = np.random.default_rng(11)
    spec = layer_spec(rng, "conv2d", (2, 11, 7, 9), trits(rng, (21, 11, 3, 3)), padding=(1, 1))
    p = problem_of(spec, hw)
    for to in (1, 2, 3):
        s = Schedule(to, 2, 2, 3, double_buffer=False, reuse=reuse, virtual_threads=2)
        assert misfit(p, s, hw) is None
        walked = walk_layer(p, s)
        assert [w.thread for w in walked] == [k for grp in _thread_groups(p, s)
                                               for k in range(len(grp))]
        assert [w.tile for w in walked] == [t for grp in _thread_groups(p, s) for t in grp]


def test_the_primfunc_binds_a_virtual_thread():
    hw = CONFIGS["tiny"]
    rng = np.random.default_rng(2)
    spec = layer_spec(rng, "dense", (1, 20), trits(rng, (24, 20)))
    p = problem_of(spec, hw)
    one, two = Schedule(1, 1, 1, 1), Schedule(1, 1, 1, 1, virtual_threads=2)
    assert '"vthread.x"' in scheduled_layer(layer_shape(p, two)).script()
    assert "vthread" not in scheduled_layer(layer_shape(p, one)).script()


def test_threads_share_the_input_load_and_own_their_slots():
    """Per step of a group: one input LOAD, then each thread's weight LOAD into its own
    weight entries, then each thread's GEMM; after its last GEMM each thread's epilogue,
    so thread 0's ALU runs (overlapped) under thread 1's GEMM."""
    hw = CONFIGS["default"]
    rng = np.random.default_rng(4)
    spec = layer_spec(rng, "conv2d", (1, 32, 8, 8), trits(rng, (64, 32, 3, 3), p_zero=0.0),
                      padding=(1, 1))
    s = Schedule(1, 2, 8, 8, double_buffer=False, virtual_threads=2)
    cl = _exact_on_fsim(spec, hw, s, rng)
    insns = [i for i in cl.program.insns
             if not (isinstance(i, Load) and i.mem in (MemType.UOP, MemType.PAR))]
    kinds = [i.mem if isinstance(i, Load) else type(i) for i in insns]
    # the padded rectangle is one LOAD per channel block (2); both pairs of output tiles
    # read that same rectangle, so it is loaded once for the whole layer
    assert kinds.count(MemType.INP) == 2
    assert kinds[:5] == [MemType.INP, MemType.INP, MemType.WGT, MemType.WGT, Gemm]
    w0, w1, g0 = insns[2:5]
    assert w1.sram_base >= w0.sram_base + w0.x_size  # thread 1's own weight entries
    compute = [i for i in insns if isinstance(i, (Gemm, Alu))]
    assert [type(i) for i in compute[:4]] == [Gemm, Alu, Gemm, Alu]
    g1 = compute[2]
    assert g0.pop_prev and g1.pop_prev  # each GEMM waits for its own thread's weights
    assert compute[1].overlap and not compute[3].overlap  # single-buffered: thread 0's only


def test_two_threads_overlap_weight_loads_with_the_other_threads_gemm():
    """Single-buffered, the same output blocks per pair of tiles: two threads of half the
    output blocks each finish sooner than one thread (the cycle model honours tokens),
    because the load module fills one thread's weights while the other's GEMM runs."""
    hw = CONFIGS["default"]
    rng = np.random.default_rng(1)
    spec = layer_spec(rng, "conv2d", (1, 64, 14, 14), trits(rng, (64, 64, 3, 3)),
                      padding=(1, 1))
    one = Schedule(4, 1, 2, 14, double_buffer=False)
    two = dataclasses.replace(one, tile_out_blocks=2, virtual_threads=2)
    cycles = {s.virtual_threads: estimate(compile_layer(spec, hw, s).program,
                                          hw).cycles.total_cycles for s in (one, two)}
    assert cycles[2] < 0.95 * cycles[1], cycles


def test_impossible_combinations_are_typed_errors():
    hw = CONFIGS["tiny"]
    rng = np.random.default_rng(0)
    spec = layer_spec(rng, "conv2d", (1, 8, 6, 6), trits(rng, (16, 8, 3, 3)), padding=(1, 1))
    p = problem_of(spec, hw)
    with pytest.raises(KernelConfigError, match=r"conv2d_test.*virtual_threads = 2 needs 2 "
                                                r"output-channel tiles"):
        compile_layer(spec, hw, Schedule(p.out_blocks, 1, 1, 1, virtual_threads=2))
    with pytest.raises(KernelConfigError, match=r"conv2d_test.*virtual_threads = 3 is not one"):
        compile_layer(spec, hw, Schedule(1, 1, 1, 1, virtual_threads=3))
    with pytest.raises(KernelConfigError, match=r"conv2d_test.*virtual_threads = 2 exists in "
                                                r"the TIR lowering only"):
        compile_layer(spec, hw, Schedule(1, 1, 1, 1, virtual_threads=2), lowering="loops")
    with pytest.raises(KernelConfigError, match="virtual_threads must be an integer"):
        Schedule.from_dict({**Schedule(1, 1, 1, 1).to_dict(), "virtual_threads": 2.0})
    # buffers that hold one thread's slots but not two threads'
    fits_once = [s for s in schedule_space(p, hw) if s.virtual_threads == 1 and misfit(
        p, dataclasses.replace(s, virtual_threads=2), hw) and "entries" in misfit(
        p, dataclasses.replace(s, virtual_threads=2), hw)]
    assert fits_once
    s = dataclasses.replace(fits_once[0], virtual_threads=2)
    with pytest.raises(KernelConfigError, match=r"conv2d_test.*entries \(virtual_threads = 2\)"):
        compile_layer(spec, hw, s)


def _resnet_layer_is_exact(name, tiles):
    """A ResNet-18 ImageNet conv with random ternary weights and epilogue parameters under
    the two-thread schedule docs/vta_lowering.md reports for it, on the default config."""
    from tvm_ternary.models import RESNET18_IMAGENET_CONVS

    hw = CONFIGS["default"]
    conv = {c.name: c for c in RESNET18_IMAGENET_CONVS}[name]
    rng = np.random.default_rng(len(name))
    spec = layer_spec(rng, "conv2d", (1, conv.cin, conv.size, conv.size),
                      trits(rng, (conv.cout, conv.cin, conv.kernel, conv.kernel)),
                      stride=(conv.stride,) * 2, padding=(conv.pad,) * 2)
    _exact_on_fsim(spec, hw, Schedule(*tiles, virtual_threads=2), rng)


@pytest.mark.parametrize("name, tiles", [("C4", (4, 4, 2, 28)), ("C7", (8, 8, 2, 14)),
                                         ("C9", (2, 4, 7, 7)), ("C10", (2, 16, 7, 7)),
                                         ("C11", (4, 4, 7, 7))])
def test_resnet_layers_with_two_threads_are_exact(name, tiles):
    _resnet_layer_is_exact(name, tiles)
