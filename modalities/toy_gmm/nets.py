"""Small SiLU MLPs for low-dimensional data: a one-step generator, an EDM-preconditioned denoiser
and a density-ratio discriminator; the last two work under any GaussianProcess."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from unidistill.engine.nn.embed import sinusoidal
from unidistill.engine.process import GaussianProcess


def _check_sizes(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner} {name} must be an integer >= 1, got {value!r}")


def mlp(d_in: int, d_out: int, hidden: int, depth: int) -> nn.Sequential:
    """Linear(d_in, hidden), SiLU, then depth - 1 more hidden layers, then Linear(hidden, d_out)."""
    layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.SiLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, d_out))


def _check_input(owner: str, x: Tensor, dim: int) -> None:
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{owner} input must have shape (B, {dim}), got {tuple(x.shape)}")


def _check_cond(owner: str, cond: Tensor | None) -> None:
    if cond is not None:
        raise ValueError(f"{owner} is unconditional; got a cond, expected None")


class EDMInput(nn.Module):
    """EDM preconditioning (Karras et al. 2022, Table 1) on x_hat = x_t / alpha and
    sigma_hat = sigma / alpha, folded back onto x_t with u = sqrt(sigma^2 + alpha^2 sigma_data^2):
    c_in x_hat = x_t / u, c_skip x_hat = sigma_data^2 alpha x_t / u^2, c_out = sigma sigma_data / u,
    c_noise = log(sigma_hat) / 4 fed through a sinusoidal embedding of width time_dim."""

    def __init__(self, process: GaussianProcess, sigma_data: float = 1.0, time_dim: int = 32):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data!r}")
        _check_sizes("EDMInput", time_dim=time_dim)
        self.process, self.sigma_data, self.time_dim = process, float(sigma_data), time_dim

    def forward(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x_t (B, d), t (B,) or scalar -> (features [c_in x_hat, emb(c_noise)] (B, d + time_dim),
        c_skip x_hat (B, d), c_out (B, 1))."""
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        if t.shape != (x_t.shape[0],):
            raise ValueError(
                f"t must have shape ({x_t.shape[0]},) or be a scalar, got {tuple(t.shape)}")
        a, b = self.process.alpha(t)[:, None], self.process.sigma(t)[:, None]
        u2 = b**2 + (a * self.sigma_data) ** 2
        c_noise = (torch.log(b) - torch.log(a)).squeeze(1) / 4
        emb = sinusoidal(10 * c_noise, self.time_dim, max_period=100.0).to(x_t.dtype)
        features = torch.cat([x_t * u2.rsqrt(), emb], dim=-1)
        return features, self.sigma_data**2 * a * x_t / u2, b * self.sigma_data * u2.rsqrt()


class MLPGenerator(nn.Module):
    """One-step generator x0 = G(z): z (B, latent_dim) -> x0 (B, dim); latent_dim default: dim."""

    def __init__(self, dim: int, latent_dim: int | None = None, hidden: int = 256, depth: int = 3):
        super().__init__()
        latent_dim = dim if latent_dim is None else latent_dim
        _check_sizes("MLPGenerator", dim=dim, latent_dim=latent_dim, hidden=hidden, depth=depth)
        self.dim, self.latent_dim = dim, latent_dim
        self.net = mlp(latent_dim, dim, hidden, depth)

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        _check_input("MLPGenerator", z, self.latent_dim)
        _check_cond("MLPGenerator", cond)
        return self.net(z)


class MLPDenoiser(nn.Module):
    """D(x_t, t) = c_skip x_hat + c_out F(c_in x_hat, c_noise) (EDM eq. 7, x_hat = x_t / alpha)."""

    def __init__(self, dim: int, process: GaussianProcess, sigma_data: float = 1.0,
                 hidden: int = 256, depth: int = 3, time_dim: int = 32):
        super().__init__()
        _check_sizes("MLPDenoiser", dim=dim, hidden=hidden, depth=depth)
        self.dim = dim
        self.inputs = EDMInput(process, sigma_data, time_dim)
        self.net = mlp(dim + time_dim, dim, hidden, depth)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """x_t (B, dim), t (B,) -> D(x_t, t) (B, dim)."""
        _check_input("MLPDenoiser", x_t, self.dim)
        _check_cond("MLPDenoiser", cond)
        features, skip, c_out = self.inputs(x_t, t)
        return skip + c_out * self.net(features)


class MLPDiscriminator(nn.Module):
    """Density-ratio logit log p_t(x_t) / q_t(x_t) ~ F(c_in x_hat, c_noise) (EDM input scaling)."""

    def __init__(self, dim: int, process: GaussianProcess, sigma_data: float = 1.0,
                 hidden: int = 256, depth: int = 3, time_dim: int = 32):
        super().__init__()
        _check_sizes("MLPDiscriminator", dim=dim, hidden=hidden, depth=depth)
        self.dim = dim
        self.inputs = EDMInput(process, sigma_data, time_dim)
        self.net = mlp(dim + time_dim, 1, hidden, depth)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """x_t (B, dim), t (B,) -> logit (B,)."""
        _check_input("MLPDiscriminator", x_t, self.dim)
        _check_cond("MLPDiscriminator", cond)
        features, _, _ = self.inputs(x_t, t)
        return self.net(features).squeeze(-1)
