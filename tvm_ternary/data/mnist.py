"""MNIST from the standard IDX files in a user-given directory.

Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each possibly gzip-compressed with a ``.gz`` suffix.
IDX layout: big-endian uint32 magic ``0x0000 08 <ndim>`` (0x08 = unsigned byte), then
``ndim`` big-endian uint32 dimensions, then the bytes in C order.
"""

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataFileError

_PREFIX = {"train": "train", "test": "t10k"}
_IMAGE_MAGIC = 0x00000803
_LABEL_MAGIC = 0x00000801
_SIDE = 28
_NUM_CLASSES = 10


def load_mnist(root, split="train"):
    """Return ``(images uint8 [N, 28, 28], labels int64 [N])`` for ``split`` "train" or "test"."""
    if split not in _PREFIX:
        raise ValueError(f"MNIST split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images_path = _find(root, f"{_PREFIX[split]}-images-idx3-ubyte")
    labels_path = _find(root, f"{_PREFIX[split]}-labels-idx1-ubyte")
    images = _read_idx(images_path, _IMAGE_MAGIC)
    labels = _read_idx(labels_path, _LABEL_MAGIC)
    if images.shape[1:] != (_SIDE, _SIDE):
        raise DataFileError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(labels) != len(images):
        raise DataFileError(
            f"{labels_path}: has {len(labels)} labels but {images_path.name} has {len(images)} images"
        )
    if labels.size and labels.max() >= _NUM_CLASSES:
        bad = int(np.argmax(labels >= _NUM_CLASSES))
        raise DataFileError(f"{labels_path}: label {labels[bad]} at index {bad} is not a digit 0-9")
    return images, labels.astype(np.int64)


def _find(root, name):
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataFileError(f"MNIST file not found: {root / name} (or {name}.gz)")


def _read_idx(path, magic):
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header_len = 4 * (1 + ndim)
    if len(data) < header_len:
        raise DataFileError(f"{path}: truncated IDX header ({len(data)} bytes, need {header_len})")
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise DataFileError(f"{path}: bad IDX magic 0x{int(header[0]):08x}, expected 0x{magic:08x}")
    dims = tuple(int(d) for d in header[1:])
    expected_len = header_len + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected_len:
        what = "truncated" if len(data) < expected_len else "has trailing bytes"
        raise DataFileError(
            f"{path}: {what}: dimensions {dims} need {expected_len} bytes, file has {len(data)}"
        )
    # Copy: frombuffer views the read-only bytes object, and callers may write to the result.
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def _read_bytes(path):
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataFileError(f"{path}: cannot read: {e}") from e
