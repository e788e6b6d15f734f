"""Sampling and measuring PDE teachers and students: unconditional samples, their relative residuals,
and the field plots people look at."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from unidistill.engine.sampling import sample_ode

from .plots import plot_fields
from .teacher import PDETeacher


def sample_teacher(teacher: PDETeacher, n: int, steps: int, *, generator: torch.Generator | None = None,
                   method: str = "heun", batch: int = 256) -> Tensor:
    """n model-space samples (n, C, N, N) from the probability-flow ODE (Karras grid, Heun)."""
    den = teacher.denoiser
    device = next(den.parameters()).device
    out = []
    with torch.no_grad():
        for lo in range(0, n, batch):
            m = min(batch, n - lo)
            out.append(sample_ode(lambda x, t: den(x, t), den.process, steps, m, teacher.shape,
                                  generator=generator, method=method, device=device).cpu())
    return torch.cat(out)


def save_samples(teacher: PDETeacher, x_model: Tensor, path: str | Path) -> Path:
    """Plot each sample's channels (physical units) and its pointwise residual |A(a)u - f|."""
    from .problems import relative_residual

    x = teacher.norm.to_physical(x_model.detach().double().cpu())
    res, rel = teacher.pde.residual(x).abs(), relative_residual(teacher.pde, x)
    rows = []
    for i in range(x.shape[0]):
        row = [(name, x[i, c].numpy()) for c, name in enumerate(teacher.pde.channels)]
        row.append((f"|residual| (rel {float(rel[i]):.2e})", res[i].numpy()))
        rows.append(row)
    return plot_fields(rows, path, title=f"{teacher.pde.name}: generated samples")
