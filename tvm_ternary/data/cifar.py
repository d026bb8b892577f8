"""CIFAR-10 from the binary batches in a user-given directory.

Files ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train) and ``test_batch.bin`` (test),
directly in the directory or in its ``cifar-10-batches-bin`` subdirectory (the layout the
official tarball unpacks to). Each record is 1 label byte then 3072 pixel bytes: the red,
green and blue 32x32 planes in row-major order.
"""

from pathlib import Path

import numpy as np

from ..errors import DataFileError

_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
_SUBDIR = "cifar-10-batches-bin"
_IMAGE_SHAPE = (3, 32, 32)
_RECORD = 1 + 3 * 32 * 32
_NUM_CLASSES = 10


def load_cifar10(root, split="train"):
    """Return ``(images uint8 [N, 3, 32, 32], labels int64 [N])`` for "train" or "test"."""
    if split not in _FILES:
        raise ValueError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
    batches = [_read_batch(_find(Path(root), name)) for name in _FILES[split]]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return images, labels


def _find(root, name):
    candidates = (root / name, root / _SUBDIR / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataFileError(f"CIFAR-10 file not found: {candidates[0]} (nor {candidates[1]})")


def _read_batch(path):
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataFileError(f"{path}: cannot read: {e}") from e
    if not data:
        raise DataFileError(f"{path}: file is empty")
    if len(data) % _RECORD:
        raise DataFileError(
            f"{path}: length {len(data)} is not a multiple of the {_RECORD}-byte record "
            f"(truncated or not a CIFAR-10 binary batch)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= _NUM_CLASSES:
        bad = int(np.argmax(labels >= _NUM_CLASSES))
        raise DataFileError(f"{path}: record {bad} has label {labels[bad]}, expected 0-9")
    return records[:, 1:].reshape(-1, *_IMAGE_SHAPE), labels
