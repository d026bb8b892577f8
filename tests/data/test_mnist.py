import gzip
import struct

import numpy as np
import pytest

from tvm_ternary.data import load_mnist
from tvm_ternary.errors import DataFileError

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


def idx_bytes(array, magic):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root, n=3, prefix="train", compress=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    for name, data in [
        (f"{prefix}-images-idx3-ubyte", idx_bytes(images, 0x803)),
        (f"{prefix}-labels-idx1-ubyte", idx_bytes(labels, 0x801)),
    ]:
        if compress:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("split, prefix", [("train", "train"), ("test", "t10k")])
@pytest.mark.parametrize("compress", [False, True])
def test_reads_back_what_was_written(tmp_path, split, prefix, compress):
    images, labels = write_mnist(tmp_path, n=4, prefix=prefix, compress=compress)
    got_images, got_labels = load_mnist(tmp_path, split=split)
    assert got_images.dtype == np.uint8 and got_images.shape == (4, 28, 28)
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # the result is an ordinary writeable array


def test_missing_file_names_it(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / LABELS).unlink()
    with pytest.raises(DataFileError, match=LABELS):
        load_mnist(tmp_path)
    with pytest.raises(DataFileError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, split="test")


@pytest.mark.parametrize("name", [IMAGES, LABELS])
def test_truncated_file(tmp_path, name):
    write_mnist(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataFileError, match=f"{name}: truncated"):
        load_mnist(tmp_path)


def test_truncated_header(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / IMAGES).write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataFileError, match=f"{IMAGES}: truncated IDX header"):
        load_mnist(tmp_path)


def test_trailing_bytes(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / LABELS
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataFileError, match=f"{LABELS}: has trailing bytes"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("name, wrong", [(IMAGES, 0x801), (LABELS, 0x803), (IMAGES, 0x0D03)])
def test_bad_magic(tmp_path, name, wrong):
    write_mnist(tmp_path)
    path = tmp_path / name
    path.write_bytes(struct.pack(">I", wrong) + path.read_bytes()[4:])
    with pytest.raises(DataFileError, match=f"{name}: bad IDX magic 0x{wrong:08x}"):
        load_mnist(tmp_path)


def test_wrong_image_size(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / IMAGES).write_bytes(idx_bytes(np.zeros((3, 32, 32)), 0x803))
    with pytest.raises(DataFileError, match=f"{IMAGES}: images are 32x32"):
        load_mnist(tmp_path)


def test_count_mismatch(tmp_path):
    write_mnist(tmp_path, n=3)
    (tmp_path / LABELS).write_bytes(idx_bytes(np.zeros(2), 0x801))
    with pytest.raises(DataFileError, match=f"{LABELS}: has 2 labels but {IMAGES} has 3 images"):
        load_mnist(tmp_path)


def test_label_out_of_range(tmp_path):
    write_mnist(tmp_path, n=3)
    (tmp_path / LABELS).write_bytes(idx_bytes(np.array([1, 12, 3]), 0x801))
    with pytest.raises(DataFileError, match=f"{LABELS}: label 12 at index 1"):
        load_mnist(tmp_path)


def test_corrupt_gzip(tmp_path):
    write_mnist(tmp_path, compress=True)
    (tmp_path / f"{IMAGES}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataFileError, match=f"{IMAGES}.gz: cannot read"):
        load_mnist(tmp_path)


def test_truncated_gzip(tmp_path):
    write_mnist(tmp_path, compress=True)
    path = tmp_path / f"{LABELS}.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFileError, match=f"{LABELS}.gz: cannot read"):
        load_mnist(tmp_path)


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_mnist(tmp_path, split="val")
