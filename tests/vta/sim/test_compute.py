"""GEMM's two execution paths agree on arbitrary block lists (duplicates, aliasing loops);
the general path is itself checked against the reference in test_fsim.py."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vta_ext import HwConfig
from vta_ext.isa import Gemm
from vta_ext.sim import compute
from vta_ext.sim.state import InsnStats, Machine


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["tiny", "int8"]), n_uops=st.integers(1, 30), it=st.tuples(
       st.integers(1, 5), st.integers(1, 5)), fac=st.tuples(*[st.integers(0, 3)] * 4),
       dual=st.booleans(), seed=st.integers(0, 2**31))
def test_by_uop_path_equals_per_execution_path(name, n_uops, it, fac, dual, seed):
    cfg = HwConfig.load(name)
    dual = dual and cfg.dual_scale
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(2):
        m = Machine(cfg, np.zeros(0, np.uint8))
        r = np.random.default_rng(seed)
        m.inp[:] = r.integers(-128, 128, m.inp.shape)
        m.wgt[:] = r.integers(-1, 2, m.wgt.shape) if cfg.wgt_bits == 2 else r.integers(-128, 128, m.wgt.shape)
        for k in m.written:
            m.written[k][:] = True
        states.append(m)
    uops = np.stack([rng.integers(0, 6, n_uops) * (2 if dual else 1),  # repeated destinations
                     rng.integers(0, 20, n_uops), rng.integers(0, cfg.wgt_depth, n_uops)], axis=1)
    for m in states:
        m.uop[:n_uops] = uops
    insn = Gemm(uop_bgn=0, uop_end=n_uops, iter_out=it[0], iter_in=it[1], dst_factor_out=fac[0] * 2,
                dst_factor_in=fac[1] * 2, src_factor_out=fac[2], src_factor_in=fac[3], dual=dual)
    compute.gemm(states[0], insn, InsnStats(0, "GEMM", "compute"))
    dst, src, wgt = compute._loop_indices(states[1], insn, "GEMM")
    signs = (1, -1) if dual else (None,)
    compute._gemm_general(states[1], dst, src, wgt, signs, np.float64)
    assert (states[0].acc == states[1].acc).all()
    assert states[0].acc.any()
