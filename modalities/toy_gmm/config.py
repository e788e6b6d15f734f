"""Config of the toy_gmm modality."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unidistill.engine.config import bounded
from unidistill.engine.recipe import ContinuousRecipe


@dataclass
class NetConfig:
    hidden: int = bounded(256, lo=1)  # width of each hidden layer
    depth: int = bounded(3, lo=1)  # hidden layers


@dataclass
class EvalConfig:
    n_samples: int = bounded(20000, lo=4)  # samples drawn for the metrics
    draws: int = bounded(10, lo=2)  # energy distance: mean +- sd over this many disjoint parts of the samples
    radius: float | None = bounded(None, lo=0, lo_open=True)  # within it of a mean is on that mode (default 3 x std)
    min_fraction: float = bounded(0.25, lo=0, hi=1, lo_open=True)  # a mode is covered at this share of its weight
    # a reward run is measured against the exact optimum of max E[r] - beta KL(q || teacher) at this beta
    # (default: distill.alignment.beta for didr, else 1 / distill.reward.alpha)
    beta: float | None = bounded(None, lo=0, lo_open=True)


def _recipe() -> ContinuousRecipe:
    return ContinuousRecipe(divergence={"name": "sid"},
                            time_sampler={"name": "lognormal", "p_mean": 0.0, "p_std": 1.2},
                            aux_time_sampler={"name": "lognormal", "p_mean": 0.0, "p_std": 1.2},
                            real="data")


@dataclass
class GMMConfig:
    mixture: dict[str, Any]  # GaussianMixture.from_config: {means, weights, std} | {ring: ...} | {random: ...}
    process: dict[str, Any] = field(default_factory=lambda: {"name": "ve", "sigma_min": 0.002, "sigma_max": 80.0})
    generator: NetConfig = field(default_factory=NetConfig)  # one-step MLP generator
    latent_dim: int | None = bounded(None, lo=1)  # latent size (default: data dimension)
    # the engine's recipe; fake and discriminator options are MLP sizes {hidden, depth}; real sources:
    # data (exact mixture samples) or teacher (16-step teacher ODE samples: data-free); rewards: linear {w},
    # quadratic {lam, c}, inside {center, radius} (binary), each with its exact tilted optimum but inside
    distill: ContinuousRecipe = field(default_factory=_recipe)
    eval: EvalConfig = field(default_factory=EvalConfig)
