"""Ternarization methods. Importing this package registers every method with ``ternarize``."""

from .registry import lookup, methods, register_method
from .absmean import AbsMean
from .ttq import TTQ
from .twn import TWN

register_method("twn")(lambda layer, **o: TWN(**o))
register_method("ttq")(lambda layer, **o: TTQ(**o))
register_method("absmean")(lambda layer, **o: AbsMean(**o))
from .ec2t import EC2T
from .fatnn import FatnnAct, FatnnWeight
from .sparse import SparseTernary
from .tgauss import TruncatedGaussian

register_method("tgauss")(lambda layer, **o: TruncatedGaussian(**o))
register_method("sparse")(lambda layer, **o: SparseTernary(**o))
register_method("ec2t")(lambda layer, **o: EC2T(**o))
register_method("fatnn", default_act="fatnn")(lambda layer, **o: FatnnWeight(layer.weight.shape[0], **o))
register_method("teacher_student", default_act="ternary")(lambda layer, **o: TWN(**o))
