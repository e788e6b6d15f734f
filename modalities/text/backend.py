"""The text modality: masked diffusion LMs (MDLM) taught on a corpus and distilled by DiDi-Instruct."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unidistill.engine.backend import BACKENDS

from .config import TeachConfig, TextConfig


class TextBackend:
    Config = TextConfig
    TeachConfig = TeachConfig

    def build(self, cfg: TextConfig, out_dir: Path):
        from .distill import build_distill

        return build_distill(cfg, out_dir)

    def teach(self, cfg: TeachConfig, out_dir: Path):
        from .teach import build_teach

        return build_teach(cfg, out_dir)

    def sample(self, objective, generator, n: int) -> np.ndarray:
        """Token ids (n, L) from the student's sampler at the first evaluated step count."""
        from .sampler import sample_ids

        return sample_ids(generator, n, objective.eval_steps[0], length=objective.length)[0].numpy()


BACKENDS.register("text")(TextBackend())
