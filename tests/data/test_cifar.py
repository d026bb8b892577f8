import numpy as np
import pytest

from tvm_ternary.data import load_cifar10
from tvm_ternary.errors import DataFileError

RECORD = 3073


def batch_bytes(images, labels):
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
    return records.astype(np.uint8).tobytes()


def write_batches(directory, names, n=2, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    all_images, all_labels = [], []
    for name in names:
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        (directory / name).write_bytes(batch_bytes(images, labels))
        all_images.append(images)
        all_labels.append(labels)
    return np.concatenate(all_images), np.concatenate(all_labels)


TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]


@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-bin"])
def test_train_reads_all_batches_in_order(tmp_path, subdir):
    images, labels = write_batches(tmp_path / subdir, TRAIN, n=2)
    got_images, got_labels = load_cifar10(tmp_path, "train")
    assert got_images.dtype == np.uint8 and got_images.shape == (10, 3, 32, 32)
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_test_split_and_channel_layout(tmp_path):
    image = np.zeros((1, 3, 32, 32), np.uint8)
    image[0, 0] = 10  # red plane
    image[0, 2, 31, 31] = 7  # last blue pixel
    (tmp_path / "test_batch.bin").write_bytes(batch_bytes(image, np.array([9])))
    got_images, got_labels = load_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(got_images, image)
    assert got_labels.tolist() == [9]


def test_missing_file_names_it(tmp_path):
    write_batches(tmp_path, TRAIN[:4])
    with pytest.raises(DataFileError, match="data_batch_5.bin"):
        load_cifar10(tmp_path, "train")
    with pytest.raises(DataFileError, match="test_batch.bin"):
        load_cifar10(tmp_path, "test")


def test_truncated_file(tmp_path):
    write_batches(tmp_path, ["test_batch.bin"], n=2)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataFileError, match=f"test_batch.bin: length {2 * RECORD - 5} is not a multiple"):
        load_cifar10(tmp_path, "test")


def test_wrong_record_length(tmp_path):
    # 32x32 grayscale records (1 + 1024 bytes) are not CIFAR-10 records.
    (tmp_path / "test_batch.bin").write_bytes(bytes(3 * 1025))
    with pytest.raises(DataFileError, match="test_batch.bin: .*not a multiple of the 3073-byte record"):
        load_cifar10(tmp_path, "test")


def test_empty_file(tmp_path):
    (tmp_path / "test_batch.bin").write_bytes(b"")
    with pytest.raises(DataFileError, match="test_batch.bin: file is empty"):
        load_cifar10(tmp_path, "test")


def test_label_out_of_range(tmp_path):
    images = np.zeros((3, 3, 32, 32), np.uint8)
    (tmp_path / "test_batch.bin").write_bytes(batch_bytes(images, np.array([0, 1, 10])))
    with pytest.raises(DataFileError, match="test_batch.bin: record 2 has label 10"):
        load_cifar10(tmp_path, "test")


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_cifar10(tmp_path, "validation")
