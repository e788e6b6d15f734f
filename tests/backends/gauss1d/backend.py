"""The gauss1d backend: what the engine asks of a modality, nothing imported before it is needed."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Backend, Drawn, Sampler
from unidistill.engine.recipe import Offers

from .config import Gauss1DConfig


class Gauss1DBackend(Backend):
    Config = Gauss1DConfig

    def offers(self, cfg: Gauss1DConfig) -> Offers:
        return Offers(fake=(), discriminator=(), real=("data",))

    def build(self, cfg: Gauss1DConfig, run_dir: Path):
        from .distill import build_distill

        return build_distill(cfg)

    def sampler(self, cfg: Gauss1DConfig, run_dir: Path) -> Sampler:
        from .nets import Generator

        return Sampler(Generator(cfg.hidden), lambda g, n, seed: Drawn(g.sample(n, seed).numpy(), about="1-D points"))

    def smoke_config(self, workdir: Path) -> dict:
        return {"hidden": 8}
