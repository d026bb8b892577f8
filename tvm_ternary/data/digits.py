"""scikit-learn's 8x8 digits with one fixed stratified train/test split.

The split does not depend on the training seed: experiments report the median over
training seeds, and that median only means something if every seed sees the same test set
(it is small: one test image is about 0.2 points of accuracy).
"""

import numpy as np

_MAX_PIXEL = 16.0  # digits pixels are counts 0..16


def load_digits_split(split_seed=0, test_fraction=0.25):
    """Return a dict of ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    ``x_*`` are float32 ``[N, 1, 8, 8]`` in [0, 1]; ``y_*`` are int64 ``[N]``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    # sklearn is imported here so that importing tvm_ternary.data stays cheap.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / _MAX_PIXEL).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=split_seed
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
