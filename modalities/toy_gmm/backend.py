"""The toy_gmm backend: its config, and where building, sampling and the smoke config live."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Backend, Sampler
from unidistill.engine.recipe import Offers

from .config import GMMConfig


class GMMBackend(Backend):
    Config = GMMConfig

    def offers(self, cfg: GMMConfig) -> Offers:
        return Offers(fake=("hidden", "depth"), discriminator=("hidden", "depth"), real=("data", "teacher"),
                      rewards=("inside", "linear", "quadratic"), adversarial=True)

    def build(self, cfg: GMMConfig, run_dir: Path):
        from .distill import build_distill

        return build_distill(cfg, run_dir)

    def sampler(self, cfg: GMMConfig, run_dir: Path) -> Sampler:
        from .io import sampler

        return sampler(cfg)

    def smoke_config(self, workdir: Path) -> dict:
        return {"mixture": {"ring": {"modes": 4, "radius": 2.0, "std": 0.3}}, "generator": {"hidden": 16, "depth": 2},
                "distill": {"fake": {"hidden": 16, "depth": 2}}, "eval": {"n_samples": 200}}
