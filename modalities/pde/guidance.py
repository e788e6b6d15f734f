"""Phys-Instruct's PDE distillation guidance: the generator loss gains lambda * ||R(x0)||^2 / ||scale||^2,
the squared relative residual of the generated joint field (in physical units), used in training only.

`through="solution"` (the default) stops the gradient at the coefficient entries, so the term teaches the
generator to solve the PDE for the coefficient it drew, without reshaping the coefficient's distribution
(with `"all"`, the cheapest way down is a smoother coefficient: on Darcy the spread of log a fell to a third).

`norm="solution"` measures the same residual preconditioned by the PDE's own operator: ||A(a)^-1 R(x)|| =
||u - S(a)||, the distance of the generated solution from the solver's S(a) for the generated coefficient,
relative to ||S(a)||. The plain residual weighs an error at wavenumber k by about k^2 (the operator's
eigenvalue), so its gradient mostly smooths grid-scale roughness and barely moves the large-scale error
that the solution error counts; the preconditioned form weighs every scale alike. S(a) is a sparse direct
solve per sample (float64, no gradient), so this norm needs `through="solution"`."""
from __future__ import annotations

import torch
from torch import Tensor

from .teacher import PDETeacher

THROUGH = ("solution", "all")
NORMS = ("residual", "solution")


class ResidualReward:
    """reward(x0_model[, cond]) = -(relative residual)^2 per sample in the chosen norm, x = to_physical(x0_model);
    differentiable in the solution entries (and, with the residual norm and through="all", the coefficient)."""

    def __init__(self, teacher: PDETeacher, through: str = "solution", norm: str = "residual"):
        if through not in THROUGH:
            raise ValueError(f"guidance through {through!r}: choose one of {', '.join(THROUGH)}")
        if norm not in NORMS:
            raise ValueError(f"guidance norm {norm!r}: choose one of {', '.join(NORMS)}")
        if norm == "solution" and through != "solution":
            raise ValueError("guidance norm 'solution' differentiates only the solution entries; use through: solution")
        self.teacher, self.through, self.norm = teacher, through, norm
        self.coef = teacher.pde.coefficient_mask(teacher.shape[-1])

    def __call__(self, x0: Tensor, cond=None) -> Tensor:
        if self.through == "solution":
            x0 = x0.detach().where(self.coef.to(x0.device), x0)
        if self.norm == "residual":
            return -self.teacher.residual(x0).square()
        return -solution_distance(self.teacher, x0).square()


def solution_distance(teacher: PDETeacher, x_model: Tensor) -> Tensor:
    """||u - S(a)|| / ||S(a)|| over the solution entries (B,), differentiable in x_model's solution entries."""
    from .measures import solution_part, solver_reference

    x = teacher.norm.to_physical(x_model.double())
    ref = solver_reference(teacher.pde, x).to(x.device)
    part = solution_part(teacher.pde, x.shape[-1]).to(x.device)
    d = torch.where(part, x - ref, torch.zeros_like(x))
    return (d.flatten(1).norm(dim=1) / torch.where(part, ref, torch.zeros_like(ref)).flatten(1).norm(dim=1)
            .clamp_min(1e-300)).to(x_model.dtype)
