"""``target="cpu"`` -> a TVM Target for this host.

Plain ``"llvm"`` is a generic x86-64 (no AVX2, no popcnt), and ``mcpu="native"`` falls back
to generic with TVM 0.27's triple, so the CPU is detected from /proc/cpuinfo and named.
The resulting dict (not the string) keys tuning logs and reports.
"""

from __future__ import annotations

import os
from pathlib import Path

# Intel by features, newest first: VMs often report a masked model number (seen here: an
# AMX-capable Xeon reporting model 167, a desktop part without AMX).
_INTEL = [("amx_tile", "sapphirerapids"), ("avx512_bf16", "cooperlake"),
          ("avx512_vnni", "cascadelake"), ("avx512f", "skylake-avx512")]
# AMD (family, first model, last model) -> LLVM CPU name; first match wins.
_AMD = [(25, 0x00, 0x0F, "znver3"), (25, 0x20, 0x5F, "znver3"), (25, 0x10, 0x1F, "znver4"),
        (25, 0x60, 0xAF, "znver4"), (26, 0x00, 0xFF, "znver5"), (23, 0x00, 0xFF, "znver2")]


# What LLVM may emit for each CPU name ``llvm_cpu`` produces: kernels are chosen by these,
# never by the host's /proc/cpuinfo, because the target (not the build machine) runs them.
_AVX2_CPUS = frozenset({"haswell", "broadwell", "skylake", "skylake-avx512", "cascadelake",
                        "cooperlake", "icelake-server", "sapphirerapids", "znver2", "znver3",
                        "znver4", "znver5"})
_VNNI512_CPUS = frozenset({"cascadelake", "cooperlake", "icelake-server", "sapphirerapids",
                           "znver4", "znver5"})
_VPOPCNTDQ_CPUS = frozenset({"icelake-server", "sapphirerapids", "znver4", "znver5"})


def cpu_features(target: dict) -> frozenset:
    """Instruction-set features a Target dict's ``mcpu`` guarantees: ``avx2``,
    ``avx512_vnni`` (with avx512bw), ``avx512_vpopcntdq``. Empty for non-llvm targets."""
    if target.get("kind") != "llvm":
        return frozenset()
    mcpu = target.get("mcpu")
    table = (("avx2", _AVX2_CPUS), ("avx512_vnni", _VNNI512_CPUS),
             ("avx512_vpopcntdq", _VPOPCNTDQ_CPUS))
    return frozenset(name for name, cpus in table if mcpu in cpus)


def cpu_info(text: str | None = None) -> dict:
    """Vendor, family, model and flags of the first CPU in /proc/cpuinfo."""
    if text is None:
        path = Path("/proc/cpuinfo")
        text = path.read_text() if path.exists() else ""
    info: dict = {"vendor": "", "family": -1, "model": -1, "flags": set()}
    for line in text.splitlines():
        if ":" not in line:
            if info["vendor"]:
                break  # end of the first processor block
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        if key == "vendor_id":
            info["vendor"] = value
        elif key == "cpu family":
            info["family"] = int(value)
        elif key == "model":
            info["model"] = int(value)
        elif key == "flags":
            info["flags"] = set(value.split())
    return info


def llvm_cpu(info: dict) -> str:
    flags = info["flags"]
    if info["vendor"] == "AuthenticAMD":
        for family, lo, hi, name in _AMD:
            if info["family"] == family and lo <= info["model"] <= hi:
                return name
    if info["vendor"] == "GenuineIntel":
        for flag, name in _INTEL:
            if flag in flags:
                return name
    if "avx2" in flags and "fma" in flags:
        return "haswell"
    return "x86-64"


def host_target(num_cores: int | None = None) -> dict:
    """The Target dict for this machine (explicit mcpu, thread count)."""
    info = cpu_info()
    return {"kind": "llvm", "mcpu": llvm_cpu(info), "num-cores": num_cores or os.cpu_count() or 1}


def emulated_target(mcpu: str, num_cores: int = 2) -> dict:
    """A Target dict for another CPU, ``mcpu``, whose code still runs on this host (to test
    or time one ISA path on a CPU that has more): for AMD ``znver*`` CPUs LLVM may use
    SSE4A (an ``insertq`` appeared in the dual AVX2 GEMV at batch 4), which Intel CPUs lack,
    so it is turned off where this host has none; the kernels' AVX2 code is the same."""
    target = {"kind": "llvm", "mcpu": mcpu, "num-cores": num_cores}
    if mcpu.startswith("znver") and "sse4a" not in cpu_info()["flags"]:
        target["mattr"] = ["-sse4a"]
    return target


def resolve(target) -> dict:
    """``"cpu"`` -> ``host_target()``; a dict is returned as is. Anything else is an error."""
    if target == "cpu":
        return host_target()
    if isinstance(target, dict) and target.get("kind") == "llvm":
        return dict(target)
    from tvm_ternary.errors import UnsupportedTargetError
    raise UnsupportedTargetError(
        f"target {target!r} is not supported; use 'cpu', an llvm Target dict, or 'vta' "
        "(tt.compile's accelerator target)")
