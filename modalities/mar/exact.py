"""The exact teacher: a kernel mixture over the training digits of each class, p(x | y) = (1/N_y) sum_n N(x; x_n,
s0^2 I) on the tokens. Given the tokens V visible to token i, its conditional is the mixture over the same examples
with weights w_n proportional to N(x_V; x_{n,V}, s0^2 I) and means x_{n,i}; diffused to time t it stays a mixture
(modalities/shared/mixture.py), so its denoiser, score and log-density are closed form, with guidance (the
unconditional mixture is over every class) as D_null + w (D - D_null). Tokens sampled in one iteration are
independent given the context, so the exact K-step sampler (per-token conditionals) differs from the joint mixture
by exactly the dependence it drops, which this teacher measures."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from unidistill.modalities.shared import mixture

from .model import Cond


class KernelMixture(nn.Module):
    """The exact teacher of training tokens (N, L, d) with labels (N,) and kernel width s0; no parameters."""

    def __init__(self, tokens: Tensor, labels: Tensor, s0: float, process):
        super().__init__()
        if not s0 > 0:
            raise ValueError(f"kernel width s0 must be > 0, got {s0}")
        self.register_buffer("data", tokens.float())
        self.register_buffer("labels", labels.long())
        self.s0, self.process = float(s0), process

    def log_weights(self, cond: Cond, conditional: bool) -> Tensor:
        """log w (B, L, N): each token's unnormalised component weights from what it saw (and its class), in
        float32 even under autocast (bf16 would move the weights by nats)."""
        with torch.autocast(cond.tokens.device.type, enabled=False):
            return self._log_weights(cond, conditional)

    def _log_weights(self, cond: Cond, conditional: bool) -> Tensor:
        sq = (cond.tokens.float()[:, None] - self.data[None]).pow(2).sum(-1)  # (B, N, L): per-token distances
        logw = -torch.einsum("bij,bnj->bin", cond.visible.float(), sq) / (2 * self.s0**2)
        if conditional:
            logw = logw.masked_fill((self.labels[None, None] != cond.labels[:, None, None]), -math.inf)
        return logw

    def _flat(self, x_t: Tensor, t: Tensor, logw: Tensor):
        b, length, d = x_t.shape
        means = self.data.permute(1, 0, 2)[None].expand(b, -1, -1, -1).reshape(b * length, -1, d)  # (BL, N, d)
        return (x_t.reshape(b * length, d), means, logw.reshape(b * length, -1),
                self.process.alpha(t).reshape(-1), self.process.sigma(t).reshape(-1))

    def forward(self, x_t: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """The (guided) exact denoiser D(x_t (B, L, d), t (B, L), cond) -> (B, L, d)."""
        d = self._denoise(x_t, t, cond, conditional=True)
        if cond.z_null is None and not bool((cond.scale != 1).any()):
            return d
        d_null = self._denoise(x_t, t, cond, conditional=False)
        return d_null + cond.scale[..., None].to(d) * (d - d_null)

    def _denoise(self, x_t, t, cond, conditional):
        with torch.autocast(x_t.device.type, enabled=False):
            x, means, logw, a, s = self._flat(x_t.float(), t.float(), self.log_weights(cond, conditional))
            return mixture.denoise(x, means, logw, a, s, self.s0).reshape(x_t.shape).to(x_t.dtype)

    def log_density(self, x_t: Tensor, t: Tensor, cond: Cond, conditional: bool = True) -> Tensor:
        """log p_t(x_t,i | context of i) (B, L) of each token's diffused conditional."""
        x, means, logw, a, s = self._flat(x_t, t, self.log_weights(cond, conditional))
        return mixture.log_density(x, means, logw, a, s, self.s0).reshape(t.shape)

    def sample(self, cond: Cond, generator: torch.Generator | None = None, conditional: bool = True) -> Tensor:
        """Exact draws (B, L, d) of each token from its own conditional given its context (no guidance)."""
        b, length, d = cond.tokens.shape
        logw = self.log_weights(cond, conditional).reshape(b * length, -1)
        means = self.data.permute(1, 0, 2)[None].expand(b, -1, -1, -1).reshape(b * length, -1, d)
        u = torch.rand(b * length, generator=generator).to(logw.device)
        eps = torch.randn(b * length, d, generator=generator).to(logw.device)
        return mixture.sample(means, logw, self.s0, u, eps).reshape(b, length, d)

    def joint(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Exact draws (B, L, d) from p(x | y): a training example of the class plus s0 noise."""
        out = []
        for y in labels.tolist():
            members = (self.labels == y).nonzero().flatten()
            n = members[torch.randint(len(members), (1,), generator=generator)].item()
            out.append(self.data[n])
        x = torch.stack(out)
        return x + self.s0 * torch.randn(x.shape, generator=generator).to(x)
