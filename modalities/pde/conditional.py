"""One-pass forward and inverse solvers: an observation-conditioned few-step student.

The student is the teacher's UNet with 2C more input channels, `encode(obs)` = [observed values in model
space, zero elsewhere; the observation mask], concatenated after its noisy input (the new input weights start
at zero, so at step 0 it is the unconditional student, except that observed coefficient entries are passed
through as given). It answers a problem in K network passes: x = G(z, obs). Training (`distill` with a
`condition:` section) draws problems from solver fields: a random fraction of solution points observed, plus
the whole coefficient for `forward` problems. The generator loss is

    divergence(G(z, obs) || teacher)  +  obs_weight * misfit(G, obs)  +  alpha * physics(G)

with the teacher and the fake score unconditional (the divergence matches the marginal of the answers over
problems to the teacher's joint prior, which the exact posterior also satisfies), the misfit the mean
squared error at observed entries (model space) and physics the `residual` reward. Only the observed entries
of a training field ever reach the student or its losses: `encode` zeroes everything outside the mask.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from unidistill.modalities.shared.denoiser import DiffusersDenoiser

from .inverse import KINDS, Observations, make_problem, observed_misfit
from .teacher import PDETeacher


def encode(teacher: PDETeacher, obs: Observations) -> Tensor:
    """(B, 2C, N, N) float: observed values in model space (0 where unobserved), then the mask as 0/1."""
    m = obs.mask
    y = teacher.norm.to_model(obs.values.float())
    return torch.cat([torch.where(m, y, torch.zeros_like(y)), m.float()], dim=1)


def widen(den: DiffusersDenoiser, extra: int) -> DiffusersDenoiser:
    """A trainable copy of a UNet denoiser with `extra` zero-initialised input channels after its own."""
    if den.kind != "UNet2DModel":
        raise ValueError(f"an observation-conditioned student needs a UNet2DModel teacher, got {den.kind}")
    out = copy.deepcopy(den).requires_grad_(True).train()
    net, old = out.net, out.net.conv_in
    new = nn.Conv2d(old.in_channels + extra, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    net.conv_in = new
    net.register_to_config(in_channels=old.in_channels + extra)
    out.concat_channels = extra
    out.guidance_scale = 1.0
    return out


class ObservedDenoiser(nn.Module):
    """D(x_t, t, obs) = den(x_t, t, concat=encode(obs)): the denoiser a StudentGenerator steps with `c = obs`."""

    def __init__(self, den: DiffusersDenoiser, teacher: PDETeacher):
        super().__init__()
        if den.concat_channels != 2 * den.channels:
            raise ValueError(f"an observed denoiser needs 2 x {den.channels} concatenated channels, got "
                             f"{den.concat_channels}")
        self.den, self.process, self.param = den, den.process, den.param
        self.teacher = teacher  # the normaliser of the observations (not a module: not trained or saved)
        self.coef = teacher.pde.coefficient_mask(teacher.shape[-1])

    def forward(self, x_t: Tensor, t: Tensor, obs: Observations) -> Tensor:
        if not isinstance(obs, Observations):
            raise TypeError("an observation-conditioned student needs Observations as its condition")
        cond = encode(self.teacher, obs).to(x_t)
        d = self.den(x_t, t, None, concat=cond)
        # an observed coefficient is the problem's input: passed through as given (observed solution points are
        # left to the misfit term, so that they keep informing the rest of the field)
        keep = obs.mask.to(x_t.device) & self.coef.to(x_t.device)
        return torch.where(keep, cond[:, : d.shape[1]], d)


def misfit(teacher: PDETeacher, x_model: Tensor, obs: Observations) -> Tensor:
    """Mean squared misfit (B,) at the observed entries, model space."""
    return observed_misfit(x_model, teacher.norm.to_model(obs.values.float()), obs.mask)


class ProblemSource:
    """Training problems from solver fields (physical units): each draw picks fields, a kind per field
    (cycling through `kinds` at random) and a fresh random set of observed solution points."""

    def __init__(self, teacher: PDETeacher, fields: np.ndarray, kinds: list[str], fraction: float):
        bad = [k for k in kinds if k not in KINDS]
        if not kinds or bad:
            raise ValueError(f"condition kinds {bad or kinds}: choose one or more of {', '.join(KINDS)}")
        self.teacher, self.kinds, self.fraction = teacher, list(kinds), fraction
        self.fields = torch.from_numpy(np.ascontiguousarray(fields))

    def __call__(self, noise, n: int) -> Observations:
        idx = noise.randint(len(self.fields), n).cpu()
        kind = noise.randint(len(self.kinds), n).cpu()
        seed = int(noise.randint(2**31 - 1, 1).item())
        x = self.fields[idx]
        parts = [make_problem(self.teacher, x[kind == i], k, self.fraction, seed=seed + i)
                 for i, k in enumerate(self.kinds)]
        mask = torch.zeros(x.shape, dtype=torch.bool)
        values = torch.zeros_like(x)
        for i, p in enumerate(parts):
            mask[kind == i], values[kind == i] = p.mask, p.values
        return Observations(mask, values)


@torch.no_grad()
def solve_with_conditional(generator, teacher: PDETeacher, obs: Observations, *, seed: int = 0) -> tuple[Tensor, int]:
    """The conditional student's answer (model-space fields (B, C, N, N)) and its network passes per instance."""
    obs.check(teacher)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(obs.values.shape[0], generator.n_steps, *teacher.shape, generator=g)
    return generator(z, obs), generator.n_steps
