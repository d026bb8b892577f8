"""Ternarization methods. Importing this package registers every method with ``ternarize``."""

from .registry import lookup, methods, register_method
from .absmean import AbsMean
from .ttq import TTQ
from .twn import TWN

register_method("twn")(lambda layer, **o: TWN(**o))
register_method("ttq")(lambda layer, **o: TTQ(**o))
register_method("absmean")(lambda layer, **o: AbsMean(**o))
