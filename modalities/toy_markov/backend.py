"""The toy_markov backend: its config, and where building, sampling and the smoke config live."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Backend, Sampler
from unidistill.engine.recipe import Offers

from .config import MarkovConfig


class MarkovBackend(Backend):
    Config = MarkovConfig
    family = "discrete"

    def offers(self, cfg: MarkovConfig) -> Offers:
        return Offers(discriminator=None if cfg.ratio == "oracle" else (), real=("data",), rewards=("count",))

    def build(self, cfg: MarkovConfig, run_dir: Path):
        from .distill import build_distill

        return build_distill(cfg, run_dir)

    def sampler(self, cfg: MarkovConfig, run_dir: Path) -> Sampler:
        from .io import sampler

        return sampler(cfg)

    def smoke_config(self, workdir: Path) -> dict:
        return {"chain": {"init": [0.6, 0.4], "transition": [[0.9, 0.1], [0.3, 0.7]], "length": 3}, "steps": 2,
                "hidden": 16, "warm_start_steps": 2}
