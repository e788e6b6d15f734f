"""Teacher baselines: the probability-flow ODE (Heun or Euler) of a DiffusersDenoiser, with
classifier-free guidance, on the engine's shared sampler."""
from __future__ import annotations

import torch
from torch import Tensor

from unidistill.engine.sampling import sample_ode

from .denoiser import DiffusersDenoiser


@torch.no_grad()
def sample_teacher(den: DiffusersDenoiser, n: int, steps: int, cond: Tensor | None = None, *,
                   guidance_scale: float | None = None, method: str = "heun", grid: str | None = None,
                   generator: torch.Generator | None = None, batch: int = 500, progress: str | None = None) -> Tensor:
    """n samples x0 (n, C, H, W) in model space; Karras grid for EDM/VP teachers, uniform t for flows.
    `progress` names a progress bar over the samples (shown on a terminal only)."""
    from tqdm.auto import tqdm

    grid = grid or ("uniform_t" if den.param.family == "flow" else "karras")
    device = next(den.parameters()).device
    shape = (den.channels, *((den.size, den.size) if isinstance(den.size, int) else den.size))
    out = []
    with tqdm(total=n, desc=progress, unit="sample", disable=None if progress else True, leave=False) as bar:
        for lo in range(0, n, batch):
            m = min(batch, n - lo)
            c = None if cond is None else cond[lo:lo + m].to(device)
            out.append(sample_ode(lambda x, t, c=c: den(x, t, c, guidance_scale=guidance_scale), den.process,
                                  steps, m, shape, generator=generator, method=method, grid=grid, device=device).cpu())
            bar.update(m)
    return torch.cat(out)
