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
    assert s["dram_bytes"] == sum(alone.dram_read_bytes.values()) + sum(alone.dram_write_bytes.values())
    assert s["energy_pj"] == rep.energy["total_pj"]
    assert s["seconds"] == alone.total_cycles / 100e6  # default runs at 100 MHz


def test_estimate_accepts_an_encoded_stream():
    cfg = HwConfig.load("tiny")
    prog, _ = _layer(cfg)
    assert estimate(encode_stream(prog.insns), cfg).stats() == estimate(prog, cfg).stats()
