"""`unidistill distill` for gauss1d: the backend supplies teacher, generator, latents and network factories;
the engine's recipe (build_continuous) builds what the configured divergence needs."""
from __future__ import annotations

from unidistill.engine.distill import ContinuousParts, build_continuous, edm_weight
from unidistill.engine.objective import Outputs
from unidistill.engine.process import VEProcess

from .config import Gauss1DConfig
from .nets import Critic, Generator, Teacher


def build_distill(cfg: Gauss1DConfig):
    process = VEProcess(0.002, 80.0)

    def data():  # exact teacher samples: the discriminator's real side
        return lambda noise, n: (cfg.mean + cfg.std * noise.randn(n, 1), None)

    parts = ContinuousParts(
        process=process, teacher=Teacher(cfg.mean, cfg.std, process), generator=Generator(cfg.hidden),
        latents=lambda noise, n, progress: (noise.randn(n, 1), None),  # every random tensor through noise
        fake=lambda: Critic(process, cfg.hidden, denoiser=True), fake_weight=edm_weight(cfg.std),
        discriminator=lambda: Critic(process, cfg.hidden, denoiser=False), real={"data": data})

    def evaluate(g):
        x = g.sample(4000, seed=0)
        return {"mean": float(x.mean()), "std": float(x.std())}

    return build_continuous(cfg.distill, parts, Outputs(evaluate=evaluate))
