"""An accelerator program: an instruction list and the DRAM image it runs on.

The DRAM image is one byte array with named regions (weights, inputs, micro-ops, outputs,
...). LOAD/STORE address DRAM in elements of their memory type (docs/isa.md), so a region
that a LOAD or STORE names must start at a multiple of that element size: ``add`` aligns.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvm_ternary.errors import IsaError

from . import isa

PROGRAM_FORMAT = "tternary-vta-program/1"


@dataclass(frozen=True)
class Region:
    name: str
    offset: int  # bytes
    size: int  # bytes

    def element(self, elem_bytes: int) -> int:
        """Element index of the region start for a memory type of ``elem_bytes``."""
        if self.offset % elem_bytes:
            raise ValueError(f"region {self.name!r} at byte {self.offset} is not aligned to "
                             f"{elem_bytes}-byte elements")
        return self.offset // elem_bytes


class DramImage:
    """A growable byte image with named, aligned regions."""

    def __init__(self):
        self.data = np.zeros(0, dtype=np.uint8)
        self.regions: dict[str, Region] = {}

    def add(self, name: str, data, align: int = 64) -> Region:
        """Append ``data`` (bytes or an array, taken as raw bytes) at an ``align``-byte
        boundary; returns its region."""
        raw = np.frombuffer(bytes(data), dtype=np.uint8) if isinstance(data, (bytes, bytearray)) \
            else np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        return self._place(name, raw, align)

    def alloc(self, name: str, size: int, align: int = 64) -> Region:
        """Append ``size`` zero bytes (an output region)."""
        return self._place(name, np.zeros(size, dtype=np.uint8), align)

    def _place(self, name: str, raw: np.ndarray, align: int) -> Region:
        if name in self.regions:
            raise ValueError(f"DRAM region {name!r} already exists")
        if align < 1:
            raise ValueError(f"alignment must be >= 1, got {align}")
        offset = -(-self.data.size // align) * align
        grown = np.zeros(offset + raw.size, dtype=np.uint8)
        grown[:self.data.size] = self.data
        grown[offset:] = raw
        self.data = grown
        region = Region(name, offset, int(raw.size))
        self.regions[name] = region
        return region

    def read(self, name: str) -> np.ndarray:
        """A copy of the region's bytes."""
        r = self.regions[name]
        return self.data[r.offset:r.offset + r.size].copy()

    def copy(self) -> DramImage:
        other = DramImage()
        other.data = self.data.copy()
        other.regions = dict(self.regions)
        return other


@dataclass
class Program:
    insns: list = field(default_factory=list)
    dram: DramImage = field(default_factory=DramImage)

    def stream(self) -> bytes:
        """The encoded instruction stream (16 bytes per instruction)."""
        return isa.encode_stream(self.insns)

    def save(self, path) -> None:
        """One ``.npz`` file: the instruction stream, the DRAM bytes and the regions."""
        meta = {"format": PROGRAM_FORMAT,
                "regions": {n: [r.offset, r.size] for n, r in self.dram.regions.items()}}
        np.savez(path, insns=np.frombuffer(self.stream(), dtype=np.uint8), dram=self.dram.data,
                 meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))

    @classmethod
    def load(cls, path) -> Program:
        """Inverse of :meth:`save`; IsaError naming the file if it is not a program file."""
        path = Path(path)
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
                insns, data, meta = z["insns"], z["dram"], json.loads(bytes(z["meta"]).decode())
        except OSError as err:
            raise IsaError(f"{path}: cannot read program file ({err.strerror or err})") from None
        except (ValueError, KeyError, UnicodeDecodeError) as err:
            raise IsaError(f"{path}: not a program file ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != PROGRAM_FORMAT:
            raise IsaError(f"{path}: not a {PROGRAM_FORMAT} file")
        try:
            decoded = isa.decode_stream(insns.tobytes())
        except IsaError as err:
            raise IsaError(f"{path}: {err}") from None
        dram = DramImage()
        dram.data = np.asarray(data, dtype=np.uint8).copy()
        for name, (offset, size) in meta["regions"].items():
            if offset < 0 or offset + size > dram.data.size:
                raise IsaError(f"{path}: region {name!r} lies outside the DRAM image")
            dram.regions[name] = Region(name, int(offset), int(size))
        return cls(insns=decoded, dram=dram)
