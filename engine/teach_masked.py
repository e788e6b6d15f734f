"""Training a masked diffusion teacher by the continuous-time NELBO (MDLM, Sahoo et al. 2024, eq. 10):

  L = E_t E_{z_t ~ Q_t(.|x)} [ alpha'(t) / (1 - alpha(t)) * sum_{i: z_t^i = mask} log p_theta(x^i | z_t) ],

with t drawn by antithetic (low-discrepancy) sampling t_i = (u / B + i / B) mod 1 over the global batch.
The network maps z_t (B, L) to SUBS log-probabilities (B, L, V); the per-example loss is per token."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .noise import Noise
from .objective import Objective, Outputs, Progress
from .process import MaskingProcess, bcast

TokenData = Callable[[Noise, int], Tensor]  # (noise, n) -> x0 (n, L) token ids


def antithetic_times(n: int, generator: torch.Generator | None = None, t_min: float = 1e-3) -> Tensor:
    """t_i = t_min + (1 - t_min) ((u / n + i / n) mod 1), one shared u ~ U(0, 1) (MDLM's low-discrepancy
    sampler: one time in each of n equal strata)."""
    u = torch.rand(1, generator=generator)
    return t_min + (1 - t_min) * ((u / n + torch.arange(n) / n) % 1)


def masked_nelbo(logp: Tensor, x0: Tensor, z: Tensor, t: Tensor, process: MaskingProcess) -> Tensor:
    """Per-example NELBO per token (B,): -alpha'(t)/(1 - alpha(t)) * sum over masked i of -log p(x0^i)
    divided by L. logp (B, L, V) SUBS log-probabilities; x0, z (B, L); t (B,)."""
    nll = -logp.gather(-1, x0[..., None]).squeeze(-1)  # (B, L)
    masked = z == process.mask_id
    nll = torch.where(masked, nll, torch.zeros_like(nll))  # SUBS carries unmasked tokens: no loss there
    w = -process.dalpha(t) / (1 - process.alpha(t))
    return w * nll.sum(-1) / x0.shape[1]


class MaskedDiffusionObjective(Objective):
    """The Trainer's objective for a masked diffusion teacher; `model(z, t)` returns SUBS log-probs."""

    name = "teach"

    def __init__(self, *, model: nn.Module, process: MaskingProcess, data: TokenData, t_min: float = 1e-3,
                 outputs: Outputs | None = None):
        super().__init__(outputs)
        if not 0 < t_min < 1:
            raise ValueError(f"t_min must be in (0, 1), got {t_min}")
        self.process, self.data, self.t_min = process, data, t_min
        self.modules: dict[str, nn.Module] = {"generator": model}

    def generator_loss(self, noise: Noise, n: int, progress: Progress) -> tuple[Tensor, dict[str, Tensor]]:
        x0 = self.data(noise, n)
        t = noise.draw(lambda m, g: antithetic_times(m, g, self.t_min), n).to(x0.device)
        keep = noise.rand(n, x0.shape[1]).to(x0.device) < bcast(self.process.alpha(t), x0)
        z = torch.where(keep, x0, torch.full_like(x0, self.process.mask_id))
        loss = masked_nelbo(self.modules["generator"](z, t), x0, z, t, self.process)
        return loss, {"nelbo": loss.detach().mean()}


@torch.no_grad()
def nelbo_bound(model: nn.Module, blocks: Tensor, process: MaskingProcess, n_times: int = 16,
                batch: int = 64, seed: int = 0, t_min: float = 1e-3) -> float:
    """Held-out NELBO per token (nats), averaged over n_times antithetic times per block; exp() of it
    bounds the model's perplexity from above."""
    g = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for lo in range(0, len(blocks), batch):
        x0 = blocks[lo:lo + batch]
        for t in antithetic_times(n_times, g, t_min):
            tt = t.expand(len(x0))
            z = process.corrupt(x0, tt, g)
            total += float(masked_nelbo(model(z, tt), x0, z, tt, process).sum())
            count += len(x0)
    return total / count
