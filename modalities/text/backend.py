"""The text backend: masked diffusion LMs (MDLM) taught on a corpus and distilled by DiDi-Instruct."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Backend, Sampler
from unidistill.engine.recipe import Offers

from .config import TeachConfig, TextConfig


class TextBackend(Backend):
    Config = TextConfig
    TeachConfig = TeachConfig
    family = "discrete"

    def offers(self, cfg: TextConfig) -> Offers:
        return Offers(discriminator=("trainable_blocks",), real=("teacher", "corpus"), rewards=("distinct", "judge"))

    def build(self, cfg: TextConfig, run_dir: Path):
        from .distill import build_distill

        return build_distill(cfg, run_dir)

    def teach(self, cfg: TeachConfig, run_dir: Path):
        from .teach import build_teach

        return build_teach(cfg, run_dir)

    def sampler(self, cfg: TextConfig, run_dir: Path) -> Sampler:
        from .io import sampler

        return sampler(cfg)

    def smoke_config(self, workdir: Path) -> dict:
        from .io import write_tiny_models

        teacher, judge = write_tiny_models(Path(workdir) / "tiny_text")
        return {"teacher": str(teacher), "teacher_pool": 8, "teacher_pool_steps": 4,
                "eval": {"n_samples": 4, "steps": [4], "judge": str(judge)}}
