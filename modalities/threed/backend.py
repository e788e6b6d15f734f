"""The 3D backend: its config, and where building, sampling and the smoke config live."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Backend, Sampler
from unidistill.engine.recipe import Offers

from .config import ThreeDConfig, ThreeDTeachConfig


class ThreeDBackend(Backend):
    Config = ThreeDConfig
    TeachConfig = ThreeDTeachConfig

    def offers(self, cfg: ThreeDConfig) -> Offers:
        real = ("teacher",) if cfg.teacher.path is None else ()  # exact mixture samples: the exact teacher's only
        return Offers(fake=("exact", "hidden", "camera_dropout", "lora"), discriminator=("exact",), real=real)

    def build(self, cfg: ThreeDConfig, run_dir: Path):
        from .distill import build_distill

        return build_distill(cfg, run_dir)

    def teach(self, cfg: ThreeDTeachConfig, run_dir: Path):
        from .teach import build_teach

        return build_teach(cfg, run_dir)

    def sampler(self, cfg: ThreeDConfig, run_dir: Path) -> Sampler:
        from .io import sampler

        return sampler(cfg)

    def smoke_config(self, workdir: Path) -> dict:
        return {"teacher": {"prompts": {"a toy": {"red_ball": 0.5, "blue_cube": 0.5}}, "n_samples": 8},
                "generator": {"per_prompt": 2, "resolution": 8}, "render": {"sizes": [[0.0, 8]], "n_samples": 8},
                "eval": {"views": 2, "elevations": [15.0], "size": 8, "turntable": 2}}
