"""Phys-Instruct's PDE distillation guidance: the generator loss gains lambda * ||R(x0)||^2 / ||scale||^2,
the squared relative residual of the generated joint field (in physical units), used in training only."""
from __future__ import annotations

from torch import Tensor

from .teacher import PDETeacher


class ResidualReward:
    """reward(x0_model) = -(||R(x)||_2 / ||scale(x)||_2)^2 per sample, x = to_physical(x0_model); differentiable."""

    def __init__(self, teacher: PDETeacher):
        self.teacher = teacher

    def __call__(self, x0: Tensor) -> Tensor:
        return -self.teacher.residual(x0).square()
