"""Layer-wise greedy teacher-student training of a ternary-weight, ternary-activation
student (Alemdar, Leroy, Prost-Boucle, Petrot; IJCNN 2017).

Known from the paper's abstract: a full-precision teacher trained with dropout and batch
norm; neurons with a two-threshold step activation; the student built layer by layer, each
layer learning to reproduce the corresponding teacher layer. The authors' converter
(``slide-lig/tnn_convert``) fits each student neuron by a search over ternary weight
configurations and thresholds; OUR INTERPRETATION trains each student layer by gradient
descent instead (faster to write, same greedy structure):

* the teacher's activation after batch norm is stochastic firing
  (``models.StochasticTernary``, from the authors' ``tnn_train``; ``hardtanh`` also
  works): at evaluation its neurons fire ``round(clamp(y, -1, 1))``, i.e. two thresholds
  at +-0.5 on the BN output ``y``;
* the student copies the teacher, with TWN ternary weights and ternary activations with
  those thresholds (+-0.5 on its own BN output, which ``freeze`` folds into integers);
* for each hidden layer in order, only that layer and its batch norm train, to make the
  student's clipped BN output match the teacher's on the student's own (ternary) inputs;
* the last layer then trains on the labels. The first layer reads int8 pixels.
Works on ``nn.Sequential`` models (the digits MLP / CNN of the model zoo).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tvm_ternary.models import StochasticTernary

from ..act import TernaryAct
from ..layers import TERNARY_LAYERS
from ..train import TrainConfig, batches, fit


def _fixed_ternary_act() -> TernaryAct:
    act = TernaryAct()
    with torch.no_grad():
        act.t_lo.fill_(-0.5)
        act.t_hi.fill_(0.5)
        act.scale.fill_(1.0)
        act.initialized.fill_(True)
    return act


def build_student(teacher: nn.Sequential) -> nn.Sequential:
    """The student: ternary layers, ternary activations, Hardtanh removed."""
    from ..ternarize import ternarize

    student = ternarize(teacher, "twn", act="int8")
    layers = [i for i, m in enumerate(student) if isinstance(m, TERNARY_LAYERS)]
    for i in layers[1:]:
        student[i].act_quant = _fixed_ternary_act()
    for i, m in enumerate(student):
        if isinstance(m, (nn.Hardtanh, StochasticTernary)):
            student[i] = nn.Identity()  # the student's ternary thresholds take their place
    student.ternary_method = "teacher_student"
    return student


def _bn_after(model: nn.Sequential, i: int) -> int:
    return i + 1 if isinstance(model[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d)) else i


def train_teacher_student(teacher: nn.Sequential, x: Tensor, y: Tensor, cfg: TrainConfig,
                          progress=None) -> nn.Sequential:
    """Greedy layer-wise fit of a student to a trained ``teacher``; returns the student."""
    teacher = copy.deepcopy(teacher).eval()
    student = build_student(teacher)
    layers = [i for i, m in enumerate(student) if isinstance(m, TERNARY_LAYERS)]
    gen = torch.Generator().manual_seed(cfg.seed)
    for i in layers[:-1]:
        end = _bn_after(student, i) + 1
        params = [p for m in student[i:end] for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        for _ in range(cfg.epochs):
            for xb, _ in batches(x, y, cfg.batch_size, gen):
                with torch.no_grad():
                    target = teacher[:end](xb).clamp(-1, 1)
                    inp = student[:i].eval()(xb)
                student[i:end].train()
                out = student[i:end](inp)
                loss = F.mse_loss(out.clamp(-1.5, 1.5), target)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if progress is not None:
                progress.update(1)
    last = layers[-1]
    head_params = [p for m in student[last:] for p in m.parameters()]
    fit(student, x, y, cfg, params=head_params, progress=progress)
    return student.eval()
