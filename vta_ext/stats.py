"""``cm.stats`` of a target="vta" model: accelerator cost per layer and in total, and what
stayed on the host (with the reason for each ternary layer).

Costs are static (the cycle model reads the program, not the data), so they are known at
compile time and hold for every call with the compiled input shapes.
"""

from __future__ import annotations

import math

from .compiler.layer import HOST_EPILOGUE
from .compiler.partition import Partitioned
from .config import HwConfig
from .runtime import Session


def _fills_core(spec, hw: HwConfig) -> bool:
    """DESIGN leaves ResNet-18's 3-channel first conv out of the mean utilization: a layer
    whose reduction per output (channels per group) is below block_in cannot fill the core."""
    if spec.kind != "conv2d":
        return True
    return spec.input_shape[1] // spec.groups >= hw.block_in


def layer_rows(parts: Partitioned, session: Session) -> list[dict]:
    rows = []
    for p in parts.placements:
        row = {"name": p.name, "op": p.op, "placement": "accelerator" if p.on_accelerator else "host",
               "macs": p.macs}
        if not p.on_accelerator:
            row["reason"] = p.reason
        else:
            cost = session.region(p.packed_func).cost
            if cost is not None:
                row.update(cycles=cost.cycles, useful_macs=cost.useful_macs,
                           gemm_utilization=cost.gemm_utilization, dram_bytes=cost.dram_bytes,
                           energy_pj=cost.energy_pj)
            if p.spec.stores_accumulators:
                row["host_epilogue"] = host_epilogue(p.spec)
            if p.spec.has_residual:
                row["residual_input"] = True
        rows.append(row)
    return rows


def host_epilogue(spec) -> dict:
    """The host's share of an offloaded float-output layer: per output element, an int64
    multiply-add per accumulator and a float64 multiply-add (not in cycles or energy_pj,
    which are the accelerator's)."""
    return {"op": HOST_EPILOGUE, "elements": math.prod(spec.output_shape())}


def _totals(parts: Partitioned, session: Session, hw: HwConfig) -> dict:
    offloaded = [p for p in parts.placements if p.on_accelerator]
    costs = [session.region(p.packed_func).cost for p in offloaded]
    if not offloaded or any(c is None for c in costs):
        why = ("no layer runs on the accelerator" if not offloaded else
               f"backend {session.backend.name!r} runs no accelerator program")
        return {"cycles": None, "gemm_utilization": None, "gemm_utilization_mean": None,
                "dram_bytes": None, "energy_pj": None, "seconds": None, "cost_note": why}
    cycles = sum(c.cycles for c in costs)
    useful = sum(c.useful_macs for c in costs)
    in_mean = [c.gemm_utilization for p, c in zip(offloaded, costs) if _fills_core(p.spec, hw)]
    energies = [c.energy_pj for c in costs]
    return {
        "cycles": cycles,
        "seconds": cycles / (hw.clock_mhz * 1e6),
        "gemm_utilization": useful / (hw.macs_per_cycle * cycles) if cycles else 0.0,
        "gemm_utilization_mean": sum(in_mean) / len(in_mean) if in_mean else None,
        "utilization_mean_excludes": [p.name for p in offloaded if not _fills_core(p.spec, hw)],
        "dram_bytes": sum(c.dram_bytes for c in costs),
        "energy_pj": None if any(e is None for e in energies) else sum(energies),
    }


def _mac_fraction(parts: Partitioned) -> float | None:
    total = sum(p.macs for p in parts.placements)
    return sum(p.macs for p in parts.placements if p.on_accelerator) / total if total else None


def model_stats(parts: Partitioned, session: Session, hw: HwConfig, state) -> dict:
    """Everything ``cm.stats`` reports for a target="vta" model."""
    out = {"backend": session.backend.name, "hw": hw.name, "hw_hash": hw.hash,
           "layers": layer_rows(parts, session),
           "accelerator_layers": [p.name for p in parts.placements if p.on_accelerator],
           # the VM's function names (as cm.profile lists them) -> layers
           "packed_functions": {p.packed_func: p.name for p in parts.placements if p.on_accelerator},
           "host_layers": {p.name: p.reason for p in parts.host_layers},
           # offloaded layers the host finishes (float outputs): host work, not hidden
           "host_epilogues": {p.name: host_epilogue(p.spec) for p in parts.placements
                              if p.on_accelerator and p.spec.stores_accumulators},
           # the share of the model's ternary MACs the accelerator runs
           "accelerator_mac_fraction": _mac_fraction(parts),
           "host_ops": dict(parts.host_ops),
           "host_kernels": list(state.kernels), "host_generic": list(state.generic)}
    out.update(_totals(parts, session, hw))
    return out


def run_stats(session: Session) -> dict:
    """What the calls so far did: per offloaded layer, its calls and the host seconds its
    backend spent (for fsim: simulation time, not accelerator time)."""
    return {"backend_calls": {r.spec.name: r.calls for r in session.regions},
            "backend_seconds": {r.spec.name: r.backend_seconds for r in session.regions}}
