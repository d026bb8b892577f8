"""Host CPU detection names the CPU LLVM should tune for (never plain generic x86-64
when the machine has AVX2)."""

import pytest

from tvm_ternary import target
from tvm_ternary.errors import UnsupportedTargetError


def _cpuinfo(vendor, family, model, flags):
    return (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"flags\t\t: {flags}\n\nprocessor\t: 1\nvendor_id\t: other\n")


@pytest.mark.parametrize("vendor,family,model,flags,expected", [
    ("AuthenticAMD", 25, 1, "avx2 fma popcnt", "znver3"),
    ("AuthenticAMD", 23, 49, "avx2 fma", "znver2"),
    ("GenuineIntel", 6, 167, "avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile", "sapphirerapids"),
    ("GenuineIntel", 6, 85, "avx2 fma avx512f", "skylake-avx512"),
    ("GenuineIntel", 6, 60, "avx2 fma", "haswell"),
    ("GenuineIntel", 6, 30, "sse4_2", "x86-64"),
])
def test_llvm_cpu_from_cpuinfo(vendor, family, model, flags, expected):
    info = target.cpu_info(_cpuinfo(vendor, family, model, flags))
    assert info["vendor"] == vendor and info["family"] == family and info["model"] == model
    assert target.llvm_cpu(info) == expected


def test_cpu_resolves_to_an_explicit_llvm_target():
    t = target.resolve("cpu")
    assert t["kind"] == "llvm" and t["mcpu"] and t["num-cores"] >= 1


def test_unknown_target_is_named():
    with pytest.raises(UnsupportedTargetError, match="'gpu'"):
        target.resolve("gpu")


@pytest.mark.parametrize("mcpu,expected", [
    ("znver3", {"avx2"}),
    ("haswell", {"avx2"}),
    ("skylake-avx512", {"avx2"}),
    ("cascadelake", {"avx2", "avx512_vnni"}),
    ("sapphirerapids", {"avx2", "avx512_vnni", "avx512_vpopcntdq"}),
    ("znver4", {"avx2", "avx512_vnni", "avx512_vpopcntdq"}),
    ("x86-64", set()),
])
def test_cpu_features_follow_the_llvm_cpu_name(mcpu, expected):
    assert target.cpu_features({"kind": "llvm", "mcpu": mcpu}) == expected


def test_every_detected_cpu_name_has_a_feature_entry():
    # each name llvm_cpu can produce (except generic x86-64) must at least guarantee AVX2,
    # or the fast kernels would silently never be chosen on that CPU
    for vendor, family, model, flags in [("AuthenticAMD", 25, 1, "fpu"), ("AuthenticAMD", 25, 0x11, "fpu"),
                                         ("AuthenticAMD", 26, 0, "fpu"), ("AuthenticAMD", 23, 1, "fpu"),
                                         ("GenuineIntel", 6, 1, "amx_tile"),
                                         ("GenuineIntel", 6, 1, "avx512_bf16"),
                                         ("GenuineIntel", 6, 1, "avx512_vnni"),
                                         ("GenuineIntel", 6, 1, "avx512f"),
                                         ("GenuineIntel", 6, 1, "avx2 fma")]:
        name = target.llvm_cpu(target.cpu_info(_cpuinfo(vendor, family, model, flags)))
        assert "avx2" in target.cpu_features({"kind": "llvm", "mcpu": name}), name


def test_host_features_agree_with_cpuinfo():
    flags = target.cpu_info()["flags"]
    feats = target.cpu_features(target.host_target())
    assert ("avx2" in feats) <= ("avx2" in flags)
    assert ("avx512_vnni" in feats) <= ("avx512_vnni" in flags and "avx512bw" in flags)


def test_emulated_znver3_runs_on_this_host(monkeypatch):
    """SSE4A is turned off for an AMD mcpu exactly when the host lacks it."""
    for flags, want in ((set(), ["-sse4a"]), ({"sse4a"}, None)):
        monkeypatch.setattr(target, "cpu_info", lambda flags=flags: {"flags": flags})
        t = target.emulated_target("znver3", 2)
        assert (t["mcpu"], t["num-cores"], t.get("mattr")) == ("znver3", 2, want)
    assert "mattr" not in target.emulated_target("haswell")
