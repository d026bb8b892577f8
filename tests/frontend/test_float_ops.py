"""Float host ops import through TVM's converters and compile through our pipeline (with
the host scheduling pass) to the same values as torch: every op a ResNet-18-style CNN, an
MLP and a transformer feed-forward block use."""

import pytest
import torch
from torch import nn

import tvm_ternary as tt
from tvm_ternary.frontend import from_frozen


class AllFloatOps(nn.Module):
    """conv2d (stride, padding, groups), batch norm, relu, add, max / avg pool, flatten,
    linear, layer norm, gelu, softmax."""

    def __init__(self, chans: int = 6, hidden: int = 24, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, chans, 3, stride=1, padding=1)
        self.bn1 = nn.BatchNorm2d(chans)
        self.conv2 = nn.Conv2d(chans, chans, 3, stride=2, padding=1, groups=2, bias=False)
        self.down = nn.Conv2d(chans, chans, 1, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(chans * 2 * 2, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.conv2(y) + self.down(y))       # residual add
        y = self.avg(self.pool(y)).flatten(1)
        return torch.softmax(self.fc2(self.act(self.norm(self.fc1(y)))), dim=-1)


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = AllFloatOps()
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-0.2, 0.2)
        model.bn1.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_float_ops_import_as_tvm_ops():
    text = str(from_frozen(_model(0), (torch.rand(2, 3, 16, 16),)))
    for op in ("R.nn.conv2d", "R.nn.batch_norm", "R.nn.relu", "R.add", "R.nn.max_pool2d",
               "R.nn.avg_pool2d", "R.nn.layer_norm", "R.nn.gelu", "R.nn.softmax", "R.matmul"):
        assert op in text, op
    assert "groups=2" in text and "strides=[2, 2]" in text


# odd sizes too: the pools floor, every case ends at 2 x 2 before the flatten
@pytest.mark.parametrize("seed,shape", [(0, (2, 3, 16, 16)), (1, (3, 3, 19, 17)), (2, (1, 3, 20, 21))])
def test_float_model_compiles_and_matches_torch(seed, shape):
    model = _model(seed)
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
    cm = tt.compile(model, (x,))
    torch.testing.assert_close(cm(x), expected, rtol=1e-5, atol=1e-6)
    host = cm.stats["fallback"]["host_ops"]
    for op in ("nn.conv2d", "nn.layer_norm", "nn.gelu", "nn.softmax", "nn.max_pool2d"):
        assert op in host
