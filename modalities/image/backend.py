"""The image backend: distil a diffusers teacher (the shipped digits teachers, or any local diffusers
folder) into a one-step or few-step generator, and train teachers (`unidistill teach`)."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Backend, Sampler
from unidistill.engine.recipe import Offers

from .config import ImageConfig, TeachConfig


class ImageBackend(Backend):
    Config = ImageConfig
    TeachConfig = TeachConfig

    def offers(self, cfg: ImageConfig) -> Offers:
        return Offers(fake=(), discriminator=("width",), real=("teacher", "data"),  # data: digits teachers
                      rewards=("classifier", "contrast", "loop"), adversarial=True)

    def build(self, cfg: ImageConfig, run_dir: Path):
        from .distill import build_distill

        return build_distill(cfg, run_dir)

    def teach(self, cfg: TeachConfig, run_dir: Path):
        from .teach import build_teach

        return build_teach(cfg, run_dir)

    def sampler(self, cfg: ImageConfig, run_dir: Path) -> Sampler:
        from .io import sampler

        return sampler(cfg)

    def smoke_config(self, workdir: Path) -> dict:
        from .io import write_tiny_teacher

        return {"teacher": str(write_tiny_teacher(Path(workdir) / "tiny_digits_teacher")), "real_pool": 16,
                "eval": {"n_samples": 20}}
