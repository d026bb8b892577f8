"""perf.estimate: the cycle and energy reports of one program together, as cm.stats and
the benchmark read them."""

import json

import numpy as np

from vta_ext import HwConfig
from vta_ext.isa import encode_stream
from vta_ext.sim.cycles import cycle_report
from vta_ext.sim.energy import energy_report
from vta_ext.sim.perf import estimate

from .builders import dense_program


def _layer(cfg):
    rng = np.random.default_rng(3)
    x = rng.integers(-127, 128, (3, 40))
    w = rng.integers(-1, 2, (20, 40)).astype(np.int8)
    params = dict(mult_p=np.full(20, 1 << 14), shift=np.full(20, 20))
    prog, _ = dense_program(cfg, x, w, epilogue="requant", params=params, tile_blocks=1)
    return prog, 3 * 40 * 20


def test_estimate_is_both_reports_and_json_ready():
    cfg = HwConfig.load("default")
    prog, macs = _layer(cfg)
    rep = estimate(prog, cfg, useful_macs=macs)
    alone = cycle_report(prog, cfg, useful_macs=macs)
    assert rep.cycles.total_cycles == alone.total_cycles
    assert rep.cycles.finish == alone.finish
    assert rep.energy == energy_report(prog, cfg)
    s = json.loads(json.dumps(rep.stats()))
    assert s["cycles"] == alone.total_cycles
    assert s["useful_macs"] == macs
    assert s["gemm_utilization"] == macs / (256 * alone.total_cycles)
    assert s["dram_bytes"] == (sum(alone.dram_read_bytes.values())
                               + sum(alone.dram_write_bytes.values()))
    assert s["energy_pj"] == rep.energy["total_pj"]
    assert s["seconds"] == alone.total_cycles / 100e6  # default runs at 100 MHz


def test_estimate_accepts_an_encoded_stream():
    cfg = HwConfig.load("tiny")
    prog, _ = _layer(cfg)
    assert estimate(encode_stream(prog.insns), cfg).stats() == estimate(prog, cfg).stats()


def test_ninety_percent_zero_blocks_take_at_most_a_fifth_of_the_cycles():
    """DESIGN's zero-block target on a ResNet-18-style 3x3 conv (256 -> 256 channels, 8x8,
    compiled by vta_ext.compiler): skipped blocks save GEMM cycles and weight DMA."""
    from vta_ext.compiler.layer import LayerSpec
    from vta_ext.compiler.lower import compile_layer
    cfg = HwConfig.load("default")
    rng = np.random.default_rng(11)
    dense_w = rng.choice([-1, 0, 1], size=(256, 256, 3, 3)).astype(np.int8)
    sparse_w = dense_w.copy()
    blocks = sparse_w.reshape(16, 16, 16, 16, 3, 3)  # [ob, o, cb, c, kh, kw], a view
    zero = rng.random((16, 16, 3, 3)) < 0.9  # per (ob, cb, kh, kw): a 16 x 16 weight block
    blocks.transpose(0, 2, 4, 5, 1, 3)[zero] = 0
    reports = {}
    for name, w in (("dense", dense_w), ("sparse", sparse_w)):
        spec = LayerSpec(name=name, kind="conv2d", input_shape=(1, 256, 8, 8), weight=w,
                         bias=np.zeros(256, np.int64), mult_p=np.full(256, 1 << 14, np.int64),
                         mult_n=np.full(256, 1 << 14, np.int64), epilogue="requantize",
                         shift=np.full(256, 24, np.int64), padding=(1, 1))
        cl = compile_layer(spec, cfg)
        reports[name] = estimate(cl.program, cfg)
    dense, sparse = reports["dense"], reports["sparse"]
    assert sparse.cycles.total_cycles <= 0.2 * dense.cycles.total_cycles
    assert sparse.cycles.dram_read_bytes["wgt"] < 0.2 * dense.cycles.dram_read_bytes["wgt"]
    assert sparse.energy["total_pj"] < dense.energy["total_pj"]
