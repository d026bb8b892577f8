"""Data set loaders: MNIST and CIFAR-10 from user-given directories, and sklearn digits."""

from .cifar import load_cifar10
from .digits import load_digits_split
from .mnist import load_mnist

__all__ = ["load_cifar10", "load_digits_split", "load_mnist"]
