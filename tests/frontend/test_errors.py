"""Bad input to the frontend fails with a typed error naming the op or layer at fault."""

import re

import pytest
import torch
from torch import nn

from tvm_ternary.errors import ExportError, PackError, ShapeMismatchError, UnsupportedOpError
from tvm_ternary.frontend import from_frozen

from ..quant.helpers import frozen_pair, random_digits_model


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.special.erfinv(torch.tanh(self.fc(x)))  # TVM 0.27 has no erfinv converter


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = _Head()

    def forward(self, x):
        return self.head(self.body(x))


def test_op_without_converter_names_op_layer_and_source_line():
    with pytest.raises(UnsupportedOpError) as err:
        from_frozen(_Net(), (torch.rand(2, 4),))
    message = str(err.value)
    assert "erfinv" in message
    assert "layer 'head'" in message
    # the line of this file that called the op
    assert f"{__file__}:" in message and "torch.special.erfinv" in message
    assert "Rewrite these lines" in message  # what to change


def test_top_level_op_without_converter_names_the_model():
    with pytest.raises(UnsupportedOpError, match=r"top level of _Head"):
        from_frozen(_Head(), (torch.rand(2, 4),))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_weights_inconsistent_with_input_name_the_layer(index):
    x = torch.rand(2, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("mlp", 11), "twn", x)
    layer = frozen.frozen_layers()[index]
    layer.w_t = layer.w_t[:, :-1].contiguous()  # K no longer matches the input width
    with pytest.raises(ShapeMismatchError, match=rf"layer '{layer.layer_name}'.*input"):
        from_frozen(frozen, (x,))


def test_epilogue_parameters_inconsistent_with_channels_name_the_layer():
    x = torch.rand(2, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("cnn", 12), "twn", x)
    layer = frozen.frozen_layers()[0]
    assert layer.output_kind == "requant"
    layer.shift = layer.shift[:-1].clone()
    with pytest.raises(ShapeMismatchError, match=rf"layer '{layer.layer_name}': shift"):
        from_frozen(frozen, (x,))


def test_conv_groups_inconsistent_with_weights_name_the_layer():
    x = torch.rand(2, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model("cnn", 13), "twn", x)
    layer = frozen.frozen_layers()[1]
    layer.conv = {**layer.conv, "groups": 2}  # weights were packed for groups=1
    with pytest.raises(ShapeMismatchError, match=rf"layer '{layer.layer_name}': input channels"):
        from_frozen(frozen, (x,))


@pytest.mark.parametrize("kind,index", [("cnn", 0), ("cnn", 3), ("mlp", 1)])
def test_corrupted_weight_value_names_the_layer_and_index(kind, index):
    x = torch.rand(2, 1, 8, 8)
    _, frozen = frozen_pair(random_digits_model(kind, 14), "twn", x)
    layer = frozen.frozen_layers()[index]
    w = layer.w_t.clone()
    where = tuple(d - 1 for d in w.shape)  # the last weight
    w[where] = 2
    layer.w_t = w
    with pytest.raises(PackError, match=rf"layer '{layer.layer_name}': weight at index "
                                        rf"{re.escape(str(where))} is 2; ternary weights must be"):
        from_frozen(frozen, (x,))


def test_export_failure_has_torch_error_and_what_to_change():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(ExportError) as err:
        from_frozen(DataDependent(), (torch.rand(2, 3),))
    message = str(err.value)
    assert "torch.export failed" in message and "traceable" in message
    assert isinstance(err.value.__cause__, Exception)  # torch's own error is kept
    assert str(err.value.__cause__).split("\n")[0] in message


def _relax_tensor(shape, dtype="int64"):
    from tvm import relax

    return relax.Var("t", relax.TensorType(list(shape), dtype))


@pytest.mark.parametrize("field,shapes", [
    ("r", [(1, 4, 5, 5), (4,), (1, 4, 5, 4), (4,)]),        # residual not of the output's shape
    ("mult_r", [(1, 4, 5, 5), (4,), (1, 4, 5, 5), (3,)]),   # one multiplier per channel
    ("shift", [(1, 4, 5, 5), (5,), (1, 4, 5, 5), (4,)]),
])
def test_residual_epilogue_shapes_name_the_layer_and_field(field, shapes):
    from tvm_ternary.frontend.checks import check_layer_shapes

    tensors = [_relax_tensor(s) for s in shapes]
    with pytest.raises(ShapeMismatchError, match=rf"layer 'layers.3.conv2': {field} has shape"):
        check_layer_shapes("trequantize_residual", "layers.3.conv2", tensors, [-127, 127, 1])
    good = [(1, 4, 5, 5), (4,), (1, 4, 5, 5), (4,)]
    check_layer_shapes("trequantize_residual", "layers.3.conv2", [_relax_tensor(s) for s in good],
                       [-127, 127, 1])
