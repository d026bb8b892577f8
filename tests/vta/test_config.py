"""HwConfig: packaged configs, derived sizes (hand-worked), hash, and every validation path."""

import dataclasses
import hashlib
import json

import pytest

from tvm_ternary.errors import HwConfigError
from vta_ext import HwConfig
from vta_ext.config import available

PACKAGED = ["default", "int8", "large", "tiny", "tiny_tact"]


def test_packaged_configs_load_and_import_path_works():
    assert set(PACKAGED) <= set(available())
    for name in PACKAGED:
        assert HwConfig.load(name).name == name


def test_default_sizes_hand_worked():
    cfg = HwConfig.load("default")
    # 1 x 16 int8 inputs = 16 B; 16 x 16 trits at 2 bits = 64 B; 1 x 16 int32 = 64 B
    assert (cfg.inp_block_bytes, cfg.wgt_block_bytes, cfg.acc_block_bytes) == (16, 64, 64)
    assert (cfg.inp_depth, cfg.wgt_depth, cfg.acc_depth) == (32768 // 16, 262144 // 64, 131072 // 64)
    assert cfg.uop_depth == 32768 // 8
    assert cfg.par_block_bytes == 16 * 32 and cfg.par_depth == 32768 // 512
    assert cfg.out_block_bytes == 16 and cfg.macs_per_cycle == 256


def test_ternary_weight_buffer_holds_four_times_int8():
    t, i8 = HwConfig.load("default"), HwConfig.load("int8")
    assert t.wgt_buffer_bytes == i8.wgt_buffer_bytes
    assert t.wgt_depth == 4 * i8.wgt_depth


def test_tiny_tact_packs_activations_at_two_bits():
    cfg = HwConfig.load("tiny_tact")
    assert cfg.inp_block_bytes == cfg.batch * cfg.block_in // 4
    assert cfg.out_block_bytes == cfg.batch * cfg.block_out // 4


def test_hash_is_sha256_of_canonical_json_and_stable():
    cfg = HwConfig.load("default")
    canonical = json.dumps(json.loads(cfg.to_json()), sort_keys=True, separators=(",", ":"))
    assert cfg.hash == hashlib.sha256(canonical.encode()).hexdigest()
    assert HwConfig.load("default").hash == cfg.hash
    assert dataclasses.replace(cfg, clock_mhz=150.0).hash != cfg.hash
    assert HwConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_load_by_path(tmp_path):
    cfg = dataclasses.replace(HwConfig.load("tiny"), name="mine")
    p = tmp_path / "mine.json"
    p.write_text(cfg.to_json())
    assert HwConfig.load(str(p)) == cfg


def _with(**changes):
    data = HwConfig.load("default").to_dict()
    data.update(changes)
    return data


@pytest.mark.parametrize("changes, words", [
    ({"batch": 3}, ["batch", "power of two"]),
    ({"block_in": 12}, ["block_in", "power of two"]),
    ({"block_out": 0}, ["block_out", "power of two"]),
    ({"dram_bus_bytes": 6}, ["dram_bus_bytes"]),
    ({"act_bits": 4}, ["act_bits", "(8, 2)"]),
    ({"wgt_bits": 3}, ["wgt_bits"]),
    ({"inp_buffer_bytes": 3000}, ["inp_buffer_bytes", "power of two"]),
    ({"wgt_buffer_bytes": 32}, ["wgt_buffer_bytes", "smaller than one block", "64"]),
    ({"par_buffer_bytes": 256}, ["par_buffer_bytes", "512"]),
    ({"uop_buffer_bytes": 4}, ["uop_buffer_bytes"]),
    ({"clock_mhz": 0}, ["clock_mhz"]),
    ({"batch": "1"}, ["batch", "integer"]),
    ({"block_in": True}, ["block_in", "integer"]),
    ({"dual_scale": 1}, ["dual_scale", "true or false"]),
    ({"name": ""}, ["name"]),
    ({"act_bits": 2, "ternary_act": False}, ["ternary_act", "act_bits"]),
    ({"wgt_bits": 8, "dual_scale": True}, ["dual_scale", "wgt_bits"]),
    ({"block_in": 2, "block_out": 2}, ["block_in", ">= 4"]),
    ({"act_bits": 2, "block_out": 2, "block_in": 4}, ["block_out", ">= 4"]),
    # 2 MiB of 16-byte input blocks = 131072 entries: beyond the 16-bit sram_base
    ({"inp_buffer_bytes": 2**21}, ["inp_buffer_bytes", "sram_base", "16 bits"]),
    # 2**17 bytes of uops = 16384 micro-ops: beyond the 13-bit uop_bgn
    ({"uop_buffer_bytes": 2**17}, ["uop_buffer_bytes", "uop_bgn"]),
])
def test_invalid_field_is_named(changes, words):
    with pytest.raises(HwConfigError) as err:
        HwConfig.from_dict(_with(**changes))
    for w in words:
        assert w in str(err.value)


def test_unknown_and_missing_fields():
    with pytest.raises(HwConfigError, match="unknown HwConfig field.*'colour'"):
        HwConfig.from_dict(_with(colour="red"))
    data = _with()
    del data["block_in"]
    with pytest.raises(HwConfigError, match="missing field.*block_in"):
        HwConfig.from_dict(data)
    with pytest.raises(HwConfigError, match="must be an object"):
        HwConfig.from_dict([1, 2])


def test_defaults_apply():
    data = _with()
    for k in ("dram_bus_bytes", "zero_block_skip", "ternary_act", "dual_scale"):
        del data[k]
    cfg = HwConfig.from_dict(data)
    assert cfg.dram_bus_bytes == 8 and not cfg.dual_scale


def test_unknown_name_bad_json_and_replace_revalidates(tmp_path):
    with pytest.raises(HwConfigError, match="unknown HwConfig 'nope'.*default"):
        HwConfig.load("nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HwConfigError, match="bad.json.*not valid JSON"):
        HwConfig.load(str(bad))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(_with(batch=5)))
    with pytest.raises(HwConfigError, match="wrong.json.*batch"):
        HwConfig.load(str(wrong))
    with pytest.raises(HwConfigError, match="missing.json.*cannot read"):
        HwConfig.load(str(tmp_path / "missing.json"))
    with pytest.raises(HwConfigError, match="block_out"):
        dataclasses.replace(HwConfig.load("default"), block_out=24)
