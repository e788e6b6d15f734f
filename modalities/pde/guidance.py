"""Phys-Instruct's PDE distillation guidance: the generator loss gains lambda * ||R(x0)||^2 / ||scale||^2,
the squared relative residual of the generated joint field (in physical units), used in training only.

`through="solution"` (the default) stops the gradient at the coefficient entries, so the term teaches the
generator to solve the PDE for the coefficient it drew, without reshaping the coefficient's distribution
(with `"all"`, the cheapest way down is a smoother coefficient: on Darcy the spread of log a fell to a third)."""
from __future__ import annotations

from torch import Tensor

from .teacher import PDETeacher

THROUGH = ("solution", "all")


class ResidualReward:
    """reward(x0_model) = -(||R(x)||_2 / ||scale(x)||_2)^2 per sample, x = to_physical(x0_model); differentiable."""

    def __init__(self, teacher: PDETeacher, through: str = "solution"):
        if through not in THROUGH:
            raise ValueError(f"guidance through {through!r}: choose one of {', '.join(THROUGH)}")
        self.teacher, self.through = teacher, through
        self.coef = teacher.pde.coefficient_mask(teacher.shape[-1])

    def __call__(self, x0: Tensor) -> Tensor:
        if self.through == "solution":
            x0 = x0.detach().where(self.coef.to(x0.device), x0)
        return -self.teacher.residual(x0).square()
