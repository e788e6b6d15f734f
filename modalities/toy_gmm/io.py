"""The toy mixture's run outputs: the generator a config describes, and drawing from it."""
from __future__ import annotations

import torch

from unidistill.engine.backend import Drawn, Sampler
from unidistill.engine.config import ConfigError

from .config import GMMConfig
from .mixture import GaussianMixture
from .nets import MLPGenerator


def mixture_of(cfg: GMMConfig) -> GaussianMixture:
    try:
        return GaussianMixture.from_config(cfg.mixture)
    except ValueError as e:
        raise ConfigError(f"config key mixture: {e}") from None


def generator_for(cfg: GMMConfig) -> MLPGenerator:
    """The one-step MLP generator of this config (latent size: latent_dim, default the data dimension)."""
    d = mixture_of(cfg).dim
    try:
        return MLPGenerator(d, d if cfg.latent_dim is None else cfg.latent_dim, cfg.generator.hidden,
                            cfg.generator.depth)
    except ValueError as e:
        raise ConfigError(f"config key generator/latent_dim: {e}") from None


@torch.no_grad()
def draw(generator: MLPGenerator, n: int, seed: int | None = None) -> torch.Tensor:
    """n samples (n, d) float32 on the CPU; latents from the global generator, or from `seed`."""
    device = next(generator.parameters()).device
    g = None if seed is None else torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.latent_dim, generator=g) if g is not None else torch.randn(n, generator.latent_dim,
                                                                                            device=device)
    return generator(z.to(device), None).float().cpu()


def sampler(cfg: GMMConfig) -> Sampler:
    def drawn(g, n, seed):
        x = draw(g, n, seed).numpy()
        return Drawn(x, about=f"points of the {x.shape[1]}-D mixture")

    return Sampler(generator_for(cfg), drawn)
