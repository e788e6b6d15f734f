"""Downstream problems from sparse observations, with a generative prior over joint fields.

- forward: the coefficient is observed in full and a few percent of solution points; recover the solution.
- inverse: only a few percent of solution points are observed; recover the coefficient.

Two solvers share one data-fit loss (mean squared misfit at observed points, model space) and the
squared relative PDE residual:
- `solve_with_student`: optimise the latents z of a few-step student, loss + a Gaussian prior on z.
- `solve_with_teacher`: DiffusionPDE-style guided sampling (Huang et al. 2024): Euler steps of the
  probability-flow ODE, each followed by descent on the losses of the denoised estimate D(x_t)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .teacher import PDETeacher, check_fields

KINDS = ("forward", "inverse")


@dataclass
class Observations:
    """Observed values of joint fields: mask (B, C, N, N) bool and values (B, C, N, N) in physical units
    (entries outside the mask are ignored)."""

    mask: Tensor
    values: Tensor

    def check(self, teacher: PDETeacher) -> None:
        check_fields(teacher, self.values, "observation values")
        if self.mask.shape != self.values.shape or self.mask.dtype != torch.bool:
            raise ValueError(f"observation mask must be bool with the values' shape {tuple(self.values.shape)}, "
                             f"got {self.mask.dtype} {tuple(self.mask.shape)}")
        if not torch.isfinite(self.values[self.mask]).all():
            raise ValueError("observation values contain NaN or inf at observed points")
        if not self.mask.flatten(1).any(dim=1).all():
            raise ValueError("every instance needs at least one observed point")


def from_points(teacher: PDETeacher, points: Tensor, values: Tensor) -> Observations:
    """Observations from (B, P, 3) integer (channel, row, column) points and their (B, P) values."""
    c, n = teacher.shape[0], teacher.shape[-1]
    if points.ndim != 3 or points.shape[-1] != 3 or values.shape != points.shape[:2]:
        raise ValueError(f"points must be (B, P, 3) (channel, row, column) with values (B, P), got "
                         f"{tuple(points.shape)} and {tuple(values.shape)}")
    high = torch.tensor([c, n, n])
    bad = ((points < 0) | (points >= high)).any(dim=-1)
    if bad.any():
        b, p = bad.nonzero()[0].tolist()
        raise ValueError(f"observation point {points[b, p].tolist()} (instance {b}) is outside the {c}x{n}x{n} grid")
    mask = torch.zeros(points.shape[0], c, n, n, dtype=torch.bool)
    vals = torch.zeros(points.shape[0], c, n, n, dtype=values.dtype)
    b = torch.arange(points.shape[0])[:, None].expand(points.shape[:2])
    mask[b, points[..., 0], points[..., 1], points[..., 2]] = True
    vals[b, points[..., 0], points[..., 1], points[..., 2]] = values
    return Observations(mask, vals)


def make_problem(teacher: PDETeacher, x: Tensor, kind: str, fraction: float, seed: int = 0) -> Observations:
    """Observations of solver fields x (B, C, N, N): `forward` sees the coefficient and a random `fraction`
    of solution points, `inverse` only the solution points (a fresh random set per instance)."""
    if kind not in KINDS:
        raise ValueError(f"unknown problem {kind!r}; choose one of: {', '.join(KINDS)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"observed fraction must be in (0, 1], got {fraction}")
    check_fields(teacher, x, "solver fields")
    coef = teacher.pde.coefficient_mask(x.shape[-1])
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(x.shape, generator=g) < fraction) & ~coef
    mask = points | coef if kind == "forward" else points
    return Observations(mask, torch.where(mask, x, torch.zeros_like(x)))  # nothing unobserved is handed over


def unknown_mask(teacher: PDETeacher, kind: str) -> Tensor:
    """(C, N, N) bool: the part of the field a problem asks for (solution for forward, coefficient for inverse)."""
    coef = teacher.pde.coefficient_mask(teacher.shape[-1])
    return ~coef if kind == "forward" else coef


def relative_error(x: Tensor, truth: Tensor, part: Tensor) -> Tensor:
    """Relative L2 error (B,) over the entries in `part` (C, N, N), physical units."""
    d = (x - truth) * part
    return d.flatten(1).norm(dim=1) / (truth * part).flatten(1).norm(dim=1)


def observed_misfit(x_model: Tensor, y_model: Tensor, mask: Tensor) -> Tensor:
    """Mean squared misfit (B,) at the observed entries (model space); whatever sits outside the mask, even a
    non-finite value, does not enter."""
    m = mask.to(x_model.device)
    d = torch.where(m, x_model - y_model.to(x_model), torch.zeros_like(x_model))
    return d.square().flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def _losses(teacher: PDETeacher, x_model: Tensor, obs: Observations, y_model: Tensor) -> tuple[Tensor, Tensor]:
    """(mean squared misfit at observed points in model space, squared relative residual), each (B,)."""
    return observed_misfit(x_model, y_model, obs.mask), teacher.residual(x_model).square()


def solve_with_student(generator, teacher: PDETeacher, obs: Observations, *, iters: int = 50, lr: float = 0.1,
                       pde_weight: float = 1.0, prior_weight: float = 1e-3, seed: int = 0) -> tuple[Tensor, int]:
    """Optimise the student's latents (Adam) for misfit + pde_weight * residual^2 + prior_weight * |z|^2 / dim;
    returns (model-space fields (B, C, N, N), network passes per instance: iters forward+backward + 1)."""
    obs.check(teacher)
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    y = teacher.norm.to_model(obs.values.float())
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(obs.values.shape[0], generator.n_steps, *teacher.shape, generator=g).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    generator.requires_grad_(False)
    for _ in range(iters):
        x = generator(z)
        misfit, res = _losses(teacher, x, obs, y)
        loss = misfit + pde_weight * res + prior_weight * z.square().flatten(1).mean(1)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        return generator(z), iters + 1


def _clip(grad: Tensor, sigma: float) -> Tensor:
    """Cap each instance's guidance step at RMS sigma per entry (the noise level of the step): one stiff
    residual gradient late in sampling otherwise throws a sample off the data manifold (NaN)."""
    cap = sigma * grad[0].numel() ** 0.5
    norm = grad.flatten(1).norm(dim=1).clamp_min(1e-30)
    return grad * (cap / norm).clamp(max=1.0).view(-1, *[1] * (grad.ndim - 1))


def solve_with_teacher(teacher: PDETeacher, obs: Observations, *, steps: int = 200, obs_weight: float = 1.0,
                       pde_weight: float = 1.0, seed: int = 0) -> tuple[Tensor, int]:
    """Guided probability-flow sampling: x <- x + (s' - s)(x - D)/s - grad_x[obs_weight ||M(D - y)||
    + pde_weight ||R(D)|| / ||scale||] per step (DiffusionPDE's norms, not squares; each step's gradient capped
    at RMS sigma per entry, non-finite entries zeroed); returns (D at the
    last step, network passes per instance = steps, each with a backward pass)."""
    from unidistill.engine.process import karras_sigmas

    obs.check(teacher)
    den = teacher.denoiser
    y = teacher.norm.to_model(obs.values.float())
    m = obs.mask
    proc = den.process
    sigmas = karras_sigmas(steps, proc.t_min, proc.t_max, 7.0).tolist()
    g = torch.Generator().manual_seed(seed)
    x = sigmas[0] * torch.randn(y.shape, generator=g)
    for i, s in enumerate(sigmas):
        x = x.detach().requires_grad_(True)
        d = den(x, torch.full((x.shape[0],), s))
        misfit = ((d - y) * m).flatten(1).norm(dim=1)
        res = teacher.residual(d)
        grad, = torch.autograd.grad((obs_weight * misfit + pde_weight * res).sum(), x)
        grad = _clip(torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0), s)
        if i == steps - 1:
            return d.detach(), steps
        with torch.no_grad():
            x = x + (sigmas[i + 1] - s) * (x - d) / s - grad
    raise AssertionError("unreachable")
