"""HwConfig: the single source of the accelerator's parameters.

A JSON file in ``vta_ext/configs/`` holds the independent knobs only; every derived size
(bytes per block, buffer depths in blocks) is a property here, so the compiler, the
simulators, the RTL generator and the FPGA flow cannot disagree. Variants are made with
``dataclasses.replace`` and are validated again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tvm_ternary.errors import HwConfigError

from . import isa

CONFIG_DIR = Path(__file__).parent / "configs"

ACC_BITS = 32  # accumulators are int32 everywhere (numeric contract); not a knob
# One per-channel parameter record in the PAR buffer (layout in docs/isa.md):
# bias int64, t_lo int64, t_hi int64, Mp uint16, Mn uint16, shift uint8, 3 reserved bytes.
PAR_CHANNEL_BYTES = 32

ACT_BITS_CHOICES = (8, 2)
WGT_BITS_CHOICES = (2, 8)
# A 2-bit row of a block is packed 4 trits per byte, so any 2-bit row needs >= 4 elements.
TRITS_PER_BYTE = 4


def _is_pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


@dataclass(frozen=True)
class HwConfig:
    """One accelerator configuration. Sizes are in bytes, blocks are ``batch x block_in``
    (input), ``block_out x block_in`` (weight) and ``batch x block_out`` (accumulator)."""

    name: str
    batch: int
    block_in: int
    block_out: int
    act_bits: int
    wgt_bits: int
    uop_buffer_bytes: int
    inp_buffer_bytes: int
    wgt_buffer_bytes: int
    acc_buffer_bytes: int
    par_buffer_bytes: int
    clock_mhz: float
    dram_bus_bytes: int = 8
    zero_block_skip: bool = False
    ternary_act: bool = False
    dual_scale: bool = False

    def __post_init__(self):
        self._check_types()
        self._check_shape()
        self._check_buffers()
        self._check_features()
        isa.check_config(self)  # every address field of the ISA must reach every buffer entry

    # ------------------------------------------------------------------ loading / saving

    @classmethod
    def load(cls, name_or_path) -> HwConfig:
        """Load ``vta_ext/configs/<name>.json`` or a JSON file at a path."""
        path = Path(name_or_path)
        if path.suffix != ".json":
            path = CONFIG_DIR / f"{name_or_path}.json"
            if not path.is_file():
                known = ", ".join(available())
                raise HwConfigError(f"unknown HwConfig {name_or_path!r}; known: {known}")
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise HwConfigError(f"{path}: cannot read HwConfig ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise HwConfigError(f"{path}: not valid JSON ({err})") from None
        try:
            return cls.from_dict(data)
        except HwConfigError as err:
            raise HwConfigError(f"{path}: {err}") from None

    @classmethod
    def from_dict(cls, data) -> HwConfig:
        if not isinstance(data, dict):
            raise HwConfigError(f"HwConfig JSON must be an object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise HwConfigError(f"unknown HwConfig field(s) {unknown}; fields: {sorted(fields)}")
        missing = [n for n, f in fields.items()
                   if n not in data and f.default is dataclasses.MISSING]
        if missing:
            raise HwConfigError(f"HwConfig is missing field(s) {missing}")
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace; the input of :attr:`hash`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON: reports and RTL build caches key on it."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    # ------------------------------------------------------------------ derived sizes

    @property
    def inp_block_bytes(self) -> int:
        return self.batch * self.block_in * self.act_bits // 8

    @property
    def wgt_block_bytes(self) -> int:
        return self.block_out * self.block_in * self.wgt_bits // 8

    @property
    def acc_block_bytes(self) -> int:
        return self.batch * self.block_out * ACC_BITS // 8

    @property
    def out_block_bytes(self) -> int:
        """A stored output block: ``batch x block_out`` activations at ``act_bits``."""
        return self.batch * self.block_out * self.act_bits // 8

    @property
    def par_block_bytes(self) -> int:
        return self.block_out * PAR_CHANNEL_BYTES

    @property
    def uop_depth(self) -> int:
        return self.uop_buffer_bytes // isa.UOP_BYTES

    @property
    def inp_depth(self) -> int:
        return self.inp_buffer_bytes // self.inp_block_bytes

    @property
    def wgt_depth(self) -> int:
        return self.wgt_buffer_bytes // self.wgt_block_bytes

    @property
    def acc_depth(self) -> int:
        return self.acc_buffer_bytes // self.acc_block_bytes

    @property
    def par_depth(self) -> int:
        return self.par_buffer_bytes // self.par_block_bytes

    @property
    def macs_per_cycle(self) -> int:
        return self.batch * self.block_in * self.block_out

    # ------------------------------------------------------------------ validation

    def _check_types(self):
        if not isinstance(self.name, str) or not self.name:
            raise HwConfigError(f"HwConfig.name must be a non-empty string, got {self.name!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                raise HwConfigError(f"HwConfig.{f.name} must be an integer, got {v!r}")
            if f.type == "bool" and not isinstance(v, bool):
                raise HwConfigError(f"HwConfig.{f.name} must be true or false, got {v!r}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) \
                or not self.clock_mhz > 0:
            raise HwConfigError(f"HwConfig.clock_mhz must be a number > 0, got {self.clock_mhz!r}")

    def _check_shape(self):
        for field in ("batch", "block_in", "block_out", "dram_bus_bytes"):
            v = getattr(self, field)
            if not _is_pow2(v):
                raise HwConfigError(f"HwConfig.{field} must be a power of two >= 1, got {v}")
        if self.act_bits not in ACT_BITS_CHOICES:
            raise HwConfigError(f"HwConfig.act_bits must be one of {ACT_BITS_CHOICES}, got {self.act_bits}")
        if self.wgt_bits not in WGT_BITS_CHOICES:
            raise HwConfigError(f"HwConfig.wgt_bits must be one of {WGT_BITS_CHOICES}, got {self.wgt_bits}")
        if 2 in (self.act_bits, self.wgt_bits) and self.block_in < TRITS_PER_BYTE:
            raise HwConfigError(f"HwConfig.block_in must be >= {TRITS_PER_BYTE} with 2-bit weights or "
                                f"activations (a packed row is whole bytes), got {self.block_in}")
        if self.act_bits == 2 and self.block_out < TRITS_PER_BYTE:
            raise HwConfigError(f"HwConfig.block_out must be >= {TRITS_PER_BYTE} with 2-bit activations "
                                f"(a stored output row is whole bytes), got {self.block_out}")

    def _check_buffers(self):
        blocks = {"uop_buffer_bytes": isa.UOP_BYTES, "inp_buffer_bytes": self.inp_block_bytes,
                  "wgt_buffer_bytes": self.wgt_block_bytes, "acc_buffer_bytes": self.acc_block_bytes,
                  "par_buffer_bytes": self.par_block_bytes}
        for field, block in blocks.items():
            v = getattr(self, field)
            if not _is_pow2(v):
                raise HwConfigError(f"HwConfig.{field} must be a power of two (SRAM depth), got {v}")
            if v < block:
                raise HwConfigError(f"HwConfig.{field} = {v} is smaller than one block ({block} bytes)")
        if self.acc_depth < 2 and self.dual_scale:
            raise HwConfigError("HwConfig.acc_buffer_bytes must hold 2 blocks with dual_scale "
                                "(acc_p and acc_n are a pair of entries)")

    def _check_features(self):
        if self.act_bits == 2 and not self.ternary_act:
            raise HwConfigError("HwConfig.ternary_act must be true when act_bits is 2 "
                                "(only the THRESH op produces 2-bit activations)")
        if self.dual_scale and self.wgt_bits != 2:
            raise HwConfigError("HwConfig.dual_scale needs wgt_bits = 2 (dual accumulators split "
                                "ternary weights into their +1 and -1 positions)")


def available() -> list[str]:
    """Names of the packaged configurations."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
