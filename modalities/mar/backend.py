"""The MAR backend: its configs, and where building, teaching, sampling and the smoke config live."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Backend, Sampler
from unidistill.engine.recipe import Offers

from .config import MarConfig, MarTeachConfig


class MarBackend(Backend):
    Config = MarConfig
    TeachConfig = MarTeachConfig

    def offers(self, cfg: MarConfig) -> Offers:
        return Offers(fake=(), discriminator=None, real=(), rewards=("classifier",))

    def build(self, cfg: MarConfig, run_dir: Path):
        from .distill import build_distill

        return build_distill(cfg, run_dir)

    def teach(self, cfg: MarTeachConfig, run_dir: Path):
        from .teach import build_teach

        return build_teach(cfg, run_dir)

    def sampler(self, cfg: MarConfig, run_dir: Path) -> Sampler:
        from .io import sampler

        return sampler(cfg)

    def smoke_config(self, workdir: Path) -> dict:
        from .io import tiny_teacher

        return {"teacher": {"path": str(tiny_teacher(Path(workdir)))}, "generator": {"iters": 2},
                "eval": {"n_samples": 20, "iters": 2}}
