import numpy as np
import pytest

from tvm_ternary.data import load_digits_split

N_DIGITS = 1797


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_shapes_dtypes_and_range(split):
    assert split["x_train"].shape == (1347, 1, 8, 8)
    assert split["x_test"].shape == (450, 1, 8, 8)
    for part in ("train", "test"):
        x, y = split[f"x_{part}"], split[f"y_{part}"]
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert len(x) == len(y)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert split["x_train"].max() == 1.0  # scaled by 16, not by the data's own max


def test_split_is_stratified(split):
    train = np.bincount(split["y_train"], minlength=10)
    test = np.bincount(split["y_test"], minlength=10)
    assert train.sum() + test.sum() == N_DIGITS
    # Every class keeps its share of the test set to within one image.
    assert np.all(np.abs(test - (train + test) * 0.25) <= 1)


def test_split_is_fixed_and_disjoint(split):
    again = load_digits_split()
    for key in split:
        np.testing.assert_array_equal(split[key], again[key])
    train_rows = {x.tobytes() for x in split["x_train"]}
    test_rows = {x.tobytes() for x in split["x_test"]}
    # The 1797 digits images are all distinct, so a clean split shares none of them.
    assert not train_rows & test_rows
    assert len(train_rows | test_rows) == N_DIGITS


def test_split_seed_and_fraction(split):
    other = load_digits_split(split_seed=1)
    assert not np.array_equal(other["y_test"], split["y_test"])
    assert len(load_digits_split(test_fraction=0.5)["y_test"]) == 899


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=fraction)
